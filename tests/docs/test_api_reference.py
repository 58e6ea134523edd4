"""The API reference shows the parameters and defaults of the signatures.

The reference is rendered by mkdocstrings from griffe's reading of the package. This test loads the package the
same way (the docstring style, options and griffe extensions of ``mkdocs.yml``) and compares, for every public
callable of ``physnode.__all__`` and the public methods of its classes, what the page shows with
``inspect.signature``:

* the signature line: the same parameters, in order, with the same defaults;
* the Parameters table: every documented name exists, its default is the signature's, and its type is not the
  annotation of *another* parameter (what grouped numpy entries such as ``rtol, atol`` used to get).
"""

from __future__ import annotations

import ast
import builtins
import dataclasses
import inspect
from pathlib import Path
from typing import Any

import griffe
import pytest
import yaml

import physnode

ROOT = Path(__file__).resolve().parents[2]


class _IgnoreTags(yaml.SafeLoader):
    """mkdocs.yml uses tags such as ``!ENV``; their values do not matter here."""


_IgnoreTags.add_multi_constructor("!", lambda loader, suffix, node: None)


def _handler_options() -> dict[str, Any]:
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=_IgnoreTags)
    for plugin in config["plugins"]:
        if isinstance(plugin, dict) and "mkdocstrings" in plugin:
            return plugin["mkdocstrings"]["handlers"]["python"]["options"]
    raise AssertionError("mkdocs.yml has no mkdocstrings plugin")


@pytest.fixture(scope="module")
def package() -> griffe.Module:
    options = _handler_options()
    extensions = griffe.load_extensions(*(str(ROOT / path) for path in options.get("extensions", [])))
    return griffe.load(
        "physnode",
        search_paths=[str(ROOT)],
        docstring_parser=options["docstring_style"],
        docstring_options=options.get("docstring_options") or {},
        extensions=extensions,
    )


def _public_callables() -> list[tuple[str, Any]]:
    """(dotted path, object) of every public function, class ``__init__`` and public method of ``__all__``."""
    found: list[tuple[str, Any]] = []
    for name in physnode.__all__:
        obj = getattr(physnode, name)
        if inspect.isfunction(obj):
            found.append((f"{obj.__module__}.{obj.__qualname__}", obj))
        elif inspect.isclass(obj) and obj.__module__.startswith("physnode."):
            if "__init__" in vars(obj):  # its own __init__ (dataclasses included): rendered as the class signature
                found.append((f"{obj.__module__}.{obj.__qualname__}", obj))
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                if isinstance(member, (staticmethod, classmethod)):
                    member = member.__func__
                if inspect.isfunction(member):
                    found.append((f"{obj.__module__}.{obj.__qualname__}.{attr}", getattr(obj, attr)))
    return found


CALLABLES = _public_callables()


class _Factory:
    """A dataclass field's ``default_factory``: the page shows it called, e.g. ``dict()``."""

    def __init__(self, factory: Any) -> None:
        self.factory = factory


def _expected_defaults(obj: Any, is_method: bool) -> dict[str, Any]:
    """Parameter name -> default of ``inspect.signature(obj)`` (``self``/``cls`` of a method left out)."""
    parameters = dict(inspect.signature(obj).parameters)
    if is_method and not inspect.isclass(obj):
        parameters = {k: v for k, v in parameters.items() if k not in ("self", "cls")}
    defaults = {name: p.default for name, p in parameters.items()}
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        for field in dataclasses.fields(obj):
            if field.default_factory is not dataclasses.MISSING and field.name in defaults:
                defaults[field.name] = _Factory(field.default_factory)
    return defaults


def _matches(shown: Any, default: Any, module: Any) -> bool:
    """Whether the default text the page shows denotes ``default`` (a literal, or a name in ``module``)."""
    text = str(shown)
    if isinstance(default, _Factory):
        return text.endswith("()") and _matches(text[:-2], default.factory, module)
    try:
        return bool(ast.literal_eval(text) == default)
    except (ValueError, SyntaxError, TypeError):
        pass
    # A name such as ``torch.float64`` or ``Status.SUCCESS``: look it up (attribute access only, no eval).
    head, *rest = text.split(".")
    scope = vars(module)
    if head not in scope and not hasattr(builtins, head):
        return False
    value = scope.get(head, getattr(builtins, head, None))
    for part in rest:
        if not hasattr(value, part):
            return False
        value = getattr(value, part)
    return value is default or bool(value == default)


