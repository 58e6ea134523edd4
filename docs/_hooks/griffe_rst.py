"""Griffe extension for the API pages: render the Sphinx-isms of physnode's docstrings as plain Markdown.

The docstrings are numpy style but use Sphinx roles (``:class:`~physnode.data.Trajectories```) and
``.. math::`` directives, which Markdown would show verbatim. Roles become inline code with the displayed name
(the last component for a ``~`` target, as Sphinx shows it); a ``.. math::`` line is dropped so that its indented
block renders as a code block. Only the rendered text changes: the source files are not touched.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?[a-z]+:`(?P<tilde>~?)(?P<target>[^`<]+?)(?:\s*<(?P<ref>[^`>]+)>)?`")
_MATH = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    target = match.group("target").strip()
    if match.group("tilde"):
        target = target.rsplit(".", 1)[-1]
    return f"`{target.lstrip('.')}`"


def markdownify(text: str) -> str:
    """Docstring text with Sphinx roles as inline code and ``.. math::`` lines removed."""
    return _MATH.sub("", _ROLE.sub(_role, text))


class SphinxRolesToMarkdown(griffe.Extension):
    """Rewrite every docstring once, when its object is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdownify(obj.docstring.value)
