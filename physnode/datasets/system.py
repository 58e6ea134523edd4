"""A dataset of the zoo as a :class:`System` record, and the one :func:`generate` that samples any of them.

A :class:`System` says what a dataset card says (title, equations, state names and units, parameters with units
and meanings, time unit, how initial states are drawn) and holds the two functions that differ between systems:
the initial-state sampler and the right-hand-side builder. :func:`generate` does the rest the same way for every
system: check the options, seed the generator, draw the initial states, then solve, sample, add noise and drop
entries (:func:`physnode.datasets._common.generate`). :func:`generator` turns a record into the keyword function
registered in :data:`physnode.datasets.DATASETS`. A system with an :attr:`System.order` also accepts ``do=``
state interventions (:class:`HeldRHS`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from ..data.trajectories import Trajectories
from ._common import Spec, check_options
from ._common import generate as _solve_and_observe

__all__ = ["COMMON_OPTIONS", "HeldRHS", "Parameter", "System", "generate", "generator"]

#: Keywords that every generator accepts, in signature order (their defaults, but for ``irregular``, ``noise``,
#: ``missing``, ``observe`` and ``seed``, come from the :class:`System`).
COMMON_OPTIONS = (
    "n_trajectories",
    "n_times",
    "t_span",
    "irregular",
    "noise",
    "missing",
    "observe",
    "seed",
    "random_initial",
)


@dataclass(frozen=True)
class Parameter:
    """A quantity of a system: its default value, unit and meaning.

    Attributes
    ----------
    default
        Value used when the generator is not given this keyword (``None``: derived by :attr:`System.prepare`).
    unit
        Unit (``"1"`` for dimensionless quantities).
    meaning
        One line for the dataset card.
    kind
        ``"keyword"``: a keyword of the generator; ``"size"``: a structural integer (number of bodies, dimensions),
        a keyword that may also be given by position; ``"constant"``: fixed, not a keyword (stored in the metadata
        only).
    """

    default: Any
    unit: str
    meaning: str
    kind: Literal["keyword", "size", "constant"] = "keyword"


#: Builds the right-hand side ``f(t, y)`` from the parameter values (and what :attr:`System.prepare` built).
RhsBuilder = Callable[[Mapping[str, Any]], Callable[[Tensor, Tensor], Tensor]]
#: Draws ``y0 (N, S)`` from ``(generator, N, random_initial, parameters, options)``; may also return one metadata
#: dict per trajectory.
InitialSampler = Callable[
    [torch.Generator, int, bool, Mapping[str, Any], Mapping[str, Any]], Tensor | tuple[Tensor, list[dict[str, Any]]]
]


@dataclass(frozen=True)
class System:
    """One dataset of the zoo: what its card says and how to draw and solve it.

    Attributes
    ----------
    name
        Registry name.
    title
        One-line title; a function of the ``"size"`` parameters for systems whose size is an option.
    equations
        The equations of motion (markdown).
    states
        ``(name, unit)`` of each state component, or a function of the ``"size"`` parameters returning them.
    parameters
        ``name -> Parameter``, in the order of the metadata's ``parameters`` (see :class:`Parameter`).
    time_units
        Unit of time.
    t_span
        Default ``(t0, t1)``.
    initial_conditions
        How the initial states are drawn (markdown, for the card).
    initial
        The initial-state sampler ``(generator, N, random_initial, parameters, options) -> y0 (N, S)`` (or
        ``(y0, per-trajectory metadata)``); it draws from the generator first, so a seed fixes the data.
    rhs
        Builds ``f(t, y)`` from the parameter values.
    observed
        Default observed components: ``"positions"`` (the first half of the state) or ``"state"`` (all).
    n_trajectories, n_times, random_initial
        Defaults of these generator keywords.
    options
        Further keywords of the sampler with their defaults (e.g. ``init_scale``), not physical parameters.
    prepare
        Checks the parameter values and returns the metadata's ``parameters`` (e.g. masses as a list, derived
        constants), or ``(parameters, built)``: ``built`` (e.g. system matrices drawn from a seed) is given to
        :attr:`initial`, :attr:`rhs` and :attr:`attrs` with the parameters but not stored as parameters; default:
        the values unchanged.
    attrs
        Extra file attributes from ``(t0, t1, parameters and built)`` (e.g. ``t_split``, a stored graph).
    order
        ``1`` or ``2`` for a system that accepts ``do={state: value}`` interventions (keyword after the
        parameters): the named components are held at the values from ``t0`` on (:class:`HeldRHS`); for order 2 the
        state is positions then velocities, only positions may be named and their velocities are held at 0. The
        file records ``attrs["do"]`` and ``attrs["order"]``. ``None``: no ``do`` keyword.
    notes
        Further remarks for the card.
    doc
        The generator's docstring.
    """

    name: str
    title: str | Callable[..., str]
    equations: str
    states: Sequence[tuple[str, str]] | Callable[..., Sequence[tuple[str, str]]]
    parameters: Mapping[str, Parameter]
    time_units: str
    t_span: tuple[float, float]
    initial_conditions: str
    initial: InitialSampler
    rhs: RhsBuilder
    observed: Literal["positions", "state"] = "state"
    n_trajectories: int = 8
    n_times: int = 200
    random_initial: bool = True
    options: Mapping[str, Any] = field(default_factory=dict)
    prepare: Callable[[dict[str, Any]], dict[str, Any] | tuple[dict[str, Any], dict[str, Any]]] | None = None
    attrs: Callable[[float, float, Mapping[str, Any]], Mapping[str, Any]] | None = None
    order: Literal[1, 2] | None = None
    notes: str = ""
    doc: str = ""

    @property
    def sizes(self) -> dict[str, Any]:
        """The default ``"size"`` parameters."""
        return {k: p.default for k, p in self.parameters.items() if p.kind == "size"}

    def spec(self, **sizes: Any) -> Spec:
        """The card information of this system at ``sizes`` (default: :attr:`sizes`)."""
        sizes = {**self.sizes, **sizes}
        title = self.title(**sizes) if callable(self.title) else self.title
        states = tuple(self.states(**sizes) if callable(self.states) else self.states)
        return Spec(
            name=self.name,
            title=title,
            equations=self.equations,
            state_names=tuple(n for n, _ in states),
            state_units=tuple(u for _, u in states),
            parameters={k: (p.unit, p.meaning) for k, p in self.parameters.items()},
            time_units=self.time_units,
            initial_conditions=self.initial_conditions,
            notes=self.notes,
        )

    def signature(self) -> inspect.Signature:
        """The generator's signature: sizes (by position or keyword), then keyword-only options and parameters."""
        P = inspect.Parameter
        params = [
            P(k, P.POSITIONAL_OR_KEYWORD, default=p.default) for k, p in self.parameters.items() if p.kind == "size"
        ]
        common = {
            "n_trajectories": self.n_trajectories,
            "n_times": self.n_times,
            "t_span": self.t_span,
            "irregular": False,
            "noise": 0.0,
            "missing": 0.0,
            "observe": None,
            "seed": 0,
            "random_initial": self.random_initial,
        }
        params += [P(k, P.KEYWORD_ONLY, default=v) for k, v in common.items()]
        params += [P(k, P.KEYWORD_ONLY, default=v) for k, v in self.options.items()]
        params += [P(k, P.KEYWORD_ONLY, default=p.default) for k, p in self.parameters.items() if p.kind == "keyword"]
        if self.order is not None:
            params.append(P("do", P.KEYWORD_ONLY, default=None))
        return inspect.Signature(params, return_annotation=Trajectories)


