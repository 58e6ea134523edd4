"""Pharmacology with a hidden process: two-compartment pharmacokinetics, an indirect-response Emax effect on a
disease-activity variable, and an inflammatory process the textbook model does not contain.

Expert model (what a pharmacologist would write; time in days):

- two-compartment pharmacokinetics with intravenous infusion into the central compartment (Gabrielsson and Weiner,
  *Pharmacokinetic and Pharmacodynamic Data Analysis*, 5th ed., 2016, ch. 2; Rowland and Tozer, *Clinical
  Pharmacokinetics and Pharmacodynamics*, 4th ed., 2011, ch. 19): amounts ``A1`` (central), ``A2`` (peripheral) in
  mg, concentration ``C = A1 / V1`` in mg/L;
- an indirect-response model I (inhibition of production; Dayneka, Garg and Jusko, J. Pharmacokinet. Biopharm. 21,
  457–478, 1993) with an Emax drug effect on the disease activity ``R`` (dimensionless, 1 at steady state untreated).

Hidden process (not in the expert model): an inflammatory response ``(M1, M2)``, a damped oscillator driven by the
deviation of the disease activity from its baseline, started away from rest in each patient. The two biomarkers
depend on both: ``score = R + M1`` and ``marker = 0.5 R + M2 / ω``. Drug amounts and concentrations are never
observed.

Parameter magnitudes are typical of small-molecule two-compartment kinetics (volumes of tens of litres, clearances
of litres per day, terminal half-life of about a week) and of indirect-response turnover (``k_out`` of about
0.4 /day); they are chosen for the benchmark, not fitted to one drug. Between-patient variability is log-normal on
``CL``, ``V1`` and ``EC50`` (coefficients of variation 30 %, 20 %, 40 %), the usual population-PK form.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data.trajectories import Trajectories, solver_ready_times
from ._common import ATOL, METHOD, RTOL, Spec, check_options

__all__ = ["POPULATION", "SPEC", "STATES", "expert_physics", "pkpd", "true_rhs"]

F64 = torch.float64

#: State components (true system) and their units.
STATES = (("A1", "mg"), ("A2", "mg"), ("R", "1"), ("M1", "1"), ("M2", "1/day"))
#: Biomarker channels and their units.
CHANNELS = (("score", "1"), ("marker", "1"))

#: Population values: name -> (value, unit, between-patient CV (log-normal; 0 = fixed), meaning).
POPULATION: dict[str, tuple[float, str, float, str]] = {
    "CL": (4.0, "L/day", 0.3, "clearance from the central compartment"),
    "V1": (10.0, "L", 0.2, "central volume"),
    "Q": (6.0, "L/day", 0.0, "inter-compartmental clearance"),
    "V2": (20.0, "L", 0.0, "peripheral volume"),
    "Emax": (0.9, "1", 0.0, "maximal fractional inhibition of the production of R"),
    "EC50": (2.0, "mg/L", 0.4, "concentration of half-maximal effect"),
    "kout": (0.4, "1/day", 0.0, "first-order loss rate of R (production rate kin = kout at baseline R = 1)"),
    "omega": (1.2, "rad/day", 0.0, "natural frequency of the hidden inflammatory process"),
    "zeta": (0.25, "1", 0.0, "damping ratio of the hidden process"),
    "kappa": (1.0, "1/day^2", 0.0, "drive of the hidden process by R - 1"),
}

EQUATIONS = """\
dA1/dt = u(t) - (CL/V1) A1 - (Q/V1) A1 + (Q/V2) A2      (u: infusion rate, mg/day)
dA2/dt = (Q/V1) A1 - (Q/V2) A2
dR/dt  = kout (1 - Emax C / (EC50 + C)) - kout R,        C = A1 / V1
dM1/dt = M2                                            (hidden: not in the expert model)
dM2/dt = -omega^2 M1 - 2 zeta omega M2 + kappa (R - 1)
score  = R + M1 + noise,   marker = 0.5 R + M2 / omega + noise"""

SPEC = Spec(
    name="pkpd",
    title="Two-compartment PK, indirect-response Emax PD and a hidden inflammatory process, with infusions",
    equations=EQUATIONS,
    state_names=tuple(n for n, _ in STATES) + tuple(n for n, _ in CHANNELS),
    state_units=tuple(u for _, u in STATES) + tuple(u for _, u in CHANNELS),
    parameters={
        k: (unit, f"{text}; between-patient CV {cv:g}" if cv else text) for k, (_, unit, cv, text) in POPULATION.items()
    },
    time_units="day",
    initial_conditions=(
        "No drug at t = 0 (`A1 = A2 = 0`); `R(0) ~ U(0.8, 1.2)`; hidden process `M1(0) ~ N(0, 0.3²)`, "
        "`M2(0) ~ N(0, 0.3²)`. Each patient's `CL`, `V1`, `EC50` are the population values times `exp(CV · N(0, 1))`."
    ),
    notes=(
        "Observed channels are the biomarkers `score` and `marker` (the states `A1, A2, R, M1, M2` are never "
        "observed). Each patient's treatment (metadata `infusions`, rows `[start, end, rate]` in day, day, mg/day) is "
        "a loading dose given as a one-hour infusion of 20–60 mg at a time in [0, 2] day, then one to three "
        "maintenance infusions of 20–60 mg/day lasting 1–3 days starting in [0.5, 10] day. Each patient's own "
        "parameters are in its metadata `parameters`; the population values in `attrs['parameters']`. The inputs as a "
        "series: `physnode.latent.TreatmentSchedule.from_metadata(traj)`. The reference solve lands on every "
        "infusion start and end (no step straddles a jump of the infusion rate).\n\nSources of the expert equations: "
        "two-compartment intravenous pharmacokinetics (Gabrielsson and Weiner, *Pharmacokinetic and Pharmacodynamic "
        "Data Analysis*, 5th ed., 2016; Rowland and Tozer, *Clinical Pharmacokinetics and Pharmacodynamics*, 4th ed., "
        "2011); indirect-response model I with an Emax inhibition of production (Dayneka, Garg and Jusko, J. "
        "Pharmacokinet. Biopharm. 21:457-478, 1993). Parameter magnitudes are typical of such models, chosen for the "
        "benchmark, not fitted to one drug. Made for the latent hybridisation model of Qian et al., NeurIPS 2021 "
        "(`physnode bench lhm`).\n\nThe hidden process is driven by the disease activity (`kappa (R - 1)`), so under "
        "treatment it does not die out with its free oscillation: on the benchmark's 100 held-out patients it moves "
        "the noise-free biomarkers by 0.21 RMS over days 6-12 (0.20 over days 0-6) at the default damping 0.25, "
        "against 0.10 for the patients' own CL, V1 and EC50; `hidden_damping=0.05` keeps the free oscillation "
        "alive as well. From days 0-6 at noise 0.05 the patients' CL and V1 are hardly identifiable (Laplace "
        "posterior std of log CL 0.28 against the population's 0.30), EC50 partly (0.18 against 0.40): "
        "`physnode bench lhm --oracle`."
    ),
)


class _TrueRHS:
    """The true system with per-patient parameters ``(B,)`` bound; the infusion rate ``u (B, 1)`` comes from the
    solve (``inputs=``)."""

    def __init__(self, params: dict[str, Tensor]) -> None:
        self.p = params

    def __call__(self, t: Tensor, y: Tensor, u: Tensor | None = None) -> Tensor:
        if u is None:
            raise ValueError("the pkpd system needs the infusion rate: solve it with inputs=.")
        return true_rhs(t, y, u.squeeze(-1), self.p)


def true_rhs(t: Tensor, y: Tensor, u: Tensor, p: dict[str, Tensor]) -> Tensor:
    """``dy/dt`` of the true system, ``y (B, 5) = (A1, A2, R, M1, M2)``, ``u (B,)`` mg/day, ``p`` values ``(B,)``."""
    A1, A2, R, M1, M2 = y.unbind(-1)
    C = A1 / p["V1"]
    dA1 = u - (p["CL"] / p["V1"]) * A1 - (p["Q"] / p["V1"]) * A1 + (p["Q"] / p["V2"]) * A2
    dA2 = (p["Q"] / p["V1"]) * A1 - (p["Q"] / p["V2"]) * A2
    dR = p["kout"] * (1 - p["Emax"] * C / (p["EC50"] + C)) - p["kout"] * R
    dM1 = M2
    w = p["omega"]
    dM2 = -(w**2) * M1 - 2 * p["zeta"] * w * M2 + p["kappa"] * (R - 1)
    return torch.stack([dA1, dA2, dR, dM1, dM2], dim=-1)


def expert_physics(learnable: Sequence[str] = ("CL", "V1", "EC50"), initial: dict[str, float] | None = None) -> Any:
    """The expert model as a :class:`~physnode.physics.SymbolicODE` with state ``(A1, A2, R, u)``.

    ``u`` is the infusion rate (an input: its equation is ``0``). Parameters named in ``learnable`` are positive
    learnable :class:`~physnode.physics.Param` objects started at ``initial`` (default: 1.5 times the population value,
    a deliberately wrong guess for fitting); the others are the known population values.
    """
    from ..physics import Param, SymbolicODE

    initial = initial or {}
    params: dict[str, Any] = {}
    for name in ("CL", "V1", "Q", "V2", "Emax", "EC50", "kout"):
        value = POPULATION[name][0]
        if name in learnable:
            params[name] = Param(initial.get(name, 1.5 * value), positive=True, units=POPULATION[name][1])
        else:
            params[name] = value
    rhs = [
        "u - (CL/V1)*A1 - (Q/V1)*A1 + (Q/V2)*A2",
        "(Q/V1)*A1 - (Q/V2)*A2",
        "kout*(1 - Emax*(A1/V1)/(EC50 + A1/V1)) - kout*R",
        "0",
    ]
    return SymbolicODE(rhs, ["A1", "A2", "R", "u"], params)


def _schedules(N: int, t1: float, gen: torch.Generator) -> list[list[list[float]]]:
    out = []
    for _ in range(N):
        rows = []
        t_load = float(torch.rand((), generator=gen, dtype=F64)) * 2.0
        dose = 20.0 + 40.0 * float(torch.rand((), generator=gen, dtype=F64))
        rows.append([t_load, t_load + 1.0 / 24.0, dose * 24.0])
        n_maint = int(torch.randint(1, 4, (), generator=gen))
        for _ in range(n_maint):
            start = 0.5 + float(torch.rand((), generator=gen, dtype=F64)) * min(9.5, max(t1 - 0.5, 0.0))
            length = 1.0 + 2.0 * float(torch.rand((), generator=gen, dtype=F64))
            rate = 20.0 + 40.0 * float(torch.rand((), generator=gen, dtype=F64))
            rows.append([start, start + length, rate])
        out.append(sorted(rows))
    return out


def pkpd(
    n_trajectories: int = 64,
    n_times: int = 24,
    t_span: tuple[float, float] = (0.0, 12.0),
    irregular: bool = True,
    noise: float = 0.05,
    missing: float = 0.2,
    observe: Sequence[str] | None = None,
    seed: int = 0,
    hidden_damping: float = 0.25,
) -> Trajectories:
    """Patients under random infusion schedules: biomarkers of a PK/PD system with a hidden inflammatory process.

    Each patient has its own clearance, central volume and EC50 (log-normal around the population values), its own
    initial disease activity and hidden state, and its own random infusions; the biomarkers ``score`` and ``marker``
    are observed at random times in ``(t0, t1]`` (``irregular``; else on a regular grid after ``t0``), with Gaussian
    ``noise`` and a fraction ``missing`` of entries dropped per channel. ``hidden_damping`` is the damping ratio
    ``zeta`` of the hidden process (default 0.25: it decays by ``e^{-zeta omega t}``, to a sixth of its initial
    amplitude in 6 days; 0.05 keeps it alive over the whole horizon). Float64, solved with dopri8 (rtol 1e-10)
    landing on every infusion start and end.
    """
    from ..latent.schedule import TreatmentSchedule
    from ..odeint import odeint

    t0, t1 = check_options(n_trajectories, n_times, t_span, noise, missing, seed, irregular=irregular, observe=observe)
    names = [n for n, _ in CHANNELS]
    observe = list(names if observe is None else observe)
    if not observe or any(c not in names for c in observe) or len(set(observe)) != len(observe):
        raise ValueError(f"observe must name distinct biomarker channels of pkpd ({', '.join(names)}); got {observe}.")
    if not (isinstance(hidden_damping, (int, float)) and 0 < hidden_damping < 10):
        raise ValueError(f"hidden_damping must be a damping ratio in (0, 10), got {hidden_damping!r}.")
    N = n_trajectories
    gen = torch.Generator().manual_seed(seed)
    pop = {k: v[0] for k, v in POPULATION.items()}
    pop["zeta"] = float(hidden_damping)
    params = {}
    for k, (value, _, cv, _) in POPULATION.items():
        z = torch.randn(N, generator=gen, dtype=F64) if cv else torch.zeros(N, dtype=F64)
        params[k] = (pop[k] if k == "zeta" else value) * torch.exp(cv * z)
    y0 = torch.zeros(N, len(STATES), dtype=F64)
    y0[:, 2] = 0.8 + 0.4 * torch.rand(N, generator=gen, dtype=F64)
    y0[:, 3:] = 0.3 * torch.randn(N, 2, generator=gen, dtype=F64)
    infusions = _schedules(N, t1, gen)
    # Observation times strictly after t0 (the initial state is at t0).
    if irregular:
        lo = max(2, n_times // 2)
        counts = torch.randint(lo, n_times + 1, (N,), generator=gen)
        u = t0 + (t1 - t0) * (1 - torch.rand(N, n_times, generator=gen, dtype=F64))  # in (t0, t1]
        times = torch.full((N, n_times), math.nan, dtype=F64)
        for i, c in enumerate(counts.tolist()):
            times[i, :c] = torch.sort(u[i, :c]).values
    else:
        grid = torch.linspace(t0, t1, n_times + 1, dtype=F64)[1:]
        times = grid.expand(N, -1).clone()
        counts = torch.full((N,), n_times, dtype=torch.int64)
    schedule = TreatmentSchedule.from_infusions(infusions).to_inputs(t0)
    # The solve starts at t0 and lands on every observation and every infusion start and end (inputs=).
    grid = solver_ready_times(torch.cat([torch.full((N, 1), t0, dtype=F64), times], dim=1), counts + 1)
    with torch.no_grad():
        ys = odeint(_TrueRHS(params), y0, grid, method=METHOD, rtol=RTOL, atol=ATOL, inputs=schedule)[:, 1:]
    R, M1, M2 = ys[..., 2], ys[..., 3], ys[..., 4]
    bio = {"score": R + M1, "marker": 0.5 * R + M2 / params["omega"].unsqueeze(-1)}
    values = torch.stack([bio[c] for c in observe], dim=-1)
    if noise > 0:
        values = values + noise * torch.randn(values.shape, generator=gen, dtype=F64)
    valid = (torch.arange(n_times).unsqueeze(0) < counts.unsqueeze(1)).unsqueeze(-1)
    mask = valid.expand_as(values).clone()
    if missing > 0:
        mask &= torch.rand(values.shape, generator=gen, dtype=F64) >= missing
    metadata = [
        {
            "initial_state": y0[i].tolist(),
            "initial_time": t0,
            "parameters": {k: float(v[i]) for k, v in params.items()},
            "infusions": infusions[i],
        }
        for i in range(N)
    ]
    attrs = {
        "dataset": "pkpd",
        "title": SPEC.title,
        "state_names": [n for n, _ in STATES],
        "state_units": [u for _, u in STATES],
        "parameters": pop,
        "options": {
            "n_trajectories": N,
            "n_times": n_times,
            "t_span": [t0, t1],
            "irregular": irregular,
            "noise": noise,
            "missing": missing,
            "observe": observe,
            "seed": seed,
            "hidden_damping": float(hidden_damping),
        },
        "solver": {"method": METHOD, "rtol": RTOL, "atol": ATOL, "dtype": "float64"},
        "inputs": {"channels": ["u"], "units": ["mg/day"], "metadata_key": "infusions"},
    }
    units = dict(CHANNELS)
    return Trajectories(
        times,
        values,
        mask,
        counts,
        channels=observe,
        units=[units[c] for c in observe],
        time_units="day",
        metadata=metadata,
        attrs=attrs,
        ids=[f"pkpd_{i:04d}" for i in range(N)],
    )
