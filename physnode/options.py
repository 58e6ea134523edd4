"""``SolveOptions``: the options of one solve (solver, gradient method, tolerances, steps), defaulted and
validated here and nowhere else.

:func:`physnode.odeint` / :func:`physnode.solve` take the options as keywords and validate them into a
:class:`SolveOptions`; :func:`physnode.forecast`, :func:`physnode.fit`, :class:`physnode.FitResult`, the results
files of ``physnode fit`` and the ``[solver]`` table of a CONFIG.toml carry that object (or its
:meth:`SolveOptions.to_dict`).
"""

from __future__ import annotations

import dataclasses
import math
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ._validate import check_int, check_real, describe
from .gradients import GRADIENTS, GradientMethod
from .solvers import SOLVERS, Solver

__all__ = [
    "DEFAULT_ATOL",
    "DEFAULT_GRAD",
    "DEFAULT_MAX_STEPS",
    "DEFAULT_METHOD",
    "DEFAULT_OUTPUTS",
    "DEFAULT_RTOL",
    "FIT_GRAD",
    "LOOP_OPTIONS",
    "MissingStepSizeError",
    "SolveOptions",
    "resolve_options",
]

#: Solver of every entry point unless told otherwise: Dormand–Prince 5(4), adaptive.
DEFAULT_METHOD = "dopri5"
#: Gradient method of :func:`physnode.odeint`: backprop through the accepted steps.
DEFAULT_GRAD = "direct"
#: Gradient method of :func:`physnode.fit` (first-order optimisers): the adaptive checkpoint adjoint, exact like
#: ``"direct"`` with memory that does not grow with the number of rejected steps. Gauss–Newton uses ``"direct"``.
FIT_GRAD = "aca"
#: Relative tolerance of the adaptive methods, shared by the library and the command line.
DEFAULT_RTOL = 1e-7
#: Absolute tolerance of the adaptive methods, shared by the library and the command line.
DEFAULT_ATOL = 1e-9
#: Limit on accepted plus rejected steps per trajectory.
DEFAULT_MAX_STEPS = 100_000

#: How observation times are served: ``"land"`` (a step ends on each) or ``"interpolate"`` (the continuous extension
#: of the step covering each; steps land only on the last time). See docs/concepts/dense-output.md.
DEFAULT_OUTPUTS = "land"
OUTPUTS = ("land", "interpolate")

#: Options of the integration loop itself, accepted with every method: name -> (default, description).
LOOP_OPTIONS: dict[str, tuple[object, str]] = {
    "stiffness_check": (
        True,
        "fail early with StiffnessError when an adaptive Runge–Kutta solve is pinned at its stability limit and "
        "would exceed max_steps (bool)",
    ),
    "compile": (
        False,
        "run each explicit Runge–Kutta step (stages, right-hand side, error estimate) as one torch.compile-d "
        "function, in the forward loop and in the replays of the custom-backward methods; the first compilation "
        "takes seconds to a minute; warns and solves eagerly where compiling is impossible (bool; see "
        "physnode.compiled)",
    ),
    "integral_controller": (
        False,
        "choose adaptive steps with the integral controller h' = h·clip(0.9·e^(-1/k), 0.2, 10) (beta1 = 1, "
        "beta2 = 0: the factor of torchode's IntegralController) instead of the PI controller; with step_grad and "
        "outputs='interpolate' it gave the smallest gradient errors measured (bool; see "
        "docs/concepts/gradients.md)",
    ),
    # Differentiating through the step-size controller (physnode.step_grad): validated in _split_options.
    "step_grad": (
        False,
        "put the adaptive step sizes on the graph: dh/dθ through the controller's update of each step from its "
        "error estimate, with the last step of each interval the remainder; grad='direct', 'aca' and "
        "'symplectic' only (bool; see docs/concepts/gradients.md)",
    ),
}

_TOL_WHAT = "a non-negative float (or a tensor of shape (D,) with one value per state component)"
_FIELDS = (
    "method",
    "grad",
    "rtol",
    "atol",
    "step_size",
    "max_steps",
    "options",
    "min_step",
    "max_step",
    "norm",
    "outputs",
    "dense",
)
_JSON_SCALARS = (bool, int, float, str)


class MissingStepSizeError(ValueError):
    """A fixed-step method without ``step_size`` (a ``ValueError``; the command line catches it to name its own
    flag or TOML key)."""


