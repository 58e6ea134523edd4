"""Regenerate (or check) the reference files, cards and ``SHA256SUMS`` of the repository's ``datasets/`` folder.

Usage::

    python -m physnode.datasets.regenerate            # rewrite datasets/*.nc, datasets/*.md, datasets/SHA256SUMS
    python -m physnode.datasets.regenerate --check    # regenerate in memory, compare with the stored files
    python -m physnode.datasets.regenerate --cards    # rewrite only the cards, from the stored files

``SHA256SUMS`` holds :meth:`physnode.data.Trajectories.digest` of each dataset: a SHA-256 of a canonical
serialisation of the data arrays and metadata, not of the file bytes (HDF5 files embed allocation details and
library versions that change between writes, so two files with identical data need not be byte-identical).

The digest checks the *stored files* exactly. A *fresh* generation is a floating-point computation whose last bits
depend on the CPU and on the reduction order of the BLAS kernels, so ``--check`` (and the test suite) compare it
with the stored file through :func:`differences`, with a tolerance derived from the reference solver's.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_write_text
from ..data.trajectories import Trajectories
from . import DATASETS, SPECS

__all__ = ["FRESH_RTOL", "REFERENCE", "card", "default_folder", "differences", "main", "read_sums", "reference"]

#: Options of the small reference file of each dataset (few trajectories, 100 points or so).
REFERENCE: dict[str, dict[str, Any]] = {
    "three_body": {"n_times": 101},
    "n_body": {"n_trajectories": 2, "n_times": 100, "irregular": True, "seed": 1},
    "kepler": {"n_trajectories": 3, "n_times": 100},
    "pendulum": {"n_trajectories": 3, "n_times": 100, "noise": 0.01, "missing": 0.2},
    "double_pendulum": {"n_trajectories": 2, "n_times": 100, "t_span": (0.0, 5.0)},
    "mass_spring_chain": {"n_trajectories": 2, "n_times": 100, "irregular": True},
    "damped_oscillator": {"n_trajectories": 3, "n_times": 100, "irregular": True, "noise": 0.01, "missing": 0.3},
    "lotka_volterra": {"n_trajectories": 3, "n_times": 100},
    "linear_sparse": {"n_trajectories": 4, "n_times": 60, "irregular": True, "noise": 0.01, "missing": 0.1},
    "glv": {"n_trajectories": 4, "n_times": 60, "irregular": True, "noise": 0.01, "missing": 0.1},
    "spring_network": {"n_trajectories": 4, "n_times": 60, "irregular": True, "noise": 0.01, "missing": 0.1},
    "pkpd": {"n_trajectories": 8, "n_times": 24},
}

SUMS_HEADER = (
    "# SHA-256 of physnode.data.Trajectories.digest(): canonical data arrays + metadata, not file bytes.\n"
    "# Regenerate with: python -m physnode.datasets.regenerate\n"
)


#: Relative tolerance of a fresh generation against the stored reference file, as a fraction of each channel's
#: largest magnitude. The reference solves use ``rtol=1e-10`` (dopri8): round-off that differs between CPUs changes
#: the last bits of each step and can flip an accept/reject decision near the error threshold, which moves the
#: solution by at most about one local tolerance. Ten times the solver's rtol bounds that with margin while still
#: catching any real change of the data (a changed tableau, controller or parameter moves values by far more).
FRESH_RTOL = 1e-9


def default_folder() -> Path:
    """The repository's ``datasets/`` folder (next to the ``physnode`` package)."""
    return Path(__file__).resolve().parents[2] / "datasets"


def reference(name: str) -> Trajectories:
    """Generate dataset ``name`` with its :data:`REFERENCE` options."""
    return DATASETS[name](**REFERENCE[name])


def _close(a: Any, b: Any, rtol: float) -> bool:
    """Recursive equality of JSON-like metadata with floats compared to relative ``rtol``."""
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return False
        return math.isclose(a, b, rel_tol=rtol, abs_tol=0.0) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k], rtol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_close(x, y, rtol) for x, y in zip(a, b, strict=True))
    return a == b


