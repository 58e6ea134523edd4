"""Gradient benchmark: every physnode gradient method and the peers' same methods.

The three-body problem of the ACA paper (Zhuang et al. 2020): masses (1.1, 1.1, 0.9) learnable, 100
observations on [0, 1], float64, ``rtol = atol = 1e-7``, one thread. Loss = sum of squares of all observed
positions. Per row: median time of one forward + backward, NFE (calls of the right-hand side in the forward
and backward passes together, counted by the same wrapper for every library), relative error of the gradient
with respect to the masses and to ``y0`` against physnode dopri5 ``grad="direct"`` at ``rtol = atol = 1e-12``.

physnode rows: every method registered in :data:`physnode.GRADIENTS`, with its ``requires_method`` (or
dopri5). Peer rows say which physnode method they implement and the physnode speed-up (peer time / physnode
time of that method).
"""

from __future__ import annotations

import argparse
import itertools
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

import physnode

from ._common import (
    ACA_MASSES,
    Counted,
    Table,
    ThreeBody,
    error_cell,
    fmt_float,
    fmt_seconds,
    make_parser,
    now,
    optional_import,
    rel_error,
    setup,
    three_body_y0,
    time_median,
)

__all__ = ["run"]

REF_TOL = 1e-12
#: Fixed steps per observation interval of the fixed-step methods (reversible Heun): dt = 1 / (99 · 40) ≈ 2.5e-4
#: gives a gradient error of about 1e-3 with torchsde's reversible Heun (backprop), the level of torchdiffeq's
#: dopri5 backprop at rtol = atol = 1e-7 reported in the ACA paper; matching physnode dopri5's 1e-4 would need
#: about 130 substeps, too slow for the torchsde rows. The step divides the observation spacing exactly, as
#: torchsde's adjoint requires.
DEFAULT_SUBSTEPS = 40
#: physnode methods run with the fixed step ``dt`` (like their torchsde peers) rather than adaptively.
FIXED_STEP = frozenset({"reversible_heun"})
#: A first run longer than this (seconds) caps the timing at one more run; longer than SLOW_ONE, at none.
SLOW, SLOW_ONE = 2.0, 20.0


@dataclass
class Setup:
    """The problem: initial state ``(18,)``, observation times ``(T,)``, tolerances and fixed step."""

    y0: Tensor
    t: Tensor
    tol: float
    dt: float
    masses: tuple[float, float, float] = ACA_MASSES


# A runner solves with a fresh ThreeBody wrapped in ``Counted`` and ``y0`` requiring grad, and returns the
# observed states ``(T, 18)``; :func:`_measure` does the loss and the backward pass.
Runner = Callable[[Counted, Tensor, Setup], Tensor]


#: Looser tolerances at which a physnode method's gradient error is still at or below its peer's at 1e-7
#: (MALI: about 1e-3 at rtol 1e-5 against TorchDiffEqPack's 2.2e-3 at 1e-7).
MATCHED_TOL = {"mali": 1e-5}


def _loss(ys: Tensor) -> Tensor:
    return ys[..., :9].square().sum()


def _physnode_runner(
    grad: str,
    default_method: str = "dopri5",
    step_grad: bool = False,
    adaptive: bool = False,
    interpolate: bool = False,
    integral: bool = False,
    estimate: str | None = None,
) -> Runner:
    cls = physnode.GRADIENTS.cls(grad)
    method = cls.requires_method or default_method
    fixed = grad in FIXED_STEP and not adaptive

    def runner(f: Counted, y0: Tensor, s: Setup) -> Tensor:
        kw: dict[str, object] = {}
        if fixed or not physnode.SOLVERS.build(method).adaptive:
            kw["step_size"] = s.dt
            if "adaptive" in physnode.SOLVERS.accepted_options(method):
                kw["options"] = {"adaptive": False}
        elif step_grad or integral or estimate:
            kw["options"] = {"step_grad": step_grad, "integral_controller": integral}
            if estimate:
                kw["options"]["error_estimate"] = estimate  # type: ignore[index]
        if interpolate:
            kw["outputs"] = "interpolate"
        return physnode.odeint(f, y0, s.t, method=method, grad=grad, rtol=s.tol, atol=s.tol, **kw)

    label = (
        method
        + (" (fixed dt)" if fixed else " (adaptive)" if adaptive else "")
        + (", step_grad" if step_grad else "")
        + (", interpolate" if interpolate else "")
        + (", integral controller" if integral else "")
        + (f", {estimate} estimate" if estimate else "")
    )
    runner.method = label  # type: ignore[attr-defined]
    return runner


