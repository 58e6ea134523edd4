"""``physnode data ...``: list, generate and inspect trajectory datasets.

``main(argv)`` takes the arguments after ``data``: ``list``, ``make NAME OUT.nc [options]``, ``show FILE``.
It raises on error; :func:`physnode.cli.main` prints one line on stderr (exit code 2 for bad arguments, 1 when
the file cannot be made or read).
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["main"]


#: Largest ``--n-trajectories x --n-times`` that ``physnode data make`` generates.
MAX_MAKE_SIZE = 10**7


def _count(s: str) -> int:
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _parser() -> argparse.ArgumentParser:
    from ._cli import ArgumentParser

    p = ArgumentParser(prog="physnode data", description="Trajectory datasets: list, make, show.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    sub.add_parser("list", help="list the datasets of the zoo")
    mk = sub.add_parser("make", help="generate a dataset and save it (.nc or .h5)")
    mk.add_argument("name")
    mk.add_argument("out", type=Path)
    mk.add_argument("--n-trajectories", type=_count, default=None)
    mk.add_argument("--n-times", type=_count, default=None)
    mk.add_argument("--irregular", action="store_true", help="random observation times per trajectory")
    mk.add_argument("--noise", type=float, default=None, help="observation noise standard deviation")
    mk.add_argument("--missing", type=float, default=None, help="rate of missing channel values")
    mk.add_argument("--observe", default=None, help="comma-separated observed state components")
    mk.add_argument("--seed", type=int, default=None)
    mk.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    sh = sub.add_parser("show", help="summarise a trajectory file")
    sh.add_argument("file", type=Path)
    return p


def _list() -> int:
    from ..datasets import DATASETS, SPECS

    width = max(map(len, DATASETS))
    for name in DATASETS:
        print(f"{name:<{width}}  {SPECS[name].title}")
    return 0


def _make(args: argparse.Namespace) -> int:
    from ..datasets import make
    from ._cli import check_writable_file

    if args.out.exists() and not args.force:
        raise FileExistsError(f"{args.out} exists; pass --force to overwrite it.")
    if args.out.suffix.lower() not in (".nc", ".h5", ".hdf5"):
        raise ValueError(f"unsupported file extension {args.out.suffix!r} for {args.out}; use .nc or .h5.")
    check_writable_file(args.out, "OUT")
    n = (args.n_trajectories or 1) * (args.n_times or 1)
    if n > MAX_MAKE_SIZE:
        raise ValueError(
            f"--n-trajectories x --n-times = {n:,} observation times, more than the limit of {MAX_MAKE_SIZE:,} "
            "(physnode.commands.data.MAX_MAKE_SIZE); generate a smaller dataset or several files."
        )
    opts = {}
    for key in ("n_trajectories", "n_times", "noise", "missing", "seed"):
        v = getattr(args, key)
        if v is not None:
            opts[key] = v
    if args.irregular:
        opts["irregular"] = True
    if args.observe is not None:  # an empty --observe "" names no component: refused below, not read as "all"
        opts["observe"] = [s.strip() for s in args.observe.split(",") if s.strip()]
    traj = make(args.name, **opts)
    traj.save(args.out)
    print(f"wrote {args.out}: {traj!r}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from ..data.io import load

    traj = load(args.file)
    lengths = traj.lengths
    print(f"file        {args.file}")
    print(f"dataset     {traj.attrs.get('dataset', '?')}  ({traj.attrs.get('title', '')})")
    print(f"trajectories {traj.n_trajectories}, times {int(lengths.min())}..{int(lengths.max())} per trajectory")
    t0 = float(traj.times[:, 0].min())
    t1 = max(float(traj.times[i, int(n) - 1]) for i, n in enumerate(lengths.tolist()))
    print(f"time        [{t0:g}, {t1:g}] {traj.time_units}")
    for j, (c, u) in enumerate(zip(traj.channels, traj.units, strict=True)):
        m = traj.mask[..., j]
        obs = traj.values[..., j][m]
        rng = f"[{float(obs.min()):.4g}, {float(obs.max()):.4g}]" if obs.numel() else "[]"
        print(f"  {c:<10} {u:<10} observed {float(m.sum()) / float(traj.time_mask.sum()):6.1%}  range {rng}")
    if "parameters" in traj.attrs:
        print(f"parameters  {traj.attrs['parameters']}")
    return 0


def main(argv: list[str]) -> int:
    """Run ``physnode data`` with ``argv`` (the arguments after ``data``); returns the exit code.

    Raises
    ------
    physnode.commands._cli.UsageError
        Bad arguments (exit code 2 through :func:`physnode.cli.main`).
    ValueError, OSError, KeyError
        The dataset cannot be made or the file cannot be read.
    """
    args = _parser().parse_args(list(argv))
    if args.command == "list":
        return _list()
    if args.command == "make":
        return _make(args)
    return _show(args)
