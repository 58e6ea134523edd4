"""Observation benchmark: many observation times, served by landing steps on them or by interpolation.

The three-body problem of the ACA paper (masses learnable), ``T`` observations on ``[0, 1]`` (default
``T = 100, 1000, 10000``), float64, ``rtol = atol = 1e-7``, one thread. Per ``T`` and library: median time of the
forward solve and of one gradient (forward + backward of the sum of squares of the observed positions), NFE of the
forward solve and of the gradient, relative error of the observed states and of the gradient with respect to the
masses against physnode dopri5 at ``rtol = atol = 1e-12``.

Rows: physnode ``outputs="land"`` (a step ends on every observation) and ``outputs="interpolate"`` (steps follow
the tolerance; observations from the continuous extension), both ``grad="direct"``, and ``outputs="interpolate"``
with ``options={"step_grad": True}`` (the step sizes and the interpolation fractions differentiated), also with
``"integral_controller": True`` (torchode's controller factor), and "torchode's configuration": the latter with
``"error_estimate": "torchdiffeq"`` (dopri5's embedded solution of torchdiffeq and torchode, so the steps are
torchode's); torchode
(``Dopri5``, ``IntegralController``, ``AutoDiffAdjoint``: interpolates its outputs) and torchdiffeq (``dopri5``,
backprop: interpolates too). The ratio columns are the row's time over torchode's at the same ``T`` (< 1: faster).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

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

__all__ = ["COLUMNS", "run"]

REF_TOL = 1e-12
COLUMNS = (
    "T",
    "library",
    "outputs",
    "forward",
    "gradient",
    "NFE fwd",
    "NFE grad",
    "err ys",
    "err grad",
    "fwd / torchode",
    "grad / torchode",
)


@dataclass
class Setup:
    """The problem: initial state ``(18,)``, observation times ``(T,)`` and the tolerance."""

    y0: Tensor
    t: Tensor
    tol: float


#: A runner solves with the given right-hand side (a ``Counted`` three-body system) and returns ``(T, 18)``.
Runner = Callable[[Counted, Tensor, Setup], Tensor]


def _physnode(
    outputs: str,
    tol: float | None = None,
    step_grad: bool = False,
    integral: bool = False,
    estimate: str = "dormand_prince",
) -> Runner:
    options = {"step_grad": step_grad, "integral_controller": integral, "error_estimate": estimate}

    def runner(f: Counted, y0: Tensor, s: Setup) -> Tensor:
        rtol = s.tol if tol is None else tol
        return physnode.odeint(
            f, y0, s.t, method="dopri5", grad="direct", rtol=rtol, atol=rtol, outputs=outputs, options=options
        )

    return runner


def _torchode(f: Counted, y0: Tensor, s: Setup) -> Tensor:
    import torchode as to

    term = to.ODETerm(f)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=s.tol, rtol=s.tol, term=term))
    t = s.t.unsqueeze(0)
    problem = to.InitialValueProblem(y0=y0.unsqueeze(0), t_start=t[:, 0], t_end=t[:, -1], t_eval=t)
    sol = solver.solve(problem)
    if not bool((sol.status == 0).all()):
        raise RuntimeError(f"torchode failed with status {sol.status.tolist()}")
    return sol.ys[0]


def _torchdiffeq(f: Counted, y0: Tensor, s: Setup) -> Tensor:
    import torchdiffeq

    return torchdiffeq.odeint(f, y0, s.t, rtol=s.tol, atol=s.tol, method="dopri5")


#: (library to import, outputs label, runner); physnode first, torchode before the ratios are needed.
ROWS: tuple[tuple[str, str, Runner], ...] = (
    ("torchode", "interpolate (Dopri5)", _torchode),
    ("physnode", "land", _physnode("land")),
    ("physnode", "interpolate", _physnode("interpolate")),
    ("physnode", "interpolate+step_grad", _physnode("interpolate", step_grad=True)),
    ("physnode", "interpolate+step_grad+integral", _physnode("interpolate", step_grad=True, integral=True)),
    (
        "physnode",
        "torchode's configuration",
        _physnode("interpolate", step_grad=True, integral=True, estimate="torchdiffeq"),
    ),
    ("torchdiffeq", "interpolate (dopri5)", _torchdiffeq),
)


def _loss(ys: Tensor) -> Tensor:
    return ys[..., :9].square().sum()


def _forward(runner: Runner, s: Setup, device: torch.device) -> tuple[int, Tensor]:
    f = Counted(ThreeBody(dtype=s.y0.dtype, learnable=False).to(device))
    with torch.no_grad():
        ys = runner(f, s.y0, s)
    return f.n, ys


def _gradient(runner: Runner, s: Setup, device: torch.device) -> tuple[int, Tensor]:
    system = ThreeBody(dtype=s.y0.dtype).to(device)
    f = Counted(system)
    (g,) = torch.autograd.grad(_loss(runner(f, s.y0, s)), (system.masses,))
    return f.n, g


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench observations", __doc__.splitlines()[0], repeats=3)
    p.add_argument("--tol", type=float, default=None, help="rtol = atol of every solve (default 1e-7)")
    p.add_argument("--counts", default=None, help="comma-separated numbers of observations (default 100,1000,10000)")
    p.add_argument(
        "--skip",
        default="",
        help="comma-separated rows to skip: land, interpolate, interpolate+step_grad, interpolate+step_grad+integral, "
        "torchode's configuration, torchode, torchdiffeq",
    )
    args = p.parse_args(argv)
    device = setup(args)
    repeats = 1 if args.quick else args.repeats
    warmup = 0 if args.quick else 1
    ref_tol = 1e-10 if args.quick else REF_TOL
    dtype = torch.float64
    tol = args.tol if args.tol is not None else (1e-5 if args.quick else 1e-7)
    default_counts = "10,100" if args.quick else "100,1000,10000"
    try:
        counts = [int(x) for x in (args.counts or default_counts).split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"--counts must be comma-separated integers, got {args.counts!r}.") from None
    if not counts or min(counts) < 2:
        raise SystemExit(f"--counts needs numbers of observations >= 2, got {args.counts!r}.")
    t_end = 0.2 if args.quick else 1.0
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}
    y0 = three_body_y0(dtype, device)

    table = Table(
        f"Three-body problem, T observations on [0, {t_end:g}], float64, rtol=atol={tol:g}, device={device}, "
        f"threads={args.threads}, clock={args.clock}",
        COLUMNS,
    )
    for T in counts:
        s = Setup(y0, torch.linspace(0.0, t_end, T, dtype=dtype, device=device), tol)
        ref = Setup(y0, s.t, ref_tol)
        _, ref_ys = _forward(_physnode("interpolate"), ref, device)
        _, ref_g = _gradient(_physnode("interpolate"), ref, device)
        peer: dict[str, float] = {}
        for library, label, runner in ROWS:
            if library in skip or (library == "physnode" and label in skip):
                continue
            row: dict[str, object] = {"T": T, "library": library, "outputs": label}
            if optional_import(library) is None:
                table.add_row({**row, "forward": "not installed"})
                continue
            try:
                t_fwd, (nfe_fwd, ys) = time_median(partial(_forward, runner, s, device), repeats, device, warmup)
                t_grad, (nfe_grad, g) = time_median(partial(_gradient, runner, s, device), repeats, device, warmup)
            except Exception as exc:  # a failing row prints its error instead of stopping the table
                table.add_row({**row, "forward": error_cell(exc)})
                continue
            if library == "torchode":
                peer = {"fwd": t_fwd, "grad": t_grad}
            row.update(
                {
                    "forward": fmt_seconds(t_fwd),
                    "gradient": fmt_seconds(t_grad),
                    "NFE fwd": nfe_fwd,
                    "NFE grad": nfe_grad,
                    "err ys": fmt_float(rel_error(ys, ref_ys)),
                    "err grad": fmt_float(rel_error(g, ref_g)),
                }
            )
            if peer:
                row["fwd / torchode"] = f"{t_fwd / peer['fwd']:.2f}"
                row["grad / torchode"] = f"{t_grad / peer['grad']:.2f}"
            table.add_row(row)
    table.notes += [
        f"reference: physnode dopri5, outputs='interpolate', grad='direct', rtol=atol={ref_tol:g} (its interpolation "
        "error is at that tolerance's level); err ys: relative 2-norm error of all observed states; err grad: of the "
        "gradient of the loss (sum of squared positions) w.r.t. the masses.",
        f"forward / gradient: median of {repeats} run(s) after {warmup} warm-up(s); forward under torch.no_grad(); "
        "NFE: calls "
        "of the right-hand side (forward and backward together for the gradient; vector-Jacobian products inside "
        "backprop are not calls).",
        "ratios: this row's time / torchode's at the same T (< 1: faster than torchode).",
        "torchode differentiates through its step-size controller; physnode holds the steps constant by default "
        "(the gradient is that of the same discrete solve, dh/dθ = 0), which is why its gradient error is larger at "
        "equal tolerance; the interpolate+step_grad row differentiates the steps and the interpolation fractions.",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
