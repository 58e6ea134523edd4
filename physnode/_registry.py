"""Name → class registries for solvers and gradient methods ("objects underneath, names on top"), and the
checked class contracts of the registered families (:class:`ContractMeta`)."""

from __future__ import annotations

import difflib
import inspect
from abc import ABCMeta
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

__all__ = ["ContractAttribute", "ContractError", "ContractMeta", "OptionTypeError", "Registry"]

T = TypeVar("T")


class OptionTypeError(TypeError, ValueError):
    """An option value of the wrong type (``options={"adaptive": "no"}``). Also a ``ValueError``: the
    constructors' own range checks raise that, and callers may catch either (like NumPy's ``AxisError``)."""


class ContractError(TypeError):
    """A class of a registered family (solver, gradient method) breaks its base's contract: an attribute the
    integration loop or the registry relies on is missing or has the wrong type."""


@dataclass(frozen=True)
class ContractAttribute:
    """One attribute of a family contract.

    Parameters
    ----------
    name
        The attribute, e.g. ``"order"``.
    valid
        Whether a value is acceptable.
    expected
        What an acceptable value is, for the error message ("an int >= 1 (convergence order)").
    """

    name: str
    valid: Callable[[Any], bool]
    expected: str


def is_int(low: int) -> Callable[[Any], bool]:
    """A check for an ``int`` (not a ``bool``) ``>= low``."""
    return lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool) and bool(v >= low)


def is_bool(v: Any) -> bool:
    """A check for a ``bool``."""
    return isinstance(v, (bool, np.bool_))


def is_name(v: Any) -> bool:
    """A check for a registry name: a non-empty string without surrounding white space."""
    return isinstance(v, str) and bool(v) and v == v.strip()


class ContractMeta(ABCMeta):
    """Metaclass of a family base (``Solver``, ``GradientMethod``) whose ``__contract__`` lists the attributes
    every subclass provides.

    Checked twice, like scipy's numbered ``OdeSolver`` contract but enforced:

    - when a subclass is defined, every contract attribute it sets **at class level** must be valid, so a typo
      such as ``order = "2"`` fails at import, naming the class;
    - when an instance is built, **every** contract attribute must be present and valid (attributes that depend
      on constructor arguments, such as the order of a damped leapfrog, may be set in ``__init__``).

    A ``property`` at class level counts as "computed per instance" and is checked on the instance only.
    """

    __contract__: tuple[ContractAttribute, ...]

    def __init__(cls, name: str, bases: tuple[type, ...], namespace: dict[str, Any], **kwargs: Any) -> None:
        super().__init__(name, bases, namespace, **kwargs)
        for attr in getattr(cls, "__contract__", ()):
            value = inspect.getattr_static(cls, attr.name, _MISSING)
            if value is _MISSING or isinstance(value, property):
                continue
            if not attr.valid(value):
                raise ContractError(_contract_message(cls, attr, value, "class attribute"))

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        obj = super().__call__(*args, **kwargs)
        for attr in getattr(cls, "__contract__", ()):
            value = getattr(obj, attr.name, _MISSING)
            if not attr.valid(value):
                raise ContractError(_contract_message(cls, attr, value, "attribute"))
        return obj


_MISSING: Any = object()


def _contract_message(cls: type, attr: ContractAttribute, value: Any, where: str) -> str:
    base = next((b.__name__ for b in cls.__mro__[1:] if "__contract__" in vars(b)), "its base")
    got = "it is missing" if value is _MISSING else f"got {value!r} ({type(value).__name__})"
    return (
        f"{cls.__module__}.{cls.__qualname__} breaks the {base} contract: {where} {attr.name!r} must be "
        f"{attr.expected}; {got}. Set it as a class attribute ({attr.name} = ...) or in __init__."
    )


def _constructor_keywords(cls: type) -> dict[str, inspect.Parameter]:
    """Named keyword parameters of ``cls.__init__`` (a class without its own ``__init__`` reports ``object``'s
    ``(*args, **kwargs)``, which are no options)."""
    # mypy flags __init__ read from a class object as unsound (a subclass may change it); reading the signature
    # of the class's own constructor is exactly what is wanted here.
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
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
        self._classes: dict[str, type[T]] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Register ``cls`` under its own class attribute ``name`` and return it (usable as a decorator).

        Raises
        ------
        TypeError
            When ``cls`` does not subclass the registry's base, or its ``name`` is not a non-empty string set at
            class level (a ``ContractError``).
        ValueError
            When the name is already taken.
        """
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{cls!r} must be a subclass of {self.base.__name__}.")
        name = inspect.getattr_static(cls, "name", _MISSING)
        if not is_name(name):
            got = "it is missing" if name is _MISSING else f"got {name!r}"
            raise ContractError(
                f"{cls.__qualname__} cannot be registered as a {self.kind}: its class attribute 'name' must be a "
                f"non-empty string (the {self.kind}= value); {got}."
            )
        if name in self._classes:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {self._classes[name].__qualname__}).")
        self._classes[name] = cls
        return cls

    def names(self) -> list[str]:
        """Registered names, in registration order."""
        return list(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def cls(self, name: str) -> type[T]:
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
        text = annotation if isinstance(annotation, str) else str(getattr(annotation, "__name__", annotation))
        allowed = {part.strip() for part in text.split("|")}
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
