"""Generated codecs, one module per schema file. Regenerate with ``make gen``."""
