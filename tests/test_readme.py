"""The README's API table is the broker's dispatch table (regenerate: see api_table.py)."""

from pathlib import Path

from pykbroker.api_table import BEGIN, END, render

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_api_table_matches_dispatch_table() -> None:
    text = README.read_text()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    assert text[start:end] == render(), "run: python -m pykbroker.api_table > update README"
