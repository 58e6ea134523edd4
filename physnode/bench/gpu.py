"""GPU benchmark: a large batch of three-body trajectories, each with its own times, physnode vs torchode.

The three-body problem of the ACA paper (Zhuang et al. 2020) with ``--batch`` trajectories (10,000 by default):
each starts from the paper's initial state perturbed by ``N(0, 0.01²)`` and has ``--n-obs`` observation times
on its own interval ``[0, L_i]``, ``L_i`` uniform in ``[0.8, 1]`` (so every trajectory takes its own steps).
Rows: the forward solve (no graph) and the gradient of ``mean_i Σ_t |r_i(t)|²`` with respect to the masses and
the initial states, by physnode's ``direct``, ``aca`` and ``mali`` and by torchode's ``AutoDiffAdjoint`` (backprop,
the same method as ``direct``) on the same device, at the same tolerances.

On CUDA the ``host syncs / step`` column counts the synchronising CUDA calls of one solve
(``torch.cuda.set_sync_debug_mode("warn")``) per loop iteration; physnode's loop is designed to synchronise once
per step (the error norms go to the host), never once per stage. The benchmark runs on CPU too (``--device cpu``,
the default when no GPU is present), which is what the tests run with ``--quick``.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

import physnode

from ._common import (
    ACA_MASSES,
    Table,
    ThreeBody,
    error_cell,
    fmt_seconds,
    make_parser,
    now,
    optional_import,
    rel_error,
    setup,
    three_body_y0,
    time_median,
)
from .gradients import MATCHED_TOL

__all__ = ["run"]

COLUMNS = ("library", "task", "time", "µs / trajectory", "NFE", "max steps", "host syncs / step", "speed-up")


@dataclass
class Batch:
    """The problem: initial states ``(B, 18)``, per-trajectory observation times ``(B, T)``, tolerance."""

    y0: Tensor
    t: Tensor
    tol: float


def make_batch(
    batch: int, n_obs: int, tol: float, dtype: torch.dtype, device: torch.device, span: float = 1.0, seed: int = 0
) -> Batch:
    """``batch`` perturbed three-body initial states and their own observation grids on ``[0, span · L_i]``
    (seeded, reproducible)."""
    if batch < 1 or n_obs < 2:
        raise SystemExit(f"--batch must be >= 1 and --n-obs >= 2, got {batch} and {n_obs}.")
    gen = torch.Generator().manual_seed(seed)
    y0 = three_body_y0(torch.float64) + 0.01 * torch.randn(batch, 18, generator=gen, dtype=torch.float64)
    ends = 0.8 + 0.2 * torch.rand(batch, 1, generator=gen, dtype=torch.float64)
    t = torch.linspace(0.0, span, n_obs, dtype=torch.float64) * ends
    return Batch(y0.to(device=device, dtype=dtype), t.to(device=device, dtype=dtype), tol)


def _model(dtype: torch.dtype, device: torch.device) -> ThreeBody:
    return ThreeBody(ACA_MASSES, dtype=dtype, learnable=True).to(device)


def _loss(ys: Tensor) -> Tensor:
    """``mean_i Σ_t |r_i(t)|²`` over the positions (the first nine state components)."""
    return ys[..., :9].square().sum() / ys.shape[0]


# A task runs one solve (and backward when it is a gradient) and returns (nfe, max steps, gradients or None).
Task = Callable[[Batch], tuple[int, int, tuple[Tensor, Tensor] | None]]


def _physnode_task(grad: str | None, tol: float | None = None) -> Task:
    """physnode's forward solve (``grad=None``) or gradient by ``grad``; ``tol`` overrides the batch's."""

    def task(b: Batch) -> tuple[int, int, tuple[Tensor, Tensor] | None]:
        if tol is not None:
            b = Batch(b.y0, b.t, tol)
        f = _model(b.y0.dtype, b.y0.device)
        if grad is None:
            with torch.no_grad():
                sol = physnode.solve(f, b.y0, b.t, rtol=b.tol, atol=b.tol)
            return sol.stats.nfe, int((sol.stats.n_accepted + sol.stats.n_rejected).max()), None
        method = physnode.GRADIENTS.cls(grad).requires_method or "dopri5"
        y0 = b.y0.clone().requires_grad_(True)
        sol = physnode.solve(f, y0, b.t, method=method, grad=grad, rtol=b.tol, atol=b.tol)
        _loss(sol.ys).backward()
        assert f.masses.grad is not None and y0.grad is not None
        steps = int((sol.stats.n_accepted + sol.stats.n_rejected).max())
        return sol.stats.nfe, steps, (f.masses.grad, y0.grad)

    return task


def _torchode_task(grad: bool) -> Task:
    def task(b: Batch) -> tuple[int, int, tuple[Tensor, Tensor] | None]:
        import torchode as to

        f = _model(b.y0.dtype, b.y0.device)
        term = to.ODETerm(f)
        ctrl = to.IntegralController(atol=b.tol, rtol=b.tol, term=term)
        solver = to.AutoDiffAdjoint(to.Dopri5(term=term), ctrl)
        y0 = b.y0.clone().requires_grad_(grad)
        problem = to.InitialValueProblem(y0=y0, t_start=b.t[:, 0], t_end=b.t[:, -1], t_eval=b.t)
        with torch.set_grad_enabled(grad):
            sol = solver.solve(problem)
        if not bool((sol.status == 0).all()):
            raise RuntimeError(f"torchode failed for {int((sol.status != 0).sum())} trajectories")
        nfe = int(sol.stats["n_f_evals"].max())
        steps = int(sol.stats["n_steps"].max())
        if not grad:
            return nfe, steps, None
        _loss(sol.ys).backward()
        assert f.masses.grad is not None and y0.grad is not None
        return nfe, steps, (f.masses.grad, y0.grad)

    return task


def count_syncs(fn: Callable[[], object], device: torch.device) -> int | None:
    """Synchronising CUDA calls made by ``fn()`` (``None`` off CUDA), from ``torch.cuda.set_sync_debug_mode``."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchronizing" in str(w.message) for w in caught)


