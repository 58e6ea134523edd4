"""Forward-solve benchmark: ``physnode.odeint`` vs ``torchdiffeq.odeint`` and ``torchode``.

Problems, float64, ``rtol = 1e-6``, ``atol = 1e-8``, no gradient:

- ``three-body``: the ACA paper's three-body problem, one trajectory, 100 observations on [0, 1];
- ``van-der-pol``: Van der Pol oscillator (μ = 1), one trajectory, 100 observations on [0, 20];
- ``oscillators``: a batch of 256 damped oscillators with random stiffness and damping, each observed at its
  own 20 random sorted times in [0, 10]. physnode and torchode take the per-trajectory times directly;
  torchdiffeq has no per-trajectory times, so it gets its fairest option: one batched solve on the sorted
  union of all observation times, the states of each trajectory then picked from that grid.

Per row: median wall time, NFE (batched right-hand-side calls, counted by the same wrapper for every
library), solver steps (batched loop iterations, accepted plus rejected), time per step, relative error of
the states at the last observation time against a dopri8 reference at ``rtol = atol = 1e-12``, and the
physnode speed-up (peer time / physnode time, total and per step).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import physnode

from ._common import (
    Counted,
    Table,
    ThreeBody,
    error_cell,
    fmt_float,
    fmt_seconds,
    make_parser,
    optional_import,
    rel_error,
    setup,
    three_body_y0,
    time_median,
)

__all__ = ["run"]

RTOL, ATOL = 1e-6, 1e-8
REF_RTOL = REF_ATOL = 1e-12
METHODS = ("dopri5", "tsit5")
#: Methods torchdiffeq implements among ``METHODS`` (it has no tsit5).
TORCHDIFFEQ_METHODS = {"dopri5": "dopri5"}


class VanDerPol(nn.Module):
    """Van der Pol oscillator ``x' = v``, ``v' = μ (1 − x²) v − x``; state ``(..., 2)``."""

    def __init__(self, mu: float = 1.0) -> None:
        super().__init__()
        self.mu = mu

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, self.mu * (1 - x * x) * v - x], dim=-1)


class DampedOscillators(nn.Module):
    """A batch of damped oscillators ``x'' = −k_b x − c_b x'``, one ``(k_b, c_b)`` per trajectory; ``(B, 2)``."""

    def __init__(self, k: Tensor, c: Tensor) -> None:
        super().__init__()
        self.register_buffer("k", k)
        self.register_buffer("c", c)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        x, v = y[..., 0], y[..., 1]
        return torch.stack([v, -self.k * x - self.c * v], dim=-1)


@dataclass
class Case:
    """One problem: right-hand side, ``y0`` ``(D,)`` or ``(B, D)``, times ``(T,)`` or ``(B, T)``."""

    name: str
    func: nn.Module
    y0: Tensor
    t: Tensor
    ref_final: Tensor | None = None  # states at the last observation, (D,) or (B, D)


def make_cases(device: torch.device, quick: bool, batch: int, seed: int = 0) -> list[Case]:
    """The three problems (smaller with ``quick``)."""
    dt = torch.float64
    n_obs, tb_end = (10, 0.2) if quick else (100, 1.0)
    cases = [
        Case(
            "three-body",
            ThreeBody(learnable=False).to(device),
            three_body_y0(dt, device),
            torch.linspace(0, tb_end, n_obs, dtype=dt, device=device),
        ),
        Case(
            "van-der-pol",
            VanDerPol(1.0),
            torch.tensor([2.0, 0.0], dtype=dt, device=device),
            torch.linspace(0, 2 if quick else 20, n_obs, dtype=dt, device=device),
        ),
    ]
    g = torch.Generator().manual_seed(seed)
    B = batch
    n_t = 5 if quick else 20
    t_end = 2.0 if quick else 10.0
    k = 0.5 + 1.5 * torch.rand(B, generator=g, dtype=dt)
    c = 0.05 + 0.45 * torch.rand(B, generator=g, dtype=dt)
    y0 = torch.randn(B, 2, generator=g, dtype=dt)
    t = torch.rand(B, n_t - 1, generator=g, dtype=dt).sort(dim=1).values * t_end
    t = torch.cat([torch.zeros(B, 1, dtype=dt), t], dim=1)
    cases.append(
        Case(f"oscillators (B={B}, own times)", DampedOscillators(k, c).to(device), y0.to(device), t.to(device))
    )
    for case in cases:
        with torch.no_grad():
            ys = physnode.odeint(case.func, case.y0, case.t, method="dopri8", rtol=REF_RTOL, atol=REF_ATOL)
        case.ref_final = ys[..., -1, :]
    return cases


# Each runner returns ``(ys, steps)``: states at the observation times, shaped like physnode's output, and the
# number of batched solver steps (``None`` when the library does not report it).
Runner = Callable[[Case, Counted, str], tuple[Tensor, int | None]]


def _physnode(case: Case, f: Counted, method: str) -> tuple[Tensor, int | None]:
    sol = physnode.solve(f, case.y0, case.t, method=method, rtol=RTOL, atol=ATOL)
    return sol.ys, int((sol.stats.n_accepted + sol.stats.n_rejected).max())