def _check_tolerance(name: str, value: object) -> float | Tensor:
    """The checks of ``rtol`` / ``atol`` that do not depend on the state: a non-negative finite real number, or a
    real tensor of non-negative finite values (its shape is checked against the state by
    :meth:`SolveOptions.tolerances`)."""
    if isinstance(value, Tensor) and value.ndim > 0:
        if value.device.type == "meta":
            raise ValueError(f"{name} is a meta tensor (shape only, no values); pass real values.")
        if not value.is_floating_point():
            raise TypeError(f"{name} must be {_TOL_WHAT}, got a tensor of dtype {value.dtype}.")
        values = value.detach()
        if not bool(torch.isfinite(values).all()) or bool((values < 0).any()):
            raise ValueError(f"{name} must be non-negative and finite in every component, got {value.tolist()}.")
        return values
    v = check_real(name, value, _TOL_WHAT)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name} must be a non-negative finite number, got {describe(value)}.")
    return v


def _low(value: float | Tensor) -> float:
    return float(value.min()) if isinstance(value, Tensor) else value


def _registered_name(registry: Any, value: object) -> str:
    """The name of ``value`` in ``registry``: the name itself, or the name its class is registered under (else the
    class name, which :meth:`SolveOptions.from_dict` refuses with the registry's list of names)."""
    if isinstance(value, str):
        return value
    for name in registry.names():
        if registry.cls(name) is type(value):
            return name
    return type(value).__name__


