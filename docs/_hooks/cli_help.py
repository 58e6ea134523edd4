"""MkDocs hook: replace ``<!-- physnode-help: ARGS -->`` by the output of ``physnode ARGS --help``.

The help texts in the CLI reference are produced from the installed package at build time, so they never go
stale. The command runs in-process (one import of torch for the whole build) with a fixed terminal width so
that argparse wraps lines the same way on every machine. A command that fails makes the build fail.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex

_MARKER = re.compile(r"^<!-- physnode-help:(?P<args>[^>]*)-->\s*$", re.MULTILINE)
_cache: dict[str, str] = {}


def _help_text(args: str) -> str:
    if args in _cache:
        return _cache[args]
    from physnode.cli import main

    argv = [*shlex.split(args), "--help"]
    out = io.StringIO()
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse exits after printing the help
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old
    text = out.getvalue().rstrip()
    if code not in (0, None) or not text:
        raise RuntimeError(f"`physnode {' '.join(argv)}` failed (exit code {code}) while building the docs:\n{text}")
    _cache[args] = text
    return text


def on_page_markdown(markdown: str, page: object, config: object, files: object) -> str:
    """Expand every help marker of the page into a ``text`` code block."""

    def expand(match: re.Match[str]) -> str:
        args = match.group("args").strip()
        command = " ".join(["physnode", *shlex.split(args), "--help"])
        return f"```text\n$ {command}\n{_help_text(args)}\n```"

    return _MARKER.sub(expand, markdown)