#: The methods shown with and without differentiating through the step-size controller (options step_grad).
STEP_GRAD = ("direct", "aca")
#: torchode's configuration (:func:`_physnode_runner` keywords): the steps on the graph (the first one too),
#: observations interpolated, the integral controller and dopri5 with torchode's error estimate. physnode then makes
#: torchode's steps and its gradient equals torchode's to round-off (tests/test_gradients_stepsize.py).
TORCHODE_CONFIG: dict[str, object] = {
    "step_grad": True,
    "interpolate": True,
    "integral": True,
    "estimate": "torchdiffeq",
}
#: Tolerances of ``--sweep`` (gradient error against tolerance, with and without step_grad, and the peers).
SWEEP_TOLS = (1e-5, 1e-6, 1e-7, 1e-8, 1e-9)
SWEEP_COLUMNS = ("rtol=atol", "library", "method", "time", "NFE", "err masses", "err y0")


def _sweep(args: argparse.Namespace, s: Setup, device: torch.device, ref_m: Tensor, ref_y0: Tensor) -> Table:
    """Gradient error against tolerance: physnode direct/aca with and without step_grad, torchode, torchdiffeq."""
    repeats = 0 if args.quick else args.repeats
    rows: list[tuple[str, str, Runner]] = []
    for grad in STEP_GRAD:
        for sg in (False, True):
            runner = _physnode_runner(grad, args.method, step_grad=sg)
            rows.append(("physnode", f"grad={grad!r}, {runner.method}", runner))  # type: ignore[attr-defined]
        # torchode's configuration: steps follow the tolerance, observations interpolated, integral controller.
        runner = _physnode_runner(grad, args.method, step_grad=True, interpolate=True, integral=True)
        rows.append(("physnode", f"grad={grad!r}, {runner.method}", runner))  # type: ignore[attr-defined]
        if args.method == "dopri5":  # ... and its error estimate: torchode's steps
            runner = _physnode_runner(grad, args.method, **TORCHODE_CONFIG)  # type: ignore[arg-type]
            rows.append(("physnode", f"grad={grad!r}, {runner.method}", runner))  # type: ignore[attr-defined]
    for library, label, runner in (
        ("torchode", "AutoDiffAdjoint (backprop), Dopri5", _torchode),
        ("torchdiffeq", "odeint (backprop), dopri5", _torchdiffeq_backprop),
    ):
        if optional_import(library) is not None:
            rows.append((library, label, runner))
    tols = SWEEP_TOLS[:2] if args.quick else SWEEP_TOLS
    table = Table(
        f"Gradient error against tolerance, three-body loss, float64, {len(s.t)} observations on [0, "
        f"{float(s.t[-1]):g}], device={device}, threads={args.threads}, clock={args.clock}",
        SWEEP_COLUMNS,
    )
    for tol in tols:
        setup_ = Setup(s.y0, s.t, tol, s.dt)
        for library, label, runner in rows:
            row: dict[str, object] = {"rtol=atol": f"{tol:g}", "library": library, "method": label}
            try:
                t0 = now()
                nfe, _, g_m, g_y0 = _measure(runner, setup_, device)
                first = now() - t0
                secs, _ = time_capped(lambda r=runner, u=setup_: _measure(r, u, device), first, repeats, device)
            except Exception as exc:
                table.add_row({**row, "time": error_cell(exc)})
                continue
            row.update(time=fmt_seconds(secs), NFE=nfe)
            row.update({"err masses": fmt_float(rel_error(g_m, ref_m)), "err y0": fmt_float(rel_error(g_y0, ref_y0))})
            table.add_row(row)
    table.notes += [
        f"reference gradient: physnode dopri5, grad='direct', rtol=atol={REF_TOL:g}; errors are relative 2-norms.",
        "step_grad: options={'step_grad': True}, the step sizes on the graph (dh/dθ through the PI controller, the "
        "last step of each interval the remainder); without it each interval is divided into equal steps that are "
        "constants of the parameters (ACA's convention). torchode differentiates through its controller and "
        "serves the observations by interpolation; torchdiffeq holds its steps constant. 'interpolate, integral "
        "controller': outputs='interpolate' and options={'step_grad': True, 'integral_controller': True}, the "
        "configuration of torchode's row (its controller's factor, steps that do not land on observations); "
        "'torchdiffeq estimate': dopri5 with options={'error_estimate': 'torchdiffeq'}, the embedded solution of "
        "torchdiffeq and torchode (2/3 of Dormand & Prince's error weights): with it physnode makes torchode's "
        "steps and its gradient equals torchode's to round-off.",
        f"time: median of forward + backward over {repeats} run(s) after a warm-up (one run when slow).",
    ]
    return table


