"""``pykbroker --help`` names every admin verb, and each verb's ``--help`` shows examples."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pykbroker.admin.verbs import VERBS

VERBS_LISTED = ("topics", "groups", "produce", "consume", "acls", "users", "healthcheck",
                "api-versions")
SCRIPT = Path(sys.executable).with_name("pykbroker")  # the console script of this install


def _help(*argv: str) -> str:
    out = subprocess.run([sys.executable, "-m", "pykbroker", *argv, "--help"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_table_holds_every_verb() -> None:
    assert tuple(VERBS) == VERBS_LISTED


@pytest.mark.parametrize("command", [[sys.executable, "-m", "pykbroker"], [str(SCRIPT)]])
def test_top_level_help_lists_every_admin_verb_with_its_summary(command: list[str]) -> None:
    if not Path(command[0]).exists():
        pytest.fail(f"{command[0]} missing: is pykbroker installed in this interpreter's venv?")
    text = subprocess.run([*command, "--help"], capture_output=True, text=True,
                          timeout=60, check=True).stdout
    lines = text.splitlines()
    for verb in VERBS_LISTED:
        assert any(ln.split()[:1] == [verb] and VERBS[verb].summary in ln for ln in lines), verb
    # The broker's own options are still there: running the broker stays the default.
    assert "--override" in text and "server.properties" in text


@pytest.mark.parametrize("verb", VERBS_LISTED)
def test_each_verb_help_has_an_example(verb: str) -> None:
    text = _help(verb)
    examples = text.split("examples:\n", 1)[1]
    assert f"pykbroker {verb}" in examples


@pytest.mark.parametrize("argv", [("topics", "create"), ("topics", "describe"),
                                  ("groups", "reset-offsets"), ("groups", "describe")])
def test_sub_verb_help_has_its_own_example(argv: tuple[str, ...]) -> None:
    text = _help(*argv)
    assert f"pykbroker {' '.join(argv)} " in text.split("examples:\n", 1)[1]


def test_verb_examples_parse_with_the_admin_parser() -> None:
    """Every example is a command line the parser accepts (so the examples cannot rot)."""
    import shlex

    from pykbroker.admin.main import parser

    for verb in VERBS.values():
        for example in verb.examples:
            argv = shlex.split(example.split("|")[-1])
            assert argv[0] == "pykbroker", example
            parser().parse_args(argv[1:])
