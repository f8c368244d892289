"""The README's table of supported APIs, produced from the broker's own dispatch table.

``python -m pykbroker.api_table`` prints it; a test keeps the README in step.
"""

from __future__ import annotations

from pykbroker.handlers import all_handlers
from pykbroker.protocol.api import APIS

BEGIN = "<!-- api-table:begin -->"
END = "<!-- api-table:end -->"


def render() -> str:
    rows = ["| API key | API | Versions served | Kafka 3.9 schema versions |",
            "|---:|---|---|---|"]
    for spec in sorted(all_handlers(), key=lambda s: int(s.api_key)):
        schema = APIS[spec.api_key]
        rows.append(f"| {int(spec.api_key)} | {schema.name} | {spec.min_version}-"
                    f"{spec.max_version} | {schema.min_version}-{schema.max_version} |")
    return "\n".join([BEGIN, *rows, END])


if __name__ == "__main__":
    print(render())