def _torchdiffeq_backprop(f: Counted, y0: Tensor, s: Setup) -> Tensor:
    import torchdiffeq

    return torchdiffeq.odeint(f, y0, s.t, rtol=s.tol, atol=s.tol, method="dopri5")


def _torchdiffeq_adjoint(f: Counted, y0: Tensor, s: Setup) -> Tensor:
    import torchdiffeq

    return torchdiffeq.odeint_adjoint(f, y0, s.t, rtol=s.tol, atol=s.tol, method="dopri5")


def _tdep_chain(solve: Callable, method: str) -> Runner:
    """TorchDiffEqPack's adjoint solvers return only the state at ``t1``: chain one solve per interval."""

    def runner(f: Counted, y0: Tensor, s: Setup) -> Tensor:
        ts = s.t.tolist()
        ys, y = [y0], y0
        for t0, t1 in itertools.pairwise(ts):
            opts = {"method": method, "h": None, "t0": t0, "t1": t1, "rtol": s.tol, "atol": s.tol}
            opts["print_neval"] = False
            opts["neval_max"] = 500_000
            y = solve(f, y, options=opts)
            ys.append(y)
        return torch.stack(ys)

    return runner


def _tdep_aca(f: Counted, y0: Tensor, s: Setup) -> Tensor:
    from TorchDiffEqPack import odesolve_adjoint

    return _tdep_chain(odesolve_adjoint, "dopri5")(f, y0, s)


def _tdep_mali(f: Counted, y0: Tensor, s: Setup) -> Tensor:
    from TorchDiffEqPack import odesolve_adjoint_sym12

    return _tdep_chain(odesolve_adjoint_sym12, "sym12async")(f, y0, s)


class _ZeroNoiseSDE(torch.nn.Module):
    """``dy = f(t, y) dt + 0 ∘ dW`` (Stratonovich, diagonal noise) for torchsde."""

    noise_type = "diagonal"
    sde_type = "stratonovich"

    def __init__(self, f: Counted) -> None:
        super().__init__()
        self.func = f

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self.func(t, y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return torch.zeros_like(y)


def _torchsde_rh(adjoint: bool) -> Runner:
    def runner(f: Counted, y0: Tensor, s: Setup) -> Tensor:
        import torchsde

        sde = _ZeroNoiseSDE(f)
        if adjoint:
            ys = torchsde.sdeint_adjoint(
                sde, y0.unsqueeze(0), s.t, method="reversible_heun", adjoint_method="adjoint_reversible_heun", dt=s.dt
            )
        else:
            ys = torchsde.sdeint(sde, y0.unsqueeze(0), s.t, method="reversible_heun", dt=s.dt)
        return ys[:, 0]

    return runner


def _torchode(f: Counted, y0: Tensor, s: Setup) -> Tensor:
    import torchode as to

    term = to.ODETerm(f)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=s.tol, rtol=s.tol, term=term))
    t = s.t.unsqueeze(0)
    sol = solver.solve(to.InitialValueProblem(y0=y0.unsqueeze(0), t_start=t[:, 0], t_end=t[:, -1], t_eval=t))
    if not bool((sol.status == 0).all()):
        raise RuntimeError(f"torchode failed with status {sol.status.tolist()}")
    return sol.ys[0]