def differences(fresh: Trajectories, stored: Trajectories, rtol: float = FRESH_RTOL) -> list[str]:
    """What differs between a fresh generation and a stored reference, beyond round-off.

    Names, units, ids, masks and lengths must be equal; times, values and float metadata must agree to
    ``rtol`` relative to the largest magnitude of their channel (values) or of the whole array (times).

    Parameters
    ----------
    fresh, stored
        The two data sets (any dtype; compared in float64 on the CPU).
    rtol
        Relative tolerance (default :data:`FRESH_RTOL`, explained there).

    Returns
    -------
    list of str
        One readable line per difference (empty when the two agree): what differs, where, and by how much.
    """
    out: list[str] = []
    da, db = fresh._descr(), stored._descr()
    for key in sorted(set(da) | set(db)):
        if not _close(da.get(key), db.get(key), rtol):
            out.append(f"{key}: fresh {da.get(key)!r:.200} != stored {db.get(key)!r:.200}")
    if fresh.values.shape != stored.values.shape:
        return [*out, f"values shape: fresh {tuple(fresh.values.shape)} != stored {tuple(stored.values.shape)}"]
    if not torch.equal(fresh.mask.cpu(), stored.mask.cpu()):
        n = int((fresh.mask.cpu() != stored.mask.cpu()).sum())
        out.append(f"mask: {n} entries differ")
    if not torch.equal(fresh.lengths.cpu(), stored.lengths.cpu()):
        out.append(f"lengths: fresh {fresh.lengths.tolist()} != stored {stored.lengths.tolist()}")
    tf, ts = fresh.times.detach().cpu().double(), stored.times.detach().cpu().double()
    scale = float(ts.nan_to_num().abs().max()) or 1.0
    err = (tf - ts).nan_to_num().abs()
    if float(err.max()) > rtol * scale:
        i = divmod(int(err.argmax()), err.shape[-1])
        out.append(
            f"times: max |difference| {float(err.max()):.3e} at (trajectory, index) {i} > {rtol:g} * {scale:.3e}"
        )
    vf, vs = fresh.values.detach().cpu().double(), stored.values.detach().cpu().double()
    m = stored.mask.cpu()
    for c, name in enumerate(stored.channels):
        a, b = vf[..., c][m[..., c]], vs[..., c][m[..., c]]
        if a.numel() == 0:
            continue
        scale = float(b.abs().max()) or 1.0
        err = (a - b).abs()
        if not bool(torch.isfinite(a).all()) or float(err.max()) > rtol * scale:
            out.append(f"channel {name!r}: max |difference| {float(err.max()):.3e} > {rtol:g} * max|value| {scale:.3e}")
    return out


def read_sums(path: Path) -> dict[str, str]:
    """Parse ``SHA256SUMS`` into ``file name -> digest``."""
    out = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        digest, name = line.split(maxsplit=1)
        out[name.strip()] = digest
    return out


