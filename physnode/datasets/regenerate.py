"""Regenerate (or check) the reference files, cards and ``SHA256SUMS`` of the repository's ``datasets/`` folder.

Usage::

    python -m physnode.datasets.regenerate            # rewrite datasets/*.nc, datasets/*.md, datasets/SHA256SUMS
    python -m physnode.datasets.regenerate --check    # regenerate in memory and compare digests; exit 1 on mismatch

``SHA256SUMS`` holds :meth:`physnode.data.Trajectories.digest` of each dataset: a SHA-256 of a canonical
serialisation of the data arrays and metadata, not of the file bytes (HDF5 files embed allocation details and
library versions that change between writes, so two files with identical data need not be byte-identical).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path
from typing import Any

from .._atomic import atomic_write_text
from ..data.trajectories import Trajectories
from . import DATASETS, SPECS

__all__ = ["REFERENCE", "card", "default_folder", "main", "read_sums", "reference"]

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
}

SUMS_HEADER = (
    "# SHA-256 of physnode.data.Trajectories.digest(): canonical data arrays + metadata, not file bytes.\n"
    "# Regenerate with: python -m physnode.datasets.regenerate\n"
)


def default_folder() -> Path:
    """The repository's ``datasets/`` folder (next to the ``physnode`` package)."""
    return Path(__file__).resolve().parents[2] / "datasets"


def reference(name: str) -> Trajectories:
    """Generate dataset ``name`` with its :data:`REFERENCE` options."""
    return DATASETS[name](**REFERENCE[name])


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
            f"Default: {defaults.get('n_trajectories')} trajectories, {defaults.get('n_times')} times on "
            f"t_span = {tuple(defaults.get('t_span', ()))} ({spec.time_units}), regular unless `irregular=True` "
            "(then t0 plus sorted uniform random times, a random count in [n_times // 2, n_times]). Options "
            "`noise` (Gaussian, channel units), `missing` (per-entry drop rate), `observe`, `seed`, "
            "`random_initial`. Solved with `physnode.odeint(method='dopri8', rtol=1e-10, atol=1e-12)` in float64."
        ),
    ]
    if spec.notes:
        parts.append(spec.notes)
    parts += [
        "## Reference file",
        (
            f"`{name}.nc`: `physnode.datasets.make({name!r}, {opts})` — {traj.n_trajectories} trajectories, "
            f"up to {traj.n_times} times, channels {', '.join(traj.channels)}. Data digest (see `SHA256SUMS`): "
            f"`{digest}`."
        ),
        "## Regenerate",
        (
            "```bash\npython -m physnode.datasets.regenerate          # all reference files, cards, SHA256SUMS\n"
            f"physnode data make {name} {name}.nc --n-trajectories 16 --irregular --noise 0.01 --seed 0\n```"
        ),
        (f"```python\nfrom physnode.data import Trajectories\ntraj = Trajectories.load('datasets/{name}.nc')\n```"),
    ]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Regenerate or check the reference datasets; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m physnode.datasets.regenerate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default: the repository's datasets/)")
    parser.add_argument("--check", action="store_true", help="compare with SHA256SUMS instead of writing")
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
    bad = 0
    for name in names:
        traj = reference(name)
        digest = traj.digest()
        if args.check:
            ok = sums.get(f"{name}.nc") == digest
            bad += not ok
            print(f"{name}: {'OK' if ok else 'MISMATCH ' + digest}")
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