#: Peer rows: (library (module to import), call, physnode method it compares to, runner).
PEERS: tuple[tuple[str, str, str, Runner], ...] = (
    ("torchdiffeq", "odeint (backprop), dopri5", "direct", _torchdiffeq_backprop),
    ("torchode", "AutoDiffAdjoint (backprop), Dopri5", "direct", _torchode),
    ("torchdiffeq", "odeint_adjoint, dopri5", "adjoint", _torchdiffeq_adjoint),
    ("TorchDiffEqPack", "odesolve_adjoint (ACA), dopri5", "aca", _tdep_aca),
    ("TorchDiffEqPack", "odesolve_adjoint_sym12 (MALI), sym12async", "mali", _tdep_mali),
    ("torchsde", "sdeint_adjoint, reversible_heun, g = 0", "reversible_heun", _torchsde_rh(adjoint=True)),
    ("torchsde", "sdeint (backprop), reversible_heun, g = 0", "reversible_heun", _torchsde_rh(adjoint=False)),
)

COLUMNS = ("library", "method", "compares to", "time", "NFE", "err masses", "err y0", "speed-up")


def _measure(runner: Runner, s: Setup, device: torch.device) -> tuple[int, Tensor, Tensor, Tensor]:
    """One forward + backward: NFE, loss, gradient w.r.t. the masses ``(3,)`` and ``y0`` ``(18,)``."""
    f = Counted(ThreeBody(s.masses, dtype=s.y0.dtype).to(device))
    y0 = s.y0.clone().requires_grad_(True)
    loss = _loss(runner(f, y0, s))
    g_m, g_y0 = torch.autograd.grad(loss, (f.f.masses, y0))
    return f.n, loss.detach(), g_m, g_y0


#: Methods shown with compiled steps by ``--compile``.
COMPILED = ("direct", "aca", "adjoint")


def _measure_compiled(
    grad: str, s: Setup, device: torch.device, repeats: int
) -> tuple[float, float, int, Tensor, Tensor]:
    """``grad`` with ``options={'compile': True}``: (compile-run seconds, median seconds of the later runs, number
    of timed runs, gradient w.r.t. the masses, w.r.t. ``y0``). No :class:`Counted` wrapper: a counter that changes
    on every call would force a recompilation per call."""

    def once() -> tuple[Tensor, Tensor]:
        f = ThreeBody(s.masses, dtype=s.y0.dtype).to(device)
        y0 = s.y0.clone().requires_grad_(True)
        ys = physnode.odeint(f, y0, s.t, grad=grad, rtol=s.tol, atol=s.tol, options={"compile": True})
        g_m, g_y0 = torch.autograd.grad(_loss(ys), (f.masses, y0))
        return g_m, g_y0

    t0 = now()
    once()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    compile_s = now() - t0
    if repeats == 0:
        t0 = now()
        g_m, g_y0 = once()
        return compile_s, now() - t0, 0, g_m, g_y0
    secs, (g_m, g_y0) = time_median(once, repeats, device, warmup=0)
    return compile_s, secs, repeats, g_m, g_y0


