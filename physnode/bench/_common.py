"""Shared pieces of the benchmarks: command-line options, timing, optional peer imports and tables."""

from __future__ import annotations

import argparse
import importlib
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from ..datasets._systems import ACA_MASSES, K1, K2, ThreeBody, three_body_y0

__all__ = [
    "ACA_MASSES",
    "K1",
    "K2",
    "Counted",
    "Table",
    "ThreeBody",
    "error_cell",
    "fmt_float",
    "fmt_seconds",
    "make_parser",
    "now",
    "optional_import",
    "rel_error",
    "resolve_device",
    "setup",
    "three_body_y0",
    "time_median",
]


#: Clocks for :func:`time_median`: wall time, or the CPU time of this process (all its threads).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}
_clock: list[Callable[[], float]] = [time.perf_counter]


def now() -> float:
    """The current reading of the clock chosen with ``--clock`` (seconds)."""
    return _clock[0]()


def make_parser(prog: str, description: str, repeats: int = 5) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares.

    Parameters
    ----------
    prog
        Program name shown in ``--help`` (e.g. ``"physnode bench solvers"``).
    description
        What the benchmark measures.
    repeats
        Default number of timed repeats (after one untimed warm-up run).
    """
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--repeats", type=int, default=repeats, help=f"timed repeats after a warm-up (default {repeats})")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu (default) or cuda (when available)")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (smoke test)")
    p.add_argument("--markdown", action="store_true", help="print markdown tables (for the docs)")
    p.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="wall",
        help="wall: time.perf_counter (default); cpu: time.process_time of this process, steadier on a shared "
        "machine (CPU only)",
    )
    return p


def resolve_device(name: str) -> torch.device:
    """The device asked for on the command line; a clear error when CUDA is asked for but absent."""
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name!r} asked for CUDA, but torch.cuda.is_available() is False; use --device cpu.")
    if dev.type not in ("cpu", "cuda"):
        raise SystemExit(f"--device must be cpu or cuda, got {name!r}.")
    return dev


def setup(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and validate ``--repeats`` and ``--device``; return the device."""
    if args.threads < 1:
        raise SystemExit(f"--threads must be >= 1, got {args.threads}.")
    if args.repeats < 1:
        raise SystemExit(f"--repeats must be >= 1, got {args.repeats}.")
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    clock = getattr(args, "clock", "wall")
    if clock == "cpu" and device.type != "cpu":
        raise SystemExit("--clock cpu measures host CPU time and cannot time CUDA work; use --clock wall.")
    _clock[0] = CLOCKS[clock]
    return device


def optional_import(name: str) -> ModuleType | None:
    """Import a peer library, or ``None`` when it is not installed (the benchmark prints "not installed")."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_median(fn: Callable[[], Any], repeats: int, device: torch.device, warmup: int = 1) -> tuple[float, Any]:
    """Median wall time of ``fn()`` over ``repeats`` calls after ``warmup`` untimed calls.

    Parameters
    ----------
    fn
        The work to time; its last return value is passed back.
    repeats
        Number of timed calls (on the ``--clock`` chosen, ``time.perf_counter`` by default, with
        ``torch.cuda.synchronize`` around each on CUDA).
    device
        Where the work runs.
    warmup
        Untimed calls before timing.

    Returns
    -------
    seconds, result
        Median seconds per call and the result of the last call.
    """
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(repeats):
        _sync(device)
        t0 = now()
        result = fn()
        _sync(device)
        times.append(now() - t0)
    return statistics.median(times), result


def rel_error(x: Tensor, ref: Tensor) -> float:
    """Relative error ``‖x − ref‖ / ‖ref‖`` (2-norm over all entries), computed in float64."""
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    den = float(ref.norm())
    return float((x - ref).norm()) / (den if den > 0 else 1.0)


def fmt_seconds(s: float | None) -> str:
    """Seconds as a short string with a unit (s, ms, µs)."""
    if s is None:
        return "-"
    if s >= 1.0:
        return f"{s:.3g} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def fmt_float(x: float | None, spec: str = ".2e") -> str:
    """A number formatted with ``spec``; ``-`` for ``None``."""
    return "-" if x is None else format(x, spec)


@dataclass
class Table:
    """Rows of strings under fixed columns, printed aligned for a terminal or as a markdown table.

    Attributes
    ----------
    title
        Printed above the table.
    columns
        Column headers.
    rows
        One dict per row, column name to cell; missing cells print as ``-``.
    notes
        Lines printed under the table (how things were measured, fairness remarks).
    """

    title: str
    columns: Sequence[str]
    rows: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, **cells: object) -> None:
        """Append a row; cells are given by column name (spaces in names written as ``_``)."""
        row = {}
        for k, v in cells.items():
            key = k if k in self.columns else k.replace("_", " ")
            if key not in self.columns:
                raise ValueError(f"unknown column {k!r}; columns are {list(self.columns)}.")
            row[key] = str(v)
        self.rows.append(row)

    def add_row(self, row: dict[str, object]) -> None:
        """Append a row given as a dict keyed by the column names."""
        bad = [k for k in row if k not in self.columns]
        if bad:
            raise ValueError(f"unknown columns {bad}; columns are {list(self.columns)}.")
        self.rows.append({k: str(v) for k, v in row.items()})

    def render(self, markdown: bool = False) -> str:
        """The table as text: aligned columns, or a GitHub markdown table when ``markdown``."""
        cols = list(self.columns)
        cells = [[r.get(c, "-") for c in cols] for r in self.rows]
        if markdown:
            clean = [[c.replace("|", "\\|") for c in row] for row in cells]
            lines = [f"### {self.title}", "", "| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
            lines += ["| " + " | ".join(row) + " |" for row in clean]
            if self.notes:
                lines.append("")
                lines += [f"- {n}" for n in self.notes]
            return "\n".join(lines)
        widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(cols)]
        sep = "  "
        lines = [self.title, "=" * len(self.title)]
        lines.append(sep.join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip())
        lines.append(sep.join("-" * w for w in widths))
        lines += [sep.join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
        lines += [f"  * {n}" for n in self.notes]
        return "\n".join(lines)


def error_cell(exc: BaseException, width: int = 70) -> str:
    """A one-line description of an exception for a table cell."""
    msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return msg if len(msg) <= width else msg[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------------------
# Test systems shared by the benchmarks (written here so that the benchmarks never import the tests).
# ---------------------------------------------------------------------------------------------------------


class Counted(torch.nn.Module):
    """Wraps a right-hand side ``f(t, y)`` and counts its (batched) calls in :attr:`n`.

    The same wrapper is put around the right-hand side of physnode and of every peer, so that the NFE columns
    count the same thing (forward evaluations of ``f``, forward and backward pass together).
    """

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.f = f
        self.n = 0

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        self.n += 1
        return self.f(t, y)
