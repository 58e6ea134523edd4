"""Name → class registries for solvers and gradient methods ("objects underneath, names on top")."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any, Generic, TypeVar

__all__ = ["Registry"]

T = TypeVar("T")


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
            close = difflib.get_close_matches(str(name), self._classes, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"unknown {self.kind}={name!r}; choose one of {', '.join(map(repr, self._classes))}.{hint}"
            ) from None

    def accepted_options(self, name_or_obj: object) -> set[str]:
        """Constructor keyword arguments of the named class (empty for an instance)."""
        if not isinstance(name_or_obj, str):
            return set()
        sig = inspect.signature(self.cls(name_or_obj).__init__)
        return {p for p in sig.parameters if p != "self"}

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
        return self.cls(name_or_obj)(**(options or {}))
