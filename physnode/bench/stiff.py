"""Stiff-problem benchmark: physnode's ESDIRK (Kværnø 3/4/5) and Rosenbrock (Rodas4) methods vs scipy's Radau/BDF/LSODA.

Problems (Hairer & Wanner, *Solving ODEs II*, and the IVP test set of Mazzia et al.), float64, one
trajectory, tolerances ``rtol = 1e-6`` with a per-problem ``atol``:

- ``robertson``: chemical kinetics, three species, rates spanning 1e-2 .. 3e7, on [0, 1e5];
- ``van-der-pol``: ``x'' = μ (1 - x²) x' - x`` with ``μ = 1000``, ``y0 = (2, 0)``, on [0, 3000] (about two
  relaxation periods of length ≈ 1614);
- ``hires``: eight-species plant-physiology model on [0, 321.8122];
- ``orego``: the Oregonator (Belousov–Zhabotinsky reaction) on [0, 360].

Per row: wall time (median of ``--repeats``, after a warm-up), NFE, Jacobian evaluations, LU
factorisations, steps (accepted + rejected) and the relative 2-norm error at the final time against scipy
Radau at ``rtol = 1e-10``, ``atol = 1e-12`` (scaled as in the IVP test set: the error of each component is
divided by ``max(|y_ref|, atol / rtol)``, so that components far below ``atol`` do not dominate).

Counting: physnode's NFE counts every batched call of the right-hand side, one per Jacobian included (its
Jacobians are reverse-mode autodiff: one evaluation plus a vectorised backward pass). scipy's ``nfev``
does not count the calls of its finite-difference Jacobians, so scipy gets the exact Jacobian instead
(through torch autodiff of the same right-hand side; its cost is in scipy's time, a few calls per run) and
its ``njev``/``nlu`` are reported as scipy counts them. scipy's right-hand sides are the same formulas in
NumPy (no torch overhead per call).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

import physnode

from ._common import Table, error_cell, fmt_float, fmt_seconds, make_parser, optional_import, setup, time_median

__all__ = ["PROBLEMS", "StiffProblem", "run"]

RTOL = 1e-6
REF_RTOL, REF_ATOL = 1e-10, 1e-12
METHODS = ("kvaerno3", "kvaerno4", "kvaerno5", "rodas4")
SCIPY_METHODS = ("Radau", "BDF", "LSODA")


def _robertson(t: Tensor, y: Tensor) -> Tensor:
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    a, b = 0.04 * y1 - 1e4 * y2 * y3, 3e7 * y2 * y2
    return torch.stack([-a, a - b, b], dim=-1)


def _robertson_np(t: float, y: np.ndarray) -> np.ndarray:
    a, b = 0.04 * y[0] - 1e4 * y[1] * y[2], 3e7 * y[1] ** 2
    return np.array([-a, a - b, b])


MU = 1000.0


def _vdp(t: Tensor, y: Tensor) -> Tensor:
    x, v = y[..., 0], y[..., 1]
    return torch.stack([v, MU * (1 - x * x) * v - x], dim=-1)


def _vdp_np(t: float, y: np.ndarray) -> np.ndarray:
    return np.array([y[1], MU * (1 - y[0] ** 2) * y[1] - y[0]])


def _torch_rhs(terms: Callable[..., list[Any]]) -> Callable[[Tensor, Tensor], Tensor]:
    """Batched torch right-hand side ``f(t, y (B, D)) -> (B, D)`` of ``terms(y_1, ..., y_D) -> [dy_i/dt]``."""

    def func(t: Tensor, y: Tensor) -> Tensor:
        return torch.stack(terms(*y.unbind(-1)), dim=-1)

    return func


def _numpy_rhs(terms: Callable[..., list[Any]]) -> Callable[[float, np.ndarray], np.ndarray]:
    """NumPy right-hand side ``f(t, y (D,)) -> (D,)`` of the same ``terms`` (for scipy)."""

    def func(t: float, y: np.ndarray) -> np.ndarray:
        return np.array(terms(*y))

    return func


def _hires(y1: Any, y2: Any, y3: Any, y4: Any, y5: Any, y6: Any, y7: Any, y8: Any) -> list[Any]:
    r = 280.0 * y6 * y8
    return [
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        r - 1.81 * y7,
        -r + 1.81 * y7,
    ]


def _orego(y1: Any, y2: Any, y3: Any) -> list[Any]:
    return [77.27 * (y2 + y1 * (1 - 8.375e-6 * y1 - y2)), (y3 - (1 + y1) * y2) / 77.27, 0.161 * (y1 - y3)]


@dataclass(frozen=True)
class StiffProblem:
    """A stiff test problem: the same right-hand side in torch (batched) and NumPy (for scipy).

    Attributes
    ----------
    name
        Table label.
    func
        Batched torch right-hand side ``f(t (B,), y (B, D)) -> (B, D)``.
    func_np
        ``f(t: float, y: (D,)) -> (D,)`` for ``scipy.integrate.solve_ivp``.
    y0
        Initial state, ``(D,)``.
    t_end
        End of the interval (start 0).
    atol
        Absolute tolerance suited to the problem's smallest relevant components.
    quick_t_end
        Shorter interval for ``--quick``.
    """

    name: str
    func: Callable[[Tensor, Tensor], Tensor]
    func_np: Callable[[float, np.ndarray], np.ndarray]
    y0: tuple[float, ...]
    t_end: float
    atol: float
    quick_t_end: float

    def y0_tensor(self, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> Tensor:
        """``y0`` as a ``(D,)`` tensor."""
        return torch.tensor(self.y0, dtype=dtype, device=device)

    def jac_np(self, t: float, y: np.ndarray) -> np.ndarray:
        """Exact Jacobian ``(D, D)`` by torch autodiff of :attr:`func` (for scipy)."""
        yt = torch.as_tensor(y, dtype=torch.float64)
        return torch.func.jacrev(lambda x: self.func(torch.tensor(t, dtype=torch.float64), x))(yt).numpy()

    def reference(self, t_end: float) -> np.ndarray:
        """State at ``t_end`` from scipy Radau at ``rtol = 1e-10``, ``atol = 1e-12`` with the exact Jacobian."""
        return _reference(self.name, t_end)


PROBLEMS: dict[str, StiffProblem] = {
    p.name: p
    for p in (
        StiffProblem("robertson", _robertson, _robertson_np, (1.0, 0.0, 0.0), 1e5, 1e-10, 40.0),
        StiffProblem("van-der-pol", _vdp, _vdp_np, (2.0, 0.0), 3000.0, 1e-6, 1000.0),
        StiffProblem(
            "hires",
            _torch_rhs(_hires),
            _numpy_rhs(_hires),
            (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057),
            321.8122,
            1e-8,
            5.0,
        ),
        StiffProblem("orego", _torch_rhs(_orego), _numpy_rhs(_orego), (1.0, 2.0, 3.0), 360.0, 1e-6, 30.0),
    )
}


@functools.cache
def _reference(name: str, t_end: float) -> np.ndarray:
    from scipy.integrate import solve_ivp

    p = PROBLEMS[name]
    sol = solve_ivp(p.func_np, (0.0, t_end), np.array(p.y0), method="Radau", rtol=REF_RTOL, atol=REF_ATOL, jac=p.jac_np)
    if not sol.success:
        raise RuntimeError(f"scipy Radau reference failed on {name}: {sol.message}")
    return sol.y[:, -1]


def scaled_error(y: np.ndarray, ref: np.ndarray, rtol: float, atol: float) -> float:
    """Relative 2-norm error with each component divided by ``max(|ref|, atol / rtol)``."""
    scale = np.maximum(np.abs(ref), atol / rtol)
    return float(np.linalg.norm((y - ref) / scale) / np.sqrt(ref.size))


def solve_physnode(
    p: StiffProblem, method: str, t_end: float, rtol: float = RTOL, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, dict[str, int]]:
    """Solve ``p`` on ``[0, t_end]`` with a physnode ESDIRK method (Newton tolerances ``0.01 ×`` the solve's) or
    Rosenbrock method (no Newton iteration).

    Returns the final state ``(D,)`` and the counts ``nfe``, ``njev``, ``nlu``, ``steps``.
    """
    solver = physnode.solvers.SOLVERS.build(method)
    solver.set_tolerances(rtol, p.atol)  # Newton tolerances NEWTON_KAPPA = 0.01 times the solve's
    t = torch.tensor([0.0, t_end], dtype=torch.float64, device=device)
    with torch.no_grad():
        sol = physnode.solve(p.func, p.y0_tensor(device=device), t, method=solver, rtol=rtol, atol=p.atol)
    counts = {
        "nfe": int(sol.stats.nfe),
        "njev": int(sol.stats.njev),
        "nlu": int(sol.stats.nlu),
        "steps": int((sol.stats.n_accepted + sol.stats.n_rejected).sum()),
    }
    return sol.ys[-1].cpu().numpy(), counts


def solve_scipy(p: StiffProblem, method: str, t_end: float, rtol: float = RTOL) -> tuple[np.ndarray, dict[str, int]]:
    """Solve ``p`` with ``scipy.integrate.solve_ivp(method=...)`` and the exact Jacobian."""
    from scipy.integrate import solve_ivp

    sol = solve_ivp(p.func_np, (0.0, t_end), np.array(p.y0), method=method, rtol=rtol, atol=p.atol, jac=p.jac_np)
    if not sol.success:
        raise RuntimeError(f"scipy {method} failed: {sol.message}")
    steps = len(sol.t) - 1
    return sol.y[:, -1], {"nfe": int(sol.nfev), "njev": int(sol.njev), "nlu": int(sol.nlu), "steps": steps}


COLUMNS = ("problem", "library", "method", "time", "NFE", "Jacobians", "LU", "steps", "error")


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench stiff", __doc__.splitlines()[0], repeats=3)
    p.add_argument("--problems", default=",".join(PROBLEMS), help=f"comma-separated (default {','.join(PROBLEMS)})")
    args = p.parse_args(argv)
    device = setup(args)
    names = [n.strip() for n in args.problems.split(",") if n.strip()]
    bad = [n for n in names if n not in PROBLEMS]
    if bad:
        raise SystemExit(f"--problems: unknown {bad}; choose from {', '.join(PROBLEMS)}.")
    repeats = 0 if args.quick else args.repeats
    timing = f"median of {repeats} after a warm-up" if repeats else "one run (--quick)"
    table = Table(
        f"Stiff problems, float64, rtol={RTOL:g}, device={device}, threads={args.threads}, clock={args.clock}, "
        f"{timing}{', shortened intervals (--quick)' if args.quick else ''}",
        COLUMNS,
    )
    have_scipy = optional_import("scipy.integrate") is not None
    for name in names:
        prob = PROBLEMS[name]
        t_end = prob.quick_t_end if args.quick else prob.t_end
        ref = prob.reference(t_end) if have_scipy else None
        runs: list[tuple[str, str, Callable[[], tuple[np.ndarray, dict[str, int]]]]] = [
            ("physnode", m, functools.partial(solve_physnode, prob, m, t_end, RTOL, device)) for m in METHODS
        ]
        runs += [("scipy", m, functools.partial(solve_scipy, prob, m, t_end, RTOL)) for m in SCIPY_METHODS]
        for lib, method, call in runs:
            row: dict[str, object] = {"problem": f"{name} [0, {t_end:g}]", "library": lib, "method": method}
            if lib == "scipy" and not have_scipy:
                table.add_row({**row, "time": "not installed"})
                continue
            try:
                secs, (y, c) = time_median(call, max(repeats, 1), device, warmup=1 if repeats else 0)
            except Exception as exc:  # one failing solver must not stop the table
                table.add_row({**row, "time": error_cell(exc)})
                continue
            err = None if ref is None else scaled_error(y, ref, RTOL, prob.atol)
            row.update(time=fmt_seconds(secs), NFE=c["nfe"], Jacobians=c["njev"], LU=c["nlu"], steps=c["steps"])
            row["error"] = fmt_float(err)
            table.add_row(row)
    table.notes += [
        "NFE: right-hand-side calls; physnode's include one call per autodiff Jacobian, scipy's exclude nothing "
        "(it is given the exact Jacobian, so it makes no finite-difference calls).",
        "Jacobians / LU: Jacobian evaluations and LU factorisations (physnode: batched calls, batch of one here).",
        f"error: scaled RMS error at the final time vs scipy Radau at rtol={REF_RTOL:g}, atol={REF_ATOL:g} "
        "(component i divided by max(|y_ref,i|, atol/rtol)).",
        "physnode's Newton tolerances (kvaerno*) are 0.01 x the solve's rtol/atol; scipy uses its own defaults. "
        "rodas4 (Rosenbrock) has no Newton iteration: one Jacobian, one LU and 6 evaluations per step.",
        "Time includes physnode's per-step Python and torch overhead, large against these tiny right-hand sides; "
        "scipy calls NumPy right-hand sides.",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
