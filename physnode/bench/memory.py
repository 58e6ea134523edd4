"""Memory benchmark: peak memory of one gradient vs the number of steps, per gradient method.

An MLP right-hand side (``dim`` → ``hidden`` → ``dim``, tanh; batch of ``batch`` states, float32 by default)
is integrated over [0, 1] with ``N`` fixed steps, and the gradient of the sum of squares of the final state
with respect to the MLP's parameters and ``y0`` is taken. Each point runs in a fresh Python process
(``python -m physnode.bench.memory --point METHOD N ...``) so that allocator caches of one point do not hide
the next. On CPU the peak is the resident-set high-water mark during forward + backward minus the resident
set just before (the mark is reset through ``/proc/self/clear_refs`` where Linux allows it, else
``resource.getrusage``'s ``ru_maxrss`` is used); on CUDA it is ``torch.cuda.max_memory_allocated`` minus the
memory allocated before.

Fixed-step solver per method: its ``requires_method`` in fixed-step mode (``options={"adaptive": False}``
when the solver takes that option), otherwise rk4.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys

import torch
from torch import nn

import physnode

from ._common import Table, make_parser, setup

__all__ = ["run"]

MIB = 2**20
DEFAULT_STEPS = (100, 1000, 10_000)
QUICK_STEPS = (10, 50)


def _solver_for(grad: str) -> tuple[str, dict[str, object]]:
    """Fixed-step solver name and solver options for the gradient method ``grad``."""
    method = physnode.GRADIENTS.cls(grad).requires_method or "rk4"
    opts: dict[str, object] = {}
    if "adaptive" in physnode.SOLVERS.accepted_options(method):
        opts["adaptive"] = False
    return method, opts


# ---------------------------------------------------------------------------------------------------------
# One point, in its own process.
# ---------------------------------------------------------------------------------------------------------


def _rss_now() -> int:
    """Current resident set in bytes (``/proc/self/statm``; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _reset_hwm() -> bool:
    """Reset the kernel's resident-set high-water mark (Linux ≥ 4.0); ``False`` where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _hwm() -> int:
    """Resident-set high-water mark in bytes (``VmHWM``; falls back to ``ru_maxrss``)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def measure_point(
    grad: str, n_steps: int, dim: int, hidden: int, batch: int, dtype: torch.dtype, device: torch.device
) -> dict[str, object]:
    """Peak memory (bytes) of one forward + backward with ``n_steps`` fixed steps, in this process."""
    torch.manual_seed(0)
    method, opts = _solver_for(grad)
    func = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim)).to(device, dtype)

    class RHS(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = func

        def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.net(y)

    f = RHS()
    y0 = (0.5 * torch.randn(batch, dim, device=device, dtype=dtype)).requires_grad_(True)
    t = torch.tensor([0.0, 1.0], device=device, dtype=dtype)

    def grad_once(n: int) -> int:
        ys = physnode.odeint(f, y0, t, method=method, grad=grad, step_size=1.0 / n, max_steps=n + 10, options=opts)
        loss = ys[:, -1].square().sum()
        grads = torch.autograd.grad(loss, [y0, *f.parameters()])
        return len(grads)

    grad_once(2)  # warm-up: kernels, autograd engine, allocator
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        grad_once(n_steps)
        torch.cuda.synchronize(device)
        peak = torch.cuda.max_memory_allocated(device)
        how = "cuda.max_memory_allocated"
    else:
        reset = _reset_hwm()
        before = _rss_now() if reset else _hwm()
        grad_once(n_steps)
        peak = _hwm()
        how = "VmHWM" if reset else "ru_maxrss"
    return {"grad": grad, "method": method, "n_steps": n_steps, "bytes": max(peak - before, 0), "how": how}


def _point_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m physnode.bench.memory --point")
    p.add_argument("--point", nargs=2, metavar=("GRAD", "N"), required=True)
    p.add_argument("--dim", type=int, required=True)
    p.add_argument("--hidden", type=int, required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--dtype", choices=("float32", "float64"), required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    try:
        res = measure_point(
            a.point[0], int(a.point[1]), a.dim, a.hidden, a.batch, getattr(torch, a.dtype), torch.device(a.device)
        )
    except Exception as exc:  # reported in the table row
        res = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(res))
    return 0


# ---------------------------------------------------------------------------------------------------------
# The table.
# ---------------------------------------------------------------------------------------------------------


def _run_point(args: argparse.Namespace, grad: str, n: int, timeout: float) -> dict[str, object]:
    cmd = [sys.executable, "-m", "physnode.bench.memory", "--point", grad, str(n)]
    cmd += ["--dim", str(args.dim), "--hidden", str(args.hidden), "--batch", str(args.batch)]
    cmd += ["--dtype", args.dtype, "--device", args.device, "--threads", str(args.threads)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench memory", __doc__.splitlines()[0], repeats=1)
    p.add_argument(
        "--steps",
        default=None,
        help=f"comma-separated step counts (default {','.join(map(str, DEFAULT_STEPS))}; --quick: "
        f"{','.join(map(str, QUICK_STEPS))})",
    )
    p.add_argument("--dim", type=int, default=64, help="state dimension (default 64)")
    p.add_argument("--hidden", type=int, default=256, help="hidden width of the MLP (default 256)")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--methods", default=None, help="comma-separated gradient methods (default: all registered)")
    p.add_argument(
        "--mem-limit",
        type=float,
        default=2048.0,
        help="skip a point whose peak, extrapolated from the previous two, would exceed this many MiB (2048)",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per point (default 600)")
    args = p.parse_args(argv)
    device = setup(args)
    if args.quick:
        args.dim, args.hidden, args.batch = min(args.dim, 8), min(args.hidden, 16), min(args.batch, 4)
    steps = (
        [int(s) for s in args.steps.split(",")] if args.steps else list(QUICK_STEPS if args.quick else DEFAULT_STEPS)
    )
    if any(s < 1 for s in steps):
        raise SystemExit(f"--steps must be positive integers, got {args.steps!r}.")
    steps = sorted(set(steps))
    grads = physnode.GRADIENTS.names()
    if args.methods:
        want = [m.strip() for m in args.methods.split(",") if m.strip()]
        unknown = [m for m in want if m not in grads]
        if unknown:
            raise SystemExit(f"--methods: {unknown} not registered; registered: {', '.join(grads)}.")
        grads = want

    cols = ["grad", "solver", *[f"N={n} (MiB)" for n in steps], "MiB / 1000 steps"]
    table = Table(
        f"Peak memory of one gradient, MLP {args.dim}-{args.hidden}-{args.dim}, batch {args.batch}, {args.dtype}, "
        f"device={device}",
        cols,
    )
    how = set()
    for grad in grads:
        try:
            method, _ = _solver_for(grad)
            row: dict[str, object] = {"grad": grad, "solver": method}
        except Exception as exc:
            table.add_row({"grad": grad, "solver": f"{type(exc).__name__}: {exc}"})
            continue
        done: list[tuple[int, float]] = []
        for n in steps:
            col = f"N={n} (MiB)"
            if len(done) >= 2:
                (n1, m1), (n2, m2) = done[-2], done[-1]
                predicted = m2 + (m2 - m1) / (n2 - n1) * (n - n2)
                if predicted > args.mem_limit:
                    row[col] = f"skipped (~{predicted:.0f} predicted)"
                    continue
            res = _run_point(args, grad, n, args.timeout)
            if "error" in res:
                row[col] = str(res["error"])[:60]
                continue
            mib = float(res["bytes"]) / MIB
            how.add(str(res["how"]))
            done.append((n, mib))
            row[col] = f"{mib:.1f}"
        if len(done) >= 2:
            (n1, m1), (n2, m2) = done[0], done[-1]
            row["MiB / 1000 steps"] = f"{(m2 - m1) / (n2 - n1) * 1000:.2f}"
        table.add_row(row)
    table.notes += [
        "peak: memory of forward + backward above what was in use just before "
        f"(measured with {', '.join(sorted(how)) or '-'}; one fresh process per point).",
        "MiB / 1000 steps: growth between the smallest and the largest measured N.",
        f"one state is {args.batch * args.dim * (4 if args.dtype == 'float32' else 8) / MIB * 1000:.1f} MiB per "
        "1000 steps.",
    ]
    print(table.render(args.markdown), flush=True)
    return 0


if __name__ == "__main__":
    if "--point" in sys.argv[1:]:
        raise SystemExit(_point_main(sys.argv[1:]))
    raise SystemExit(run(sys.argv[1:]))