def time_capped(fn: Callable[[], object], first: float, repeats: int, device: torch.device) -> tuple[float, int]:
    """Median time of ``fn`` with fewer repeats for slow ones: returns (seconds, number of timed runs).

    ``first`` is the duration of a first (warm-up) run already made. When it is over :data:`SLOW` seconds
    only one more run is timed; over :data:`SLOW_ONE` seconds, or with ``repeats = 0``, the first run is
    reported.
    """
    if first > SLOW_ONE or repeats == 0:
        return first, 0
    n = 1 if first > SLOW else repeats
    secs, _ = time_median(fn, n, device, warmup=0)
    return secs, n


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench gradients", __doc__.splitlines()[0], repeats=5)
    p.add_argument("--tol", type=float, default=None, help="rtol = atol of the adaptive solves (default 1e-7)")
    p.add_argument(
        "--substeps",
        type=int,
        default=None,
        help=f"fixed steps per observation interval of the fixed-step methods (default {DEFAULT_SUBSTEPS})",
    )
    p.add_argument(
        "--method",
        default="dopri5",
        help="solver of the physnode methods that take any solver (default dopri5; e.g. dopri8, tsit5)",
    )
    p.add_argument("--skip", default="", help="comma-separated rows to skip: physnode method names or peer libraries")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="only the gradient error against rtol = atol = 1e-5..1e-9: direct and aca with and without "
        "options={'step_grad': True}, torchode, torchdiffeq",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="also direct, aca and adjoint with options={'compile': True} (compiled steps); compile time reported "
        "apart",
    )
    args = p.parse_args(argv)
    device = setup(args)
    repeats = 0 if args.quick else args.repeats  # quick: the first run itself is reported
    dtype = torch.float64
    n_obs, t_end = (10, 0.2) if args.quick else (100, 1.0)
    tol = args.tol if args.tol is not None else (1e-5 if args.quick else 1e-7)
    substeps = args.substeps if args.substeps is not None else (2 if args.quick else DEFAULT_SUBSTEPS)
    if substeps < 1:
        raise SystemExit(f"--substeps must be >= 1, got {substeps}.")
    dt = t_end / (n_obs - 1) / substeps
    s = Setup(three_body_y0(dtype, device), torch.linspace(0, t_end, n_obs, dtype=dtype, device=device), tol, dt)
    skip = {x.strip() for x in args.skip.split(",") if x.strip()}

    ref_setup = Setup(s.y0, s.t, REF_TOL, dt)
    _, _, ref_m, ref_y0 = _measure(_physnode_runner("direct"), ref_setup, device)
    if args.sweep:
        print(_sweep(args, s, device, ref_m, ref_y0).render(args.markdown), flush=True)
        return 0

    table = Table(
        f"Gradient of the three-body loss, float64, rtol=atol={tol:g}, fixed dt={dt:.3g}, {n_obs} observations on "
        f"[0, {t_end:g}], device={device}, threads={args.threads}, clock={args.clock}",
        COLUMNS,
    )
    physnode_time: dict[str, float] = {}

    peer_time: dict[str, float] = {}

    def add(
        library: str,
        label: str,
        compares: str,
        runner: Runner | None,
        speedup_vs: str | None,
        setup_: Setup | None = None,
        primary: bool = True,
    ) -> None:
        setup_ = s if setup_ is None else setup_
        row: dict[str, object] = {"library": library, "method": label, "compares to": compares}
        if runner is None:
            table.add_row({**row, "time": "not installed"})
            return
        try:
            t0 = now()
            nfe, _, g_m, g_y0 = _measure(runner, setup_, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            first = now() - t0
            secs, n_timed = time_capped(lambda: _measure(runner, setup_, device), first, repeats, device)
        except Exception as exc:  # a failing method prints its error instead of stopping the table
            table.add_row({**row, "time": error_cell(exc)})
            return
        row.update(
            time=fmt_seconds(secs) + ("" if n_timed == repeats else " (1 run)" if n_timed else " (warm-up)"),
            NFE=nfe,
            **{"err masses": fmt_float(rel_error(g_m, ref_m)), "err y0": fmt_float(rel_error(g_y0, ref_y0))},
        )
        if setup_ is not s:  # a physnode row at its own tolerance: compared with the peer's row at the default
            if compares in peer_time:
                row["speed-up"] = f"{peer_time[compares] / secs:.2f}×"
        elif speedup_vs is None:
            if primary:
                physnode_time[compares] = secs
        else:
            peer_time.setdefault(compares, secs)
            if speedup_vs in physnode_time:
                row["speed-up"] = f"{secs / physnode_time[speedup_vs]:.2f}×"
        table.add_row(row)

    for grad in physnode.GRADIENTS.names():
        if grad in skip:
            continue
        try:
            runner = _physnode_runner(grad, args.method)
            label = f"grad={grad!r}, {runner.method}"  # type: ignore[attr-defined]
        except Exception as exc:
            table.add_row({"library": "physnode", "method": f"grad={grad!r}", "time": error_cell(exc)})
            continue
        add("physnode", label, grad, runner, None)
        if grad in STEP_GRAD:  # the same method differentiating through the step-size controller
            runner = _physnode_runner(grad, args.method, step_grad=True)
            add("physnode", f"grad={grad!r}, {runner.method}", grad, runner, None, primary=False)  # type: ignore[attr-defined]
            if args.method == "dopri5":  # ... in torchode's configuration
                runner = _physnode_runner(grad, args.method, **TORCHODE_CONFIG)  # type: ignore[arg-type]
                add("physnode", f"grad={grad!r}, {runner.method}", grad, runner, None, primary=False)  # type: ignore[attr-defined]
        if grad in FIXED_STEP:  # ... and with adaptive steps at the common tolerance
            runner = _physnode_runner(grad, args.method, adaptive=True)
            add("physnode", f"grad={grad!r}, {runner.method}", grad, runner, None, primary=False)  # type: ignore[attr-defined]
    for library, label, compares, runner in PEERS:
        if library in skip:
            continue
        installed = optional_import(library) is not None
        add(library, label, compares, runner if installed else None, compares)

    # Methods whose error at the common tolerance is far below the peer's: also at a looser tolerance whose error
    # is still at or below the peer's, the comparison "at equal or better gradient error".
    if not args.quick:
        for grad, loose in MATCHED_TOL.items():
            if grad in skip or grad not in physnode.GRADIENTS:
                continue
            runner = _physnode_runner(grad)
            add(
                "physnode",
                f"grad={grad!r}, {runner.method}, rtol=atol={loose:g}",  # type: ignore[attr-defined]
                grad,
                runner,
                None,
                Setup(s.y0, s.t, loose, dt),
            )

    if args.compile:
        for grad in COMPILED:
            if grad in skip:
                continue
            row: dict[str, object] = {"library": "physnode", "method": f"grad={grad!r}, dopri5, compiled"}
            row["compares to"] = grad
            try:
                compile_s, secs, n_timed, g_m, g_y0 = _measure_compiled(grad, s, device, repeats)
            except Exception as exc:  # a failing row prints its error instead of stopping the table
                table.add_row({**row, "time": error_cell(exc)})
                continue
            row.update(
                time=fmt_seconds(secs) + ("" if n_timed else " (1 run)") + f", compile {fmt_seconds(compile_s)}",
                NFE="as above",
                **{"err masses": fmt_float(rel_error(g_m, ref_m)), "err y0": fmt_float(rel_error(g_y0, ref_y0))},
            )
            if grad in peer_time:
                row["speed-up"] = f"{peer_time[grad] / secs:.2f}×"
            table.add_row(row)
        table.notes.append(
            "compiled: options={'compile': True} (each dopri5 step one torch.compile-d function; for the adjoint "
            "also each step of its backward solve, vector-Jacobian products included); time without the first run, "
            "which compiles ('compile' = its duration); "
            "the same steps as the eager row (NFE as above), counted without the Counted wrapper, whose counter "
            "would force a recompilation per call; speed-up: the peer's time / this row's."
        )

    table.notes += [
        f"reference gradient: physnode dopri5, grad='direct', rtol=atol={REF_TOL:g}; errors are relative 2-norms "
        "of the gradient w.r.t. the masses and w.r.t. y0.",
        f"time: median of forward + backward over {repeats} run(s) after a warm-up; '(1 run)': a warm-up over "
        f"{SLOW:g} s, then timed once; '(warm-up)': the warm-up took over {SLOW_ONE:g} s and is the time.",
        "step_grad: options={'step_grad': True} (the step sizes on the graph through the PI controller, the first "
        "one too; the last step of each interval the remainder); 'interpolate, integral controller, torchdiffeq "
        "estimate': torchode's configuration (outputs='interpolate', options={'step_grad': True, "
        "'integral_controller': True, 'error_estimate': 'torchdiffeq'}): torchode's steps and, to round-off, its "
        "gradient.",
        "NFE: calls of the right-hand side, forward and backward together (vector-Jacobian products inside "
        "backprop are not calls).",
        "speed-up: peer time / physnode time of the method it compares to (>1: physnode faster); on the rows with "
        "their own rtol (at the end), the peer's time at the common tolerance / this row's time.",
        "TorchDiffEqPack's adjoint solvers return only the final state: they are chained, one solve per "
        "observation interval (initial step chosen automatically in each); they also keep times in float32.",
        f"torchsde: zero diffusion, Stratonovich; fixed dt={dt:.3g} ({substeps} steps per observation interval; "
        "also physnode's fixed-step methods), chosen so that torchsde's backprop gradient error is about 1e-3, "
        "the level of torchdiffeq's dopri5 backprop at rtol=atol=1e-7 in the ACA paper.",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
