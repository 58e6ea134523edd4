"""Name → class registries for solvers and gradient methods ("objects underneath, names on top")."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["OptionTypeError", "Registry"]

T = TypeVar("T")


class OptionTypeError(TypeError, ValueError):
    """An option value of the wrong type (``options={"adaptive": "no"}``). Also a ``ValueError``: the
    constructors' own range checks raise that, and callers may catch either (like NumPy's ``AxisError``)."""


def _constructor_keywords(cls: type) -> dict[str, inspect.Parameter]:
    """Named keyword parameters of ``cls.__init__`` (a class without its own ``__init__`` reports ``object``'s
    ``(*args, **kwargs)``, which are no options)."""
    sig = inspect.signature(cls.__init__)
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return {n: p for n, p in sig.parameters.items() if n != "self" and p.kind in kinds}


class Registry(Generic[T]):
    """Maps names to classes; :meth:`build` turns a name (or an instance) plus options into an object.

    Parameters
    ----------
    kind
        What is registered ("method", "grad"), used in error messages.
    base
        The base class every registered class derives from.
    """

    def __init__(self, kind: str, base: type) -> None:
        self.kind = kind
        self.base = base
        self._classes: dict[str, type] = {}

    def register(self, name: str, cls: type) -> None:
        """Register ``cls`` under ``name``."""
        if name in self._classes:
            raise ValueError(f"{self.kind} {name!r} is already registered.")
        if not issubclass(cls, self.base):
            raise TypeError(f"{cls!r} must subclass {self.base.__name__}.")
        self._classes[name] = cls

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def cls(self, name: str) -> type:
        """The class registered under ``name``."""
        try:
            return self._classes[name]
        except KeyError:
            lower = {n.lower(): n for n in self._classes}
            key = str(name).lower().replace("-", "_").replace(" ", "_")
            close = [lower[key]] if key in lower else difflib.get_close_matches(key, lower, n=1)
            close = [lower.get(c, c) for c in close]
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown {self.kind}={name!r}; choose one of {', '.join(map(repr, self._classes))}.{hint}"
            ) from None

    def _keywords(self, name: str) -> dict[str, inspect.Parameter]:
        return _constructor_keywords(self.cls(name))

    def accepted_options(self, name_or_obj: object) -> set[str]:
        """Constructor keyword arguments of the named class, or of an instance's class (so that options meant for
        an already built object reach :meth:`build`, which says to set them on the object); empty otherwise."""
        if isinstance(name_or_obj, self.base):
            return set(_constructor_keywords(type(name_or_obj)))
        if not isinstance(name_or_obj, str):
            return set()
        return set(self._keywords(name_or_obj))

    def _check_value(self, name: str, key: str, value: object, annotation: object) -> None:
        """Check a switch: an option annotated ``bool`` (or ``bool | None``) takes ``True``/``False`` only, since
        ``bool("no")`` is true. Numeric options are checked by the constructors themselves (range and type)."""
        if not isinstance(annotation, str):
            annotation = getattr(annotation, "__name__", str(annotation))
        allowed = {part.strip() for part in annotation.split("|")}
        if "bool" not in allowed or not allowed <= {"bool", "None"}:
            return
        ok = isinstance(value, (bool, np.bool_)) or (value is None and "None" in allowed)
        if not ok:
            expected = "True/False or None" if "None" in allowed else "True or False"
            raise OptionTypeError(
                f"option {key!r} of {self.kind}={name!r} must be {expected}, got {value!r} ({type(value).__name__})."
            )

    def build(self, name_or_obj: object, options: Mapping[str, Any] | None = None) -> Any:
        """Return an instance from a registered name (with ``options`` as constructor arguments) or pass an
        instance of the base class through."""
        if isinstance(name_or_obj, self.base):
            if options:
                raise ValueError(
                    f"options {sorted(options)} cannot be applied to an already built {self.kind} object "
                    f"{name_or_obj!r}; set them on the object instead."
                )
            return name_or_obj
        if not isinstance(name_or_obj, str):
            raise TypeError(
                f"{self.kind} must be a name ({', '.join(map(repr, self._classes))}) or a "
                f"{self.base.__name__} instance, got {type(name_or_obj).__name__}."
            )
        keywords = self._keywords(name_or_obj)
        for key, value in (options or {}).items():
            if key in keywords:
                self._check_value(name_or_obj, key, value, keywords[key].annotation)
        return self.cls(name_or_obj)(**(options or {}))