def run(argv: list[str] | None = None) -> int:
    """Run the GPU benchmark; print the table. Returns 0."""
    p = make_parser(
        "physnode bench gpu",
        "A batch of three-body trajectories with their own times on one device: forward and gradients, "
        "physnode vs torchode.",
        repeats=3,
    )
    p.add_argument("--batch", type=int, default=None, help="trajectories (default 10000; 16 with --quick)")
    p.add_argument("--n-obs", type=int, default=100, help="observations per trajectory (default 100)")
    p.add_argument("--tol", type=float, default=None, help="rtol = atol (default 1e-7; 1e-5 with --quick)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="default float64")
    p.add_argument("--skip", default="", help="comma-separated rows to skip: direct, aca, mali, forward, torchode")
    if argv is None or "--device" not in " ".join(argv):
        p.set_defaults(device="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    device = setup(args)
    batch = args.batch if args.batch is not None else (16 if args.quick else 10_000)
    n_obs = 5 if args.quick else args.n_obs
    dtype = getattr(torch, args.dtype)
    repeats = 0 if args.quick else args.repeats
    tol = args.tol if args.tol is not None else (1e-5 if args.quick else 1e-7)
    # MALI's solver is second order: compared at the looser tolerance where its gradient error matches the
    # peers' at 1e-7 (as in `physnode bench gradients`).
    mali_tol = max(tol, MATCHED_TOL["mali"])
    span = 0.1 if args.quick else 1.0
    b = make_batch(batch, n_obs, tol, dtype, device, span)
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = Table(
        f"{batch} three-body trajectories with their own times ({n_obs} observations each on [0, {span:g} L_i], "
        "L_i in [0.8, 1]), "
        f"{args.dtype}, rtol=atol={tol:g}, device={device} ({name}), threads={args.threads}",
        COLUMNS,
    )
    rows: list[tuple[str, str, Task | None, str]] = [
        ("physnode", "forward (dopri5)", _physnode_task(None), "forward"),
        ("physnode", "gradient, grad='direct' (dopri5)", _physnode_task("direct"), "direct"),
        ("physnode", "gradient, grad='aca' (dopri5)", _physnode_task("aca"), "aca"),
        (
            "physnode",
            f"gradient, grad='mali' (alf, rtol=atol={mali_tol:g})",
            _physnode_task("mali", mali_tol),
            "mali",
        ),
    ]
    installed = optional_import("torchode") is not None
    rows += [
        ("torchode", "forward (Dopri5)", _torchode_task(False) if installed else None, "torchode"),
        ("torchode", "gradient, AutoDiffAdjoint (Dopri5)", _torchode_task(True) if installed else None, "torchode"),
    ]
    times: dict[str, float] = {}
    grads: dict[str, tuple[Tensor, Tensor]] = {}
    for library, label, task, key in rows:
        if key in skip:
            continue
        row: dict[str, object] = {"library": library, "task": label}
        if task is None:
            table.add_row({**row, "time": "not installed"})
            continue
        try:
            if repeats == 0:  # --quick: the first (warm-up) run is the time
                t0 = now()
                nfe, steps, g = task(b)
                secs = now() - t0
            else:
                secs, (nfe, steps, g) = time_median(partial(task, b), repeats, device)
            syncs = count_syncs(partial(task, b), device)
        except Exception as exc:  # a failing row prints its error instead of stopping the table
            table.add_row({**row, "time": error_cell(exc)})
            continue
        kind = "forward" if g is None else "gradient"
        row.update(
            time=fmt_seconds(secs) + (" (warm-up)" if repeats == 0 else ""),
            NFE=nfe,
            **{"µs / trajectory": f"{secs / batch * 1e6:.3g}", "max steps": steps},
        )
        if syncs is not None:
            row["host syncs / step"] = f"{syncs / max(steps, 1):.2f}"
        if library == "torchode":
            ours = times.get("physnode " + kind + (" direct" if g is not None else ""))
            if ours is not None:
                row["speed-up"] = f"{secs / ours:.2f}×"
        else:
            times["physnode " + kind + (f" {key}" if g is not None else "")] = secs
            if g is not None:
                grads[key] = g
        table.add_row(row)
        print(f"done: {library} {label}: {row['time']}", file=sys.stderr, flush=True)  # progress of a long run
    if "direct" in grads:
        ref_m, ref_y0 = grads["direct"]
        for key in ("aca",):
            if key in grads:
                err = max(rel_error(grads[key][0], ref_m), rel_error(grads[key][1], ref_y0))
                table.notes.append(f"grad='{key}' equals grad='direct' on the same solve to {err:.1e} (relative).")
    table.notes += [
        "time: median over the timed runs after a warm-up ('(warm-up)': --quick, the first run is the time).",
        "speed-up: torchode time / physnode time of the same task (forward, or backprop 'direct'); >1: physnode "
        "faster.",
        "NFE: physnode counts batched evaluations of the forward solve; torchode's n_f_evals is per trajectory "
        "(the largest is shown). max steps: the most steps of any trajectory.",
        "host syncs / step: synchronising CUDA calls in one solve per loop iteration (CUDA only).",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
