"""Shared machinery of the zoo's generators: sampling times, the high-accuracy solve, noise and masks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..data.trajectories import Trajectories, solver_ready_times

__all__ = ["ATOL", "METHOD", "RTOL", "Spec", "check_options", "generate", "sample_times"]

#: The reference solve: 8th-order Dormand-Prince, float64.
METHOD, RTOL, ATOL = "dopri8", 1e-10, 1e-12


@dataclass(frozen=True)
class Spec:
    """What a dataset card says about a system.

    Attributes
    ----------
    name, title
        Registry name and a one-line title.
    equations
        The equations of motion (markdown).
    state_names, state_units
        Names and units of the state components (the channels one may observe).
    parameters
        ``name -> (unit, description)`` of the true parameters (their values go to the metadata).
    time_units
        Unit of time.
    initial_conditions
        How the initial states are drawn (markdown).
    """

    name: str
    title: str
    equations: str
    state_names: tuple[str, ...]
    state_units: tuple[str, ...]
    parameters: Mapping[str, tuple[str, str]]
    time_units: str
    initial_conditions: str
    notes: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


#: Most observations per channel of one generated dataset (``n_trajectories * n_times``): 0.8 GB of float64 per
#: state component; larger sets are generated in parts (different seeds) and joined with ``Trajectories.concat``.
MAX_SAMPLES = 10**8


def check_options(
    n_trajectories: int,
    n_times: int,
    t_span: Sequence[float],
    noise: float,
    missing: float,
    seed: int,
    *,
    irregular: object = False,
    random_initial: object = False,
    observe: object = None,
) -> tuple[float, float]:
    """Check the options every generator shares; return ``t_span`` as two floats.

    Raises
    ------
    TypeError, ValueError
        An option of the wrong type or out of range; a dataset larger than :data:`MAX_SAMPLES` per channel.
    """
    if not isinstance(n_trajectories, int) or isinstance(n_trajectories, bool) or n_trajectories < 1:
        raise ValueError(f"n_trajectories must be a positive integer, got {n_trajectories!r}.")
    if not isinstance(n_times, int) or isinstance(n_times, bool) or n_times < 2:
        raise ValueError(f"n_times must be an integer >= 2, got {n_times!r}.")
    if n_trajectories * n_times > MAX_SAMPLES:
        raise ValueError(
            f"n_trajectories x n_times = {n_trajectories:,} x {n_times:,} exceeds {MAX_SAMPLES:,} observations per "
            "channel (0.8 GB of float64 each); generate the data in parts with different seeds and join them with "
            "Trajectories.concat."
        )
    for name, flag in (("irregular", irregular), ("random_initial", random_initial)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be True or False, got {flag!r} ({type(flag).__name__}).")
    if isinstance(observe, str):
        raise TypeError(f"observe must be a list of state names, got the string {observe!r}; write [{observe!r}].")
    if isinstance(t_span, (str, bytes)) or not hasattr(t_span, "__len__"):
        raise ValueError(f"t_span must be (t0, t1) with finite t0 < t1, got {t_span!r}.")
    if len(t_span) != 2 or not all(math.isfinite(float(x)) for x in t_span) or not float(t_span[1]) > float(t_span[0]):
        raise ValueError(f"t_span must be (t0, t1) with finite t0 < t1, got {t_span!r}.")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a non-negative standard deviation (channel units), got {noise!r}.")
    if not (0 <= missing < 1):
        raise ValueError(f"missing must be a rate in [0, 1), got {missing!r}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}.")
    return float(t_span[0]), float(t_span[1])


def sample_times(
    n_trajectories: int, n_times: int, t0: float, t1: float, irregular: bool, gen: torch.Generator
) -> tuple[Tensor, Tensor]:
    """Observation times ``(N, T)`` (NaN padded) and counts ``(N,)``.

    Regular: ``linspace(t0, t1, n_times)`` for all. Irregular: trajectory ``i`` gets a count drawn uniformly from
    ``[max(2, n_times // 2), n_times]``, and its times are ``t0`` (where the initial state is given) followed by
    sorted uniform draws on ``(t0, t1)``.
    """
    if not irregular:
        t = torch.linspace(t0, t1, n_times, dtype=torch.float64)
        return t.expand(n_trajectories, -1).clone(), torch.full((n_trajectories,), n_times, dtype=torch.int64)
    lo = max(2, n_times // 2)
    counts = torch.randint(lo, n_times + 1, (n_trajectories,), generator=gen)
    u = torch.rand(n_trajectories, n_times - 1, generator=gen, dtype=torch.float64)
    u = t0 + (t1 - t0) * u
    times = torch.full((n_trajectories, n_times), math.nan, dtype=torch.float64)
    times[:, 0] = t0
    for i, c in enumerate(counts.tolist()):
        ti = torch.sort(u[i, : c - 1]).values
        if bool((ti.diff() <= 0).any()) or bool((ti <= t0).any()):
            raise RuntimeError("random observation times collided; choose another seed.")
        times[i, 1:c] = ti
    return times, counts


def generate(
    spec: Spec,
    rhs: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    *,
    gen: torch.Generator,
    n_times: int,
    t0: float,
    t1: float,
    irregular: bool,
    noise: float,
    missing: float,
    observe: Sequence[str] | None,
    default_observe: Sequence[str],
    parameters: Mapping[str, Any],
    options: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
    per_trajectory: Sequence[Mapping[str, Any]] | None = None,
) -> Trajectories:
    """Solve ``rhs`` from ``y0 (N, S)`` at ``t0``, sample, add noise and drop entries; build :class:`Trajectories`.

    Random numbers are drawn from ``gen`` in a fixed order (times, noise, mask) after the caller drew the initial
    states, so a seed fixes the data.
    """
    from ..odeint import odeint  # on first use: importing the datasets does not import the solvers

    observe = list(default_observe if observe is None else observe)
    unknown = [c for c in observe if c not in spec.state_names]
    if unknown or not observe or len(set(observe)) != len(observe):
        raise ValueError(
            f"observe must name distinct state components of {spec.name} ({', '.join(spec.state_names)}); "
            f"got {observe}."
        )
    idx = [spec.state_names.index(c) for c in observe]
    N = y0.shape[0]
    times, counts = sample_times(N, n_times, t0, t1, irregular, gen)
    ts = solver_ready_times(times, counts)
    with torch.no_grad():
        ys = odeint(rhs, y0, ts, method=METHOD, rtol=RTOL, atol=ATOL)
    values = ys[..., idx]
    if noise > 0:
        values = values + noise * torch.randn(values.shape, generator=gen, dtype=torch.float64)
    valid = (torch.arange(n_times).unsqueeze(0) < counts.unsqueeze(1)).unsqueeze(-1)
    mask = valid.expand_as(values).clone()
    if missing > 0:
        mask &= torch.rand(values.shape, generator=gen, dtype=torch.float64) >= missing
    params_json = {k: (v.tolist() if isinstance(v, Tensor) else v) for k, v in parameters.items()}
    metadata = [{"initial_state": y0[i].tolist(), "initial_time": t0, "parameters": params_json} for i in range(N)]
    if per_trajectory is not None:
        for m, extra in zip(metadata, per_trajectory, strict=True):
            m.update(extra)
    all_attrs = {
        "dataset": spec.name,
        "title": spec.title,
        "state_names": list(spec.state_names),
        "state_units": list(spec.state_units),
        "parameters": params_json,
        "options": dict(options),
        "solver": {"method": METHOD, "rtol": RTOL, "atol": ATOL, "dtype": "float64"},
    }
    all_attrs.update(attrs or {})
    return Trajectories(
        times,
        values,
        mask,
        counts,
        channels=observe,
        units=[spec.state_units[j] for j in idx],
        time_units=spec.time_units,
        metadata=metadata,
        attrs=all_attrs,
        ids=[f"{spec.name}_{i:04d}" for i in range(N)],
    )