@dataclass(frozen=True, eq=False)
class SolveOptions:
    """The options of a solve, checked once at construction (immutable: derive others with :meth:`replace`).

    Parameters
    ----------
    method
        Solver name of :data:`physnode.SOLVERS` or a :class:`~physnode.solvers.Solver` (default ``"dopri5"``).
    grad
        Gradient method name of :data:`physnode.GRADIENTS` or a :class:`~physnode.gradients.GradientMethod`
        (default ``"direct"``).
    rtol, atol
        Tolerances of the adaptive methods (RMS norm per trajectory): non-negative finite floats, not both zero, or
        tensors of shape ``(D,)``; defaults ``1e-7`` and ``1e-9``. The checks that need the state (shape, the
        resolution of its dtype) run in :meth:`tolerances`.
    step_size
        Step of the fixed-step methods (time units; required there) or first step of the adaptive ones.
    max_steps
        Limit on accepted plus rejected steps per trajectory (``None``: 100 000).
    options
        Keyword options of the solver or the gradient method (e.g. ``{"eta": 0.9}``) and of the loop
        (:data:`LOOP_OPTIONS`: ``"stiffness_check"``); each key is routed to the one that accepts it, unknown keys
        raise.
    min_step, max_step
        Bounds on the magnitude of the steps of adaptive methods (time units; defaults ``0`` and ``inf``). The
        controller never proposes a step outside them; a step of ``min_step`` or shorter that the error estimate
        rejects fails the trajectory with status ``STEP_UNDERFLOW`` (``StepSizeUnderflowError``). Steps that land
        on an observation time may be shorter than ``min_step``. Fixed-step methods take neither.
    norm
        Error norm of adaptive methods: a callable taking the scaled error ``err / (atol + rtol max(|y|, |y_new|))``
        ``(B, D)`` and returning one non-negative value per trajectory ``(B,)``; a step is accepted when it is at
        most 1. ``None`` (default): the RMS norm. Not written by :meth:`to_dict` (a function is not data).
    outputs
        ``"land"`` (default): a step ends on every observation time. ``"interpolate"``: steps follow the tolerance
        alone (landing only on the last time) and each observation is evaluated from the continuous extension of
        the step covering it (explicit Runge–Kutta methods; every exact gradient method stays exact for this
        discrete solve; the reversible methods refuse it).
    dense
        Keep the continuous extension of every step, for :meth:`physnode.Solution.interpolate` (explicit
        Runge–Kutta methods; differentiable with ``grad="direct"``).

    Raises
    ------
    TypeError, ValueError
        A value of the wrong type or out of range; the message says what was received and what is expected.
    """

    method: str | Solver = DEFAULT_METHOD
    grad: str | GradientMethod = DEFAULT_GRAD
    rtol: float | Tensor = DEFAULT_RTOL
    atol: float | Tensor = DEFAULT_ATOL
    step_size: float | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    options: Mapping[str, Any] = field(default_factory=dict)
    # Step bounds and error norm of the adaptive controller (validated in _check_step_control).
    min_step: float = 0.0
    max_step: float = math.inf
    norm: Callable[[Tensor], Tensor] | None = None
    # Observations by interpolation and dense solutions (validated in _check_outputs).
    outputs: str = DEFAULT_OUTPUTS
    dense: bool = False
    _solver_options: dict[str, Any] = field(init=False, repr=False)
    _gradient_options: dict[str, Any] = field(init=False, repr=False)
    _loop_options: dict[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        m_opts, g_opts, loop_opts = self._split_options()
        solver: Solver = SOLVERS.build(self.method, m_opts)
        GRADIENTS.build(self.grad, g_opts)
        rtol = _check_tolerance("rtol", self.rtol)
        atol = _check_tolerance("atol", self.atol)
        if _low(rtol) == 0.0 and _low(atol) == 0.0:
            raise ValueError("rtol and atol cannot both be zero: at least one must be positive (e.g. rtol=1e-7).")
        step_size = self.step_size
        if step_size is not None:
            step_size = check_real("step_size", step_size, "a positive float (time units) or None")
            if not (math.isfinite(step_size) and step_size > 0):
                raise ValueError(f"step_size must be a positive finite number (time units), got {step_size!r}.")
        if not solver.adaptive and step_size is None:
            raise MissingStepSizeError(
                f"method={solver.name!r} takes fixed steps here and needs step_size=... (time units); or "
                "choose an adaptive method such as 'dopri5'."
            )
        max_steps = DEFAULT_MAX_STEPS if self.max_steps is None else self.max_steps
        max_steps = check_int("max_steps", max_steps, "a positive integer or None (default 100 000)")
        if max_steps < 1:
            raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}.")
        self._check_step_control(solver, step_size)
        self._check_outputs(solver, loop_opts)
        setattr_(self, "rtol", rtol)
        setattr_(self, "atol", atol)
        setattr_(self, "step_size", step_size)
        setattr_(self, "max_steps", max_steps)
        setattr_(self, "options", types.MappingProxyType(dict(self.options or {})))
        setattr_(self, "_solver_options", m_opts)
        setattr_(self, "_gradient_options", g_opts)
        setattr_(self, "_loop_options", loop_opts)

    def _check_step_control(self, solver: Solver, step_size: float | None) -> None:
        """Validate and normalise ``min_step``, ``max_step`` and ``norm``."""
        lo = check_real("min_step", self.min_step, "a non-negative float (time units); default 0")
        hi = check_real("max_step", self.max_step, "a positive float or inf (time units); default inf")
        if not (math.isfinite(lo) and lo >= 0):
            raise ValueError(f"min_step must be a non-negative finite number (time units), got {self.min_step!r}.")
        if not (hi > 0) or math.isnan(hi):
            raise ValueError(f"max_step must be positive (time units; inf for no bound), got {self.max_step!r}.")
        if lo > hi:
            raise ValueError(f"min_step = {lo!r} exceeds max_step = {hi!r}; choose min_step <= max_step.")
        if self.norm is not None and not callable(self.norm):
            raise TypeError(
                f"norm must be a function of the scaled error (B, D) -> (B,) or None (RMS), got {describe(self.norm)}."
            )
        custom = lo > 0 or hi != math.inf or self.norm is not None
        if custom and not solver.adaptive:
            raise ValueError(
                f"min_step, max_step and norm control adaptive steps; method={solver.name!r} takes fixed steps of "
                "step_size. Drop them, or choose an adaptive method such as 'dopri5'."
            )
        if step_size is not None and solver.adaptive and not lo <= step_size <= hi:
            raise ValueError(
                f"the first step step_size = {step_size!r} lies outside [min_step, max_step] = [{lo!r}, {hi!r}]."
            )
        object.__setattr__(self, "min_step", lo)
        object.__setattr__(self, "max_step", hi)

    def _check_outputs(self, solver: Solver, loop_opts: Mapping[str, Any]) -> None:
        """Validate ``outputs`` and ``dense`` (the method must have a continuous extension to use them)."""
        if self.outputs not in OUTPUTS:
            raise ValueError(
                f"outputs must be 'land' (a step ends on every observation time) or 'interpolate' (observations from "
                f"the continuous extension of each step), got {describe(self.outputs)}."
            )
        if not isinstance(self.dense, bool):
            raise TypeError(f"dense must be True or False, got {describe(self.dense)}.")
        if (self.outputs == "interpolate" or self.dense) and solver.dense_order is None:
            what = "outputs='interpolate'" if self.outputs == "interpolate" else "dense=True"
            raise ValueError(
                f"{what} needs a method with a continuous extension (dense output); method={solver.name!r} has none. "
                "Use an explicit Runge–Kutta method such as 'dopri5' or 'tsit5', or outputs='land', dense=False."
            )
        if self.outputs == "interpolate" and loop_opts.get("step_grad") and self.grad_name not in ("direct", "aca"):
            raise ValueError(
                f"outputs='interpolate' with options={{'step_grad': True}} is differentiated by grad='direct' and "
                f"grad='aca' only; grad={self.grad_name!r} does not differentiate the fractions theta = (t_obs - t_n) "
                "/ h_n of the steps at which observations are interpolated. Use grad='direct' or 'aca', "
                "outputs='land', or drop step_grad."
            )

    def _split_options(self) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """Route ``options`` to the solver, the gradient method and the loop (:data:`LOOP_OPTIONS`)."""
        loop_opts: dict[str, Any] = {k: default for k, (default, _) in LOOP_OPTIONS.items()}
        options, method, grad = self.options, self.method, self.grad
        if options is None:
            return {}, {}, loop_opts
        if not isinstance(options, Mapping):
            raise TypeError(f"options must be a dict of solver or gradient-method options, got {describe(options)}.")
        m_keys, g_keys = SOLVERS.accepted_options(method), GRADIENTS.accepted_options(grad)
        m_opts, g_opts = {}, {}
        for k, v in options.items():
            if k in LOOP_OPTIONS:
                if not isinstance(v, bool):
                    raise TypeError(f"option {k!r} must be True or False, got {describe(v)}.")
                loop_opts[k] = v
            elif k in m_keys:
                m_opts[k] = v
            elif k in g_keys:
                g_opts[k] = v
            else:
                accepted = sorted(m_keys | g_keys | set(LOOP_OPTIONS))
                raise ValueError(
                    f"unknown option {k!r} for method={method!r}, grad={grad!r}; accepted: {', '.join(accepted)}."
                )
        if loop_opts["step_grad"]:
            gcls = GRADIENTS.cls(grad) if isinstance(grad, str) else type(grad)
            if not getattr(gcls, "step_grad", False):
                supported = [n for n in GRADIENTS.names() if getattr(GRADIENTS.cls(n), "step_grad", False)]
                raise ValueError(
                    f"options={{'step_grad': True}} is not supported by grad={_registered_name(GRADIENTS, grad)!r}, "
                    f"which differentiates with the step sizes held constant; use grad= one of {supported}, or "
                    "drop step_grad."
                )
        return m_opts, g_opts, loop_opts

    # ------------------------------------------------------------------------------------------------ building
    def build_solver(self) -> Solver:
        """A fresh solver (the ``method`` object itself when one was given) with its options."""
        return SOLVERS.build(self.method, self._solver_options)

    def build_gradient(self) -> GradientMethod:
        """A fresh gradient method (the ``grad`` object itself when one was given) with its options."""
        return GRADIENTS.build(self.grad, self._gradient_options)

    @property
    def adaptive(self) -> bool:
        """Whether the solver chooses its steps from ``rtol`` / ``atol`` (else it takes steps of ``step_size``)."""
        return bool(self.build_solver().adaptive)

    def without_gradient(self) -> SolveOptions:
        """The same solve differentiated with ``"direct"`` and without gradient-method options: for solves under
        ``torch.no_grad()`` (forecasts), where another method's pairing rules do not apply."""
        options = {k: v for k, v in self.options.items() if k not in self._gradient_options}
        return self.replace(grad=DEFAULT_GRAD, options=options)

    @property
    def stiffness_check(self) -> bool:
        """The loop option ``"stiffness_check"`` (default ``True``)."""
        return bool(self._loop_options["stiffness_check"])

    @property
    def step_grad(self) -> bool:
        """The loop option ``"step_grad"`` (default ``False``): differentiate through the step-size controller."""
        return bool(self._loop_options["step_grad"])

    @property
    def integral_controller(self) -> bool:
        """The loop option ``"integral_controller"`` (default ``False``): the integral step-size controller
        (``beta1 = 1``, ``beta2 = 0``) instead of the PI controller."""
        return bool(self._loop_options["integral_controller"])

    @property
    def compile(self) -> bool:
        """The loop option ``"compile"`` (default ``False``): the compiled step of :mod:`physnode.compiled`."""
        return bool(self._loop_options["compile"])

    @property
    def method_name(self) -> str:
        """``method`` as a registry name (an object's registered name, else its class name)."""
        return _registered_name(SOLVERS, self.method)

    @property
    def grad_name(self) -> str:
        """``grad`` as a registry name (an object's registered name, else its class name)."""
        return _registered_name(GRADIENTS, self.grad)

    def tolerances(self, y0: Tensor) -> tuple[float | Tensor, float | Tensor]:
        """``(rtol, atol)`` checked against a state like ``y0`` ``(..., D)``; tensors on ``y0``'s device and dtype.

        A tensor tolerance must have shape ``()``, ``(1,)`` or ``(D,)``. ``rtol`` must not be below the unit roundoff
        of ``y0``'s dtype: no solver can meet a relative error smaller than the rounding of one operation on the
        state, and asking for it only multiplies the steps (a float32 solve at ``rtol=1e-12`` took 53,636 steps).
        ``atol`` must not be below the smallest normal number of the dtype.
        """
        D = y0.shape[-1]
        finfo = torch.finfo(y0.dtype)
        out = []
        for name, value in (("rtol", self.rtol), ("atol", self.atol)):
            if isinstance(value, Tensor):
                if value.ndim > 1 or (value.ndim == 1 and value.shape[0] not in (1, D)):
                    raise ValueError(
                        f"{name} of shape {tuple(value.shape)} does not fit the state of dimension D = {D}: pass a "
                        f"float or a tensor of shape ({D},), one value per state component."
                    )
                value = value.to(device=y0.device, dtype=y0.dtype)
            low = _low(value)
            if name == "rtol" and 0 < low < finfo.eps / 2:
                raise ValueError(
                    f"rtol = {low:.3g} is below the resolution of {y0.dtype} (unit roundoff {finfo.eps / 2:.1e}): no "
                    f"solver can meet it, it only takes ever smaller steps. Use rtol >= {10 * finfo.eps:.1e} (10·eps, "
                    f"the smallest sensible for {y0.dtype}), or solve in float64 (y0.double(), t.double())."
                )
            if name == "atol" and 0 < low < finfo.tiny:
                raise ValueError(
                    f"atol = {low:.3g} is below the smallest normal {y0.dtype} ({finfo.tiny:.1e}); the scaled error "
                    "overflows near 0. Choose atol around rtol times the typical size of the state components (or 0 "
                    "for a purely relative tolerance)."
                )
            out.append(value)
        return out[0], out[1]

    # ------------------------------------------------------------------------------------------------ copies
    def replace(self, **changes: Any) -> SolveOptions:
        """A copy with ``changes`` (field names as keywords), validated again.

        Raises
        ------
        TypeError
            A keyword that is not a field (the message lists the fields).
        """
        unknown = sorted(set(changes) - set(_FIELDS))
        if unknown:
            raise TypeError(f"SolveOptions has no field(s) {unknown}; fields: {', '.join(_FIELDS)}.")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as a JSON- and TOML-safe dict (the ``[solver]`` table of a CONFIG.toml, ``"solver"`` of the
        results files); :meth:`from_dict` reads it back. ``step_size`` is left out when ``None`` (TOML has no
        null); tensor tolerances become lists; solver and gradient objects their registered names.

        Raises
        ------
        TypeError
            A solver or gradient option whose value is not a bool, int, float or string.
        """
        out: dict[str, Any] = {"method": self.method_name, "grad": self.grad_name}
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            out[name] = [float(x) for x in value.reshape(-1).tolist()] if isinstance(value, Tensor) else value
        if self.step_size is not None:
            out["step_size"] = self.step_size
        out["max_steps"] = self.max_steps
        for key, value in self.options.items():
            if not isinstance(value, _JSON_SCALARS):
                raise TypeError(
                    f"option {key!r} = {describe(value)} cannot be written to a results or TOML file; only bool, "
                    "int, float and string options can."
                )
        if self.options:
            out["options"] = dict(self.options)
        if self.min_step != 0.0:
            out["min_step"] = self.min_step
        if self.max_step != math.inf:
            out["max_step"] = self.max_step
        if self.outputs != DEFAULT_OUTPUTS:
            out["outputs"] = self.outputs
        if self.dense:
            out["dense"] = True
        if self.norm is not None:
            raise TypeError(
                f"norm = {describe(self.norm)} cannot be written to a results or TOML file (a function is not data); "
                "pass it again when solving, e.g. options.replace(norm=None).to_dict() to write the rest."
            )
        return out

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> SolveOptions:
        """Options from a dict like :meth:`to_dict`'s (missing keys take the defaults; lists of numbers become
        float64 tolerance tensors).

        Raises
        ------
        TypeError, ValueError
            Not a mapping, an unknown key (the message lists the known ones), or a value that fails validation.
        """
        if not isinstance(table, Mapping):
            raise TypeError(f"solve options must be a table (dict) of {', '.join(_FIELDS)}; got {describe(table)}.")
        unknown = sorted(set(table) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown solve option key(s) {unknown}; known: {', '.join(_FIELDS)}.")
        kwargs = dict(table)
        for name in ("rtol", "atol"):
            value = kwargs.get(name)
            if isinstance(value, list):
                if not value or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
                    raise TypeError(f"{name} must be {_TOL_WHAT}, got {describe(value)}.")
                kwargs[name] = torch.tensor(value, dtype=torch.float64)
        for name in ("method", "grad"):
            if name in kwargs and not isinstance(kwargs[name], str):
                raise TypeError(f"{name} must be a name, got {describe(kwargs[name])}.")
        return cls(**kwargs)

    # ------------------------------------------------------------------------------------------------ equality
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SolveOptions):
            return NotImplemented
        for a, b in ((self.method, other.method), (self.grad, other.grad)):
            if (a != b) if isinstance(a, str) and isinstance(b, str) else a is not b:
                return False
        for x, y in ((self.rtol, other.rtol), (self.atol, other.atol)):
            if isinstance(x, Tensor) and isinstance(y, Tensor):
                if x.shape != y.shape or not bool((x.cpu().double() == y.cpu().double()).all()):
                    return False
            elif isinstance(x, Tensor) or isinstance(y, Tensor) or x != y:
                return False
        if self.norm is not other.norm:
            return False
        if (self.outputs, self.dense) != (other.outputs, other.dense):
            return False
        return (self.step_size, self.max_steps, dict(self.options), self.min_step, self.max_step) == (
            other.step_size,
            other.max_steps,
            dict(other.options),
            other.min_step,
            other.max_step,
        )

    __hash__ = None  # type: ignore[assignment]


def _is_default(value: object, default: object) -> bool:
    if value is default:
        return True
    if isinstance(value, Tensor) or isinstance(default, Tensor):
        return False
    return type(value) is type(default) and value == default


def resolve_options(
    options: SolveOptions | Mapping[str, Any] | None, defaults: Mapping[str, Any], **keywords: Any
) -> SolveOptions:
    """The :class:`SolveOptions` of an entry point that takes the options as keywords or as one object.

    Parameters
    ----------
    options
        A :class:`SolveOptions` (then every keyword must be left at its default), or the solver / gradient options
        mapping (``None`` for none).
    defaults
        The entry point's keyword defaults, to tell given keywords from defaults.
    **keywords
        ``method``, ``grad``, ``rtol``, ``atol``, ``step_size``, ``max_steps`` (and ``min_step``, ``max_step``,
        ``norm`` where the entry point takes them) as the caller received them.

    Raises
    ------
    ValueError
        Both a :class:`SolveOptions` and non-default keywords.
    """
    if isinstance(options, SolveOptions):
        given = [k for k, v in keywords.items() if not _is_default(v, defaults[k])]
        if given:
            raise ValueError(
                f"{', '.join(given)} given both as keyword(s) and in options=SolveOptions(...); set them in one place, "
                f"e.g. options.replace({given[0]}=...)."
            )
        return options
    return SolveOptions(**keywords, options=options if options is not None else {})