def _griffe_function(package: griffe.Module, path: str) -> tuple[griffe.Function, bool]:
    """The griffe function rendered for ``path`` (a class renders its ``__init__``), and whether it is a method."""
    obj = package[path.removeprefix("physnode.")]
    if isinstance(obj, griffe.Alias):
        obj = obj.final_target
    if isinstance(obj, griffe.Class):
        init = obj.all_members["__init__"]
        if isinstance(init, griffe.Alias):
            init = init.final_target
        return init, True
    assert isinstance(obj, griffe.Function), f"{path} is a {type(obj).__name__} for griffe"
    return obj, obj.parent is not None and isinstance(obj.parent, griffe.Class)


@pytest.mark.parametrize(("path", "obj"), CALLABLES, ids=[path for path, _ in CALLABLES])
def test_signature_line_matches(package: griffe.Module, path: str, obj: Any) -> None:
    function, is_method = _griffe_function(package, path)
    defaults = _expected_defaults(obj, is_method)
    module = inspect.getmodule(obj.__init__ if inspect.isclass(obj) else obj)
    shown = [p for p in function.parameters if not (is_method and p.name in ("self", "cls"))]
    assert [p.name for p in shown] == list(defaults), f"{path}: parameters differ"
    for p in shown:
        expected = defaults[p.name]
        if p.kind in (griffe.ParameterKind.var_positional, griffe.ParameterKind.var_keyword):
            continue  # *args / **kwargs: no default is shown
        if expected is inspect.Parameter.empty:
            assert p.default is None, f"{path}({p.name}): shown with default {p.default}, but it is required"
        else:
            assert _matches(p.default, expected, module), (
                f"{path}({p.name}): shown default {p.default}, is {expected!r}"
            )


@pytest.mark.parametrize(("path", "obj"), CALLABLES, ids=[path for path, _ in CALLABLES])
def test_parameter_table_matches(package: griffe.Module, path: str, obj: Any) -> None:
    function, is_method = _griffe_function(package, path)
    owner = function.parent if function.name == "__init__" else function
    docstring = (owner.docstring if owner is not None else None) or function.docstring
    if docstring is None:
        pytest.skip(f"{path} has no docstring")
    defaults = _expected_defaults(obj, is_method)
    module = inspect.getmodule(obj.__init__ if inspect.isclass(obj) else obj)
    annotations = {p.name: p.annotation for p in function.parameters}
    for section in docstring.parsed:
        if section.kind not in (griffe.DocstringSectionKind.parameters, griffe.DocstringSectionKind.other_parameters):
            continue
        for entry in section.value:
            name = entry.name.lstrip("*")
            assert name in defaults, f"{path}: documents {entry.name!r}, not a parameter"
            expected = defaults[name]
            if expected is not inspect.Parameter.empty:
                assert entry.value is not None and _matches(entry.value, expected, module), (
                    f"{path}: table shows {name}={entry.value}, signature says {expected!r}"
                )
            others = [other for other, annotation in annotations.items() if other != name and annotation is not None]
            stolen = [other for other in others if entry.annotation is annotations[other]]
            assert not stolen, f"{path}: {name} is shown with the type of {stolen[0]}"


def test_grouped_parameters_of_fit_and_solve(package: griffe.Module) -> None:
    # The cases reported by users: `method, grad, rtol, atol, ...` documented together.
    def table(path: str) -> dict[str, griffe.DocstringParameter]:
        function = package[path]
        sections = function.docstring.parsed
        return {e.name: e for s in sections if s.kind is griffe.DocstringSectionKind.parameters for e in s.value}

    fit = table("fit.api.fit")
    assert str(fit["grad"].annotation) == "str | GradientMethod" and fit["grad"].value == "'aca'"
    assert str(fit["rtol"].annotation) == "float | Tensor" and fit["rtol"].value == repr(physnode.options.DEFAULT_RTOL)
    assert str(fit["resume"].annotation) == "bool" and fit["resume"].value == "False"
    solve = table("odeint.solve")
    assert solve["atol"].value == repr(inspect.signature(physnode.solve).parameters["atol"].default) == "1e-09"
