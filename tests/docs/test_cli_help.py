"""``physnode --help`` and every sub-command's ``--help`` are plain text: no reStructuredText markup."""

from __future__ import annotations

import re

import pytest

from physnode.cli import main
from physnode.commands._cli import plain_text

# Every parser a user reaches with --help (the top level, each sub-command and the sub-sub-commands).
COMMANDS = [
    [],
    ["demo"],
    ["bench"],
    ["data"],
    ["data", "list"],
    ["data", "make"],
    ["data", "show"],
    ["fit"],
    ["fit", "three-body"],
    ["fit", "CONFIG.toml"],
    ["forecast"],
]

# ``literal``, :role:`target`, and a paragraph ending in "::" (RST's literal-block marker).
RST_MARKUP = re.compile(r"``|:(?:py:)?[a-z]+:`|\S::$", re.MULTILINE)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(["physnode", *c]))
def test_help_has_no_rst_markup(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: physnode"), out[:200]
    bad = [line for line in out.splitlines() if RST_MARKUP.search(line)]
    assert not bad, f"raw reStructuredText in `physnode {' '.join(command)} --help`:\n" + "\n".join(bad)


def test_help_keeps_the_documented_words(capsys: pytest.CaptureFixture[str]) -> None:
    # The markup goes, the words stay: the fit description names the results files and the Trajectories class.
    assert main(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    assert "summary.json" in out and "physnode.data.Trajectories" in out


@pytest.mark.parametrize(
    ("rst", "plain"),
    [
        ("``physnode fit`` writes ``summary.json``", "physnode fit writes summary.json"),
        (":class:`~physnode.data.Trajectories` file", "Trajectories file"),
        (":func:`physnode.odeint` and :py:meth:`.solve`", "physnode.odeint and solve"),
        (":class:`the data <physnode.data.Trajectories>`", "the data"),
        ("Examples::\n\n    physnode demo", "Examples:\n\n    physnode demo"),
        ("a plain line: with colons :: inside", "a plain line: with colons :: inside"),
    ],
)
def test_plain_text(rst: str, plain: str) -> None:
    assert plain_text(rst) == plain