def generate(
    system: System,
    *,
    n_trajectories: int | None = None,
    n_times: int | None = None,
    t_span: Sequence[float] | None = None,
    irregular: bool = False,
    noise: float = 0.0,
    missing: float = 0.0,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    random_initial: bool | None = None,
    **values: Any,
) -> Trajectories:
    """Generate ``n_trajectories`` trajectories of ``system`` with a high-accuracy solve.

    Parameters
    ----------
    system
        The system record.
    n_trajectories
        Number of trajectories ``N`` (default: :attr:`System.n_trajectories`).
    n_times
        Observation times per trajectory (with ``irregular``, the most a trajectory gets; default:
        :attr:`System.n_times`).
    t_span
        ``(t0, t1)``: the initial state is given at ``t0``, observations lie in ``[t0, t1]`` (default:
        :attr:`System.t_span`).
    irregular
        Random times per trajectory: ``t0`` plus sorted uniform draws, a random count in ``[n_times // 2, n_times]``.
    noise
        Standard deviation of additive Gaussian observation noise, in the units of each channel.
    missing
        Probability that an observation of a channel is dropped (mask false), independently per entry.
    observe
        Names of the observed state components (default: :attr:`System.observed`).
    seed
        Seed of the ``torch.Generator`` that draws initial states, times, noise and the mask (in that order).
    random_initial
        Draw random initial states (else every trajectory starts from the documented default state; default:
        :attr:`System.random_initial`).
    **values
        The system's sizes, parameters and :attr:`System.options` (all of them, as given to the generator), and
        ``do`` for a system with an :attr:`System.order`.

    Returns
    -------
    Trajectories
        Metadata: each trajectory's initial state and time and the parameters; attributes: the dataset, its
        options and the solver.

    Raises
    ------
    ValueError
        An option out of range, an unknown observed component, a bad ``do``, or parameters that
        :attr:`System.prepare` refuses.
    """
    n_trajectories = system.n_trajectories if n_trajectories is None else n_trajectories
    n_times = system.n_times if n_times is None else n_times
    t_span = system.t_span if t_span is None else t_span
    random_initial = system.random_initial if random_initial is None else random_initial
    keywords = {k for k, p in system.parameters.items() if p.kind != "constant"} | set(system.options)
    if system.order is not None:
        keywords.add("do")
    unknown = [k for k in values if k not in keywords]
    if unknown:
        accepted = ", ".join(system.signature().parameters)
        raise ValueError(f"unknown option(s) {sorted(unknown)} for dataset {system.name!r}; accepted: {accepted}.")
    given = {k: p.default if p.kind == "constant" else values.get(k, p.default) for k, p in system.parameters.items()}
    extra = {k: values.get(k, v) for k, v in system.options.items()}
    # The file's "options" attribute: every keyword of the generator with its value, in signature order.
    options = {
        **{k: given[k] for k, p in system.parameters.items() if p.kind == "size"},
        "n_trajectories": n_trajectories,
        "n_times": n_times,
        "t_span": t_span,
        "irregular": irregular,
        "noise": noise,
        "missing": missing,
        "observe": observe,
        "seed": seed,
        "random_initial": random_initial,
        **extra,
        **{k: given[k] for k, p in system.parameters.items() if p.kind == "keyword"},
    }
    do = values.get("do")
    if system.order is not None:
        options["do"] = dict(do) if isinstance(do, Mapping) else do
    options = {k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}
    t0, t1 = check_options(
        n_trajectories,
        n_times,
        t_span,
        noise,
        missing,
        seed,
        irregular=irregular,
        random_initial=random_initial,
        observe=observe,
    )
    prepared = system.prepare(given) if system.prepare is not None else given
    params, built = prepared if isinstance(prepared, tuple) else (prepared, {})
    model = {**params, **built}
    spec = system.spec(**{k: params[k] for k in system.sizes})
    index: list[int] = []
    if system.order is not None:  # do= is checked before anything is drawn or solved
        index, held_values = _held_components(do, spec.state_names, len(spec.state_names) // system.order)
    gen = torch.Generator().manual_seed(seed)
    drawn = system.initial(gen, n_trajectories, random_initial, model, extra)
    y0, per_trajectory = drawn if isinstance(drawn, tuple) else (drawn, None)
    rhs = system.rhs(model)
    attrs = dict(system.attrs(t0, t1, model)) if system.attrs is not None else {}
    if index:
        rhs = HeldRHS(rhs, index, held_values)
        y0 = rhs.apply(y0)
    if system.order is not None:
        attrs.update({"do": dict(do or {}), "order": system.order})
    half = len(spec.state_names) // 2
    default_observe = spec.state_names[:half] if system.observed == "positions" else spec.state_names
    return _solve_and_observe(
        spec,
        rhs,
        y0,
        gen=gen,
        n_times=n_times,
        t0=t0,
        t1=t1,
        irregular=irregular,
        noise=noise,
        missing=missing,
        observe=observe,
        default_observe=default_observe,
        parameters=params,
        options=options,
        attrs=attrs,
        per_trajectory=per_trajectory,
    )


class HeldRHS:
    """``rhs`` with the components ``index`` held at ``values`` (derivative zero, others see the values)."""

    def __init__(self, rhs: Callable[[Tensor, Tensor], Tensor], index: list[int], values: list[float]) -> None:
        self.rhs, self.index = rhs, torch.tensor(index)
        self.values = torch.tensor(values, dtype=torch.float64)

    def apply(self, y: Tensor) -> Tensor:
        """``y`` with the held components set to their values."""
        y = y.clone()
        y[..., self.index] = self.values.to(y)
        return y

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        f = self.rhs(t, self.apply(y))
        f[..., self.index] = 0
        return f


def _held_components(do: Any, names: Sequence[str], positions: int) -> tuple[list[int], list[float]]:
    """Indices and values of a state intervention ``do`` (positions of a second-order system also fix the velocity)."""
    if do is None:
        return [], []
    if not isinstance(do, Mapping):
        raise ValueError(f"do must be a dict {{variable: value}}, e.g. {{'x3': 0.5}}, got {do!r}.")
    idx, vals = [], []
    for k, v in do.items():
        if k not in names[:positions]:
            raise ValueError(
                f"do names {k!r}, which is not a variable of this system; choose from {', '.join(names[:positions])}."
            )
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"do[{k!r}] must be a number, got {v!r}.")
        i = list(names).index(k)
        idx.append(i)
        vals.append(float(v))
        if positions < len(names):  # second order: the held mass is at rest
            idx.append(i + positions)
            vals.append(0.0)
    return idx, vals


def generator(system: System) -> Callable[..., Trajectories]:
    """The keyword function of ``system`` registered in :data:`physnode.datasets.DATASETS`.

    Its signature (:meth:`System.signature`) lists every option with its default, so that
    ``DATASETS[name](**options)``, :func:`physnode.datasets.make` and the dataset cards see them.
    """
    sig = system.signature()

    def gen(*args: Any, **kwargs: Any) -> Trajectories:
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{system.name}(): {err}; accepted: {', '.join(sig.parameters)}.") from None
        bound.apply_defaults()
        return generate(system, **bound.arguments)

    gen.__signature__ = sig  # type: ignore[attr-defined]
    gen.__name__ = gen.__qualname__ = system.name
    gen.__doc__ = system.doc
    gen.__module__ = "physnode.datasets.generators"
    return gen
