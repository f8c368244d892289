"""Request handlers, one module per API family, each exporting ``HANDLERS``."""