def _table(rows: list[tuple[str, ...]], head: tuple[str, ...]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _plural(n: object, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _file_counts(traj: Trajectories) -> str:
    """What the file holds: trajectories, times per trajectory (each one's own count) and observed values."""
    lengths = [int(n) for n in traj.lengths.tolist()]
    if min(lengths) == max(lengths):
        times = _plural(lengths[0], "time", "times") + (" each" if len(lengths) > 1 else "")
    else:
        times = f"{min(lengths)} to {max(lengths)} times (per trajectory: {', '.join(map(str, lengths))})"
    valid = traj.mask & traj.time_mask.unsqueeze(-1)
    observed, total = int(valid.sum()), sum(lengths) * traj.n_channels
    return (
        f"{_plural(traj.n_trajectories, 'trajectory', 'trajectories')} with {times}, "
        f"{_plural(traj.n_channels, 'channel', 'channels')} ({', '.join(traj.channels)}), "
        f"{observed} of {total} values observed"
    )


def card(name: str, traj: Trajectories, digest: str) -> str:
    """Markdown card of dataset ``name`` from its spec, generator signature and reference data."""
    spec = SPECS[name]
    gen = DATASETS[name]
    params = traj.attrs["parameters"]
    defaults = {
        k: p.default for k, p in inspect.signature(gen).parameters.items() if p.default is not inspect.Parameter.empty
    }
    state_rows = [
        (n, u, "yes" if n in traj.channels else "") for n, u in zip(spec.state_names, spec.state_units, strict=True)
    ]
    par_rows = [(k, f"`{params.get(k)}`", u, d) for k, (u, d) in spec.parameters.items()]
    opts = ", ".join(f"{k}={v!r}" for k, v in REFERENCE[name].items())
    doc = (gen.__doc__ or "").strip().split("\n\n")[0]
    parts = [
        f"# `{name}`: {spec.title}",
        doc,
        "## System",
        "```text\n" + spec.equations + "\n```",
        f"State (time unit `{spec.time_units}`); *observed* marks the default observed channels:",
        _table(state_rows, ("component", "unit", "observed")),
        "## Parameters (true values, stored in each trajectory's metadata `parameters`)",
        _table(par_rows, ("name", "value", "unit", "meaning")),
        "## Initial conditions",
        spec.initial_conditions,
        "## Sampling",
        (
            f"Generator defaults, i.e. what `physnode.datasets.make({name!r})` returns without options (the "
            "reference file of this repository is smaller; its counts are under *Reference file*): "
            f"{_plural(defaults.get('n_trajectories'), 'trajectory', 'trajectories')}, "
            f"{_plural(defaults.get('n_times'), 'time', 'times')} on t_span = {tuple(defaults.get('t_span', ()))} "
            f"({spec.time_units}), regular unless `irregular=True` (then t0 plus sorted uniform random times, a random "
            "count in [n_times // 2, n_times]). Options `noise` (Gaussian, channel units), `missing` (per-entry drop "
            "rate), `observe`, `seed`, `random_initial`. Solved with `physnode.odeint(method='dopri8', rtol=1e-10, "
            "atol=1e-12)` in float64."
        ),
    ]
    if spec.notes:
        parts.append(spec.notes)
    parts += [
        "## Reference file",
        (
            f"`{name}.nc`, made by `physnode.datasets.make({name!r}, {opts})`, holds {_file_counts(traj)}. "
            f"Data digest (see `SHA256SUMS`): `{digest}`."
        ),
        "## Regenerate",
        (
            "```bash\npython -m physnode.datasets.regenerate          # all reference files, cards, SHA256SUMS\n"
            f"physnode data make {name} {name}.nc --n-trajectories 16 --irregular --noise 0.01 --seed 0\n```"
        ),
        (f"```python\nfrom physnode.data import Trajectories\ntraj = Trajectories.load('datasets/{name}.nc')\n```"),
    ]
    return "\n\n".join(parts) + "\n"


def _check(folder: Path, name: str, fresh: Trajectories, sums: dict[str, str]) -> list[str]:
    """Problems of the stored file ``name`` (exact digest) and of a fresh generation against it (tolerance)."""
    path = folder / f"{name}.nc"
    if not path.is_file():
        return [f"{path} is missing; run python -m physnode.datasets.regenerate {name}"]
    stored = Trajectories.load(path)
    problems = []
    if stored.digest() != sums.get(f"{name}.nc"):
        problems.append(f"the stored file's digest {stored.digest()} is not the one in SHA256SUMS")
    problems += differences(fresh, stored)
    return problems


def _write_cards(folder: Path, names: list[str], sums: dict[str, str]) -> int:
    """Rewrite the cards of ``names`` from their stored files (the data files and ``SHA256SUMS`` are not touched)."""
    for name in names:
        path = folder / f"{name}.nc"
        if not path.is_file() or f"{name}.nc" not in sums:
            print(f"error: {path} or its SHA256SUMS line is missing; run python -m physnode.datasets.regenerate {name}")
            return 1
        atomic_write_text(folder / f"{name}.md", card(name, Trajectories.load(path), sums[f"{name}.nc"]))
        print(f"{name}: wrote {name}.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Regenerate or check the reference datasets; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m physnode.datasets.regenerate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default: the repository's datasets/)")
    parser.add_argument(
        "--check",
        action="store_true",
        help="instead of writing: check each stored file against SHA256SUMS (exact) and a fresh generation against "
        "the stored file (within FRESH_RTOL)",
    )
    parser.add_argument(
        "--cards",
        action="store_true",
        help="rewrite only the cards NAME.md, from the stored NAME.nc and SHA256SUMS (data files untouched)",
    )
    parser.add_argument("names", nargs="*", help="datasets to process (default: all)")
    args = parser.parse_args(argv)
    folder = args.out or default_folder()
    names = args.names or list(REFERENCE)
    unknown = [n for n in names if n not in REFERENCE]
    if unknown:
        print(f"error: unknown dataset(s) {unknown}; choose from {', '.join(REFERENCE)}", file=sys.stderr)
        return 2
    sums_path = folder / "SHA256SUMS"
    sums = read_sums(sums_path) if sums_path.is_file() else {}
    if args.cards:
        return _write_cards(folder, names, sums)
    bad = 0
    for name in names:
        traj = reference(name)
        digest = traj.digest()
        if args.check:
            problems = _check(folder, name, traj, sums)
            bad += bool(problems)
            print(f"{name}: " + ("OK" if not problems else "MISMATCH\n  " + "\n  ".join(problems)))
            continue
        folder.mkdir(parents=True, exist_ok=True)
        traj.save(folder / f"{name}.nc")
        atomic_write_text(folder / f"{name}.md", card(name, traj, digest))
        sums[f"{name}.nc"] = digest
        print(f"{name}: wrote {name}.nc ({(folder / f'{name}.nc').stat().st_size} bytes), {name}.md")
    if not args.check:
        body = "".join(f"{d}  {n}\n" for n, d in sorted(sums.items()))
        atomic_write_text(sums_path, SUMS_HEADER + body)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