def _torchdiffeq(case: Case, f: Counted, method: str) -> tuple[Tensor, int | None]:
    import torchdiffeq

    if case.t.ndim == 1:
        ys = torchdiffeq.odeint(f, case.y0, case.t, rtol=RTOL, atol=ATOL, method=TORCHDIFFEQ_METHODS[method])
        return ys, None
    # No per-trajectory times in torchdiffeq: solve the batch on the union grid, then pick each trajectory's.
    tu = torch.unique(case.t)  # sorted
    idx = torch.searchsorted(tu, case.t)  # (B, T)
    ys_u = torchdiffeq.odeint(f, case.y0, tu, rtol=RTOL, atol=ATOL, method=TORCHDIFFEQ_METHODS[method])  # (Tu, B, D)
    B = case.y0.shape[0]
    ys = ys_u[idx, torch.arange(B, device=idx.device).unsqueeze(1)]  # (B, T, D)
    return ys, None


def _torchode(case: Case, f: Counted, method: str) -> tuple[Tensor, int | None]:
    import torchode as to

    y0 = case.y0 if case.y0.ndim == 2 else case.y0.unsqueeze(0)
    t = case.t if case.t.ndim == 2 else case.t.unsqueeze(0)
    term = to.ODETerm(f)
    step = {"dopri5": to.Dopri5, "tsit5": to.Tsit5}[method](term=term)
    ctrl = to.IntegralController(atol=ATOL, rtol=RTOL, term=term)
    solver = to.AutoDiffAdjoint(step, ctrl)
    sol = solver.solve(to.InitialValueProblem(y0=y0, t_start=t[:, 0], t_end=t[:, -1], t_eval=t))
    if not bool((sol.status == 0).all()):
        raise RuntimeError(f"torchode failed with status {sol.status.tolist()}")
    ys = sol.ys if case.y0.ndim == 2 else sol.ys[0]
    return ys, int(sol.stats["n_steps"].max())


PEERS: dict[str, tuple[str, Runner, tuple[str, ...]]] = {
    # label: (module to import, runner, methods it implements)
    "physnode": ("physnode", _physnode, METHODS),
    "torchdiffeq": ("torchdiffeq", _torchdiffeq, tuple(TORCHDIFFEQ_METHODS)),
    "torchode": ("torchode", _torchode, ("dopri5", "tsit5")),
}

COLUMNS = ("problem", "method", "library", "time", "NFE", "steps", "time/step", "final err", "speed-up", "per step")


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench solvers", __doc__.splitlines()[0], repeats=5)
    p.add_argument("--batch", type=int, default=None, help="batch size of the oscillator problem (default 256)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated (default {','.join(METHODS)})")
    args = p.parse_args(argv)
    device = setup(args)
    repeats = 0 if args.quick else args.repeats  # quick: the first run itself is reported
    batch = args.batch or (8 if args.quick else 256)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"--methods: unknown {bad}; choose from {', '.join(METHODS)}.")

    timing = f"median of {repeats} after a warm-up" if repeats else "one run (--quick)"
    table = Table(
        f"Forward solve, float64, rtol={RTOL:g}, atol={ATOL:g}, device={device}, threads={args.threads}, "
        f"clock={args.clock}, {timing}",
        COLUMNS,
    )
    available = {name: optional_import(mod) is not None for name, (mod, _, _) in PEERS.items()}
    for case in make_cases(device, args.quick, batch):
        for method in methods:
            base: tuple[float, float | None] | None = None
            for lib, (_, runner, lib_methods) in PEERS.items():
                row: dict[str, object] = {"problem": case.name, "method": method, "library": lib}
                if not available[lib]:
                    table.add_row({**row, "time": "not installed"})
                    continue
                if method not in lib_methods:
                    table.add_row({**row, "time": f"no {method} in {lib}"})
                    continue
                f = Counted(case.func)
                try:
                    with torch.no_grad():
                        call = functools.partial(runner, case, f, method)
                        f.n = 0
                        secs, (ys, steps) = time_median(call, 1, device, warmup=0)  # warm-up (quick: the time)
                        nfe = f.n
                        if repeats:
                            secs, (ys, steps) = time_median(call, repeats, device, warmup=0)
                except Exception as exc:  # one failing library must not stop the table
                    table.add_row({**row, "time": error_cell(exc)})
                    continue
                per_step = secs / steps if steps else None
                row.update(
                    time=fmt_seconds(secs),
                    NFE=nfe,
                    steps="-" if steps is None else steps,
                    **{"time/step": fmt_seconds(per_step)},
                    **{"final err": fmt_float(rel_error(ys[..., -1, :], case.ref_final))},
                )
                if lib == "physnode":
                    base = (secs, per_step)
                elif base is not None:
                    row["speed-up"] = f"{secs / base[0]:.2f}×"
                    if per_step is not None and base[1] is not None:
                        row["per step"] = f"{per_step / base[1]:.2f}×"
                table.add_row(row)
    table.notes += [
        "NFE: batched right-hand-side calls, counted by the same wrapper for every library; steps: batched "
        "solver iterations (accepted + rejected); torchdiffeq reports no step count.",
        f"final err: relative 2-norm error of the states at the last observation vs dopri8 at rtol=atol={REF_RTOL:g}.",
        "speed-up: peer time / physnode time (>1: physnode faster); 'per step': the same per solver step.",
        "oscillators: torchdiffeq has no per-trajectory times, so it solves the batch once on the sorted union "
        "of all observation times (its fairest option) and each trajectory's states are picked from that grid.",
        "torchode: AutoDiffAdjoint + IntegralController, eager mode (not JIT-compiled), same tolerances.",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
