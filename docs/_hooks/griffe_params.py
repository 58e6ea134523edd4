"""Griffe extension for the API pages: parameter tables and signatures that match ``inspect.signature``.

Two things griffe (the mkdocstrings backend) gets wrong on physnode's numpy-style docstrings are fixed here,
without touching the source files:

* A grouped entry such as ``method, grad, rtol, atol`` with no type in the docstring gives every name the
  annotation and default of the *first* name in the signature (``grad`` shown as ``str | Solver`` with default
  ``DEFAULT_METHOD``). After parsing, each name of a group takes its own annotation (when the docstring gave none)
  and its own default from the signature.
* A default that names a module-level constant (``rtol=DEFAULT_RTOL``) is shown as the name, which tells a reader
  nothing; when the constant is a literal (number, string, bool, ``None``) its value is shown instead
  (``rtol=1e-07``), in the signature and in the table.

The test ``tests/docs/test_api_reference.py`` loads the package with these extensions and checks every rendered
default against ``inspect.signature``.
"""

from __future__ import annotations

import ast
from typing import Any

import griffe

_PARAMETER_SECTIONS = {griffe.DocstringSectionKind.parameters, griffe.DocstringSectionKind.other_parameters}


def _literal(source: str) -> str | None:
    """``repr`` of the Python literal written as ``source`` (``"1e-9"`` -> ``"1e-09"``), or None if not a literal."""
    try:
        value = ast.literal_eval(source)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
        return repr(value)
    return None


def _constant_value(default: Any, collection: griffe.ModulesCollection) -> str | None:
    """The literal value of the module-level constant that ``default`` names, or None."""
    if not isinstance(default, (griffe.ExprName, griffe.ExprAttribute)):
        return None
    try:
        target = collection[default.canonical_path]
        if isinstance(target, griffe.Alias):
            target = target.final_target
    except (KeyError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None
    if not isinstance(target, griffe.Attribute) or target.value is None:
        return None
    return _literal(str(target.value))


def _functions(obj: griffe.Object) -> list[griffe.Function]:
    """Every function and method defined under ``obj`` (aliases, i.e. imports, skipped)."""
    found: list[griffe.Function] = []
    for member in obj.members.values():
        if member.is_alias:
            continue
        if isinstance(member, griffe.Function):
            found.append(member)
        elif isinstance(member, (griffe.Module, griffe.Class)):
            found.extend(_functions(member))
    return found


class SignatureParametersDocstring(griffe.Docstring):
    """A docstring whose grouped parameter entries get each name's own annotation and default."""

    def parse(self, parser: Any = None, **options: Any) -> list[griffe.DocstringSection]:
        sections = super().parse(parser, **options)
        signature = getattr(self.parent, "parameters", None)
        if signature is None:
            return sections
        for section in sections:
            if section.kind not in _PARAMETER_SECTIONS:
                continue
            entries: list[griffe.DocstringParameter] = section.value
            start = 0
            while start < len(entries):
                # The names of one ``a, b, c`` entry are consecutive and share the very same annotation object
                # and description (griffe builds them from one item).
                stop = start + 1
                while (
                    stop < len(entries)
                    and entries[stop].annotation is entries[start].annotation
                    and entries[stop].description == entries[start].description
                ):
                    stop += 1
                if stop - start > 1:
                    self._fix_group(entries[start:stop], signature)
                start = stop
        return sections

    @staticmethod
    def _fix_group(group: list[griffe.DocstringParameter], signature: griffe.Parameters) -> None:
        first = group[0].name
        from_signature = first in signature and group[0].annotation is signature[first].annotation
        for entry in group:
            if entry.name not in signature:
                continue
            parameter = signature[entry.name]
            if from_signature or entry.annotation is None:
                entry.annotation = parameter.annotation
            entry.value = parameter.default


class SignatureTruth(griffe.Extension):
    """Install the grouped-parameter fix on every docstring and show constants' values as defaults."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None and type(obj.docstring) is griffe.Docstring:
            obj.docstring.__class__ = SignatureParametersDocstring

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        for function in _functions(pkg):
            for parameter in function.parameters:
                value = _constant_value(parameter.default, loader.modules_collection)
                if value is not None:
                    parameter.default = value
