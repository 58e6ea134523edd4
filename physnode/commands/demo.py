"""``physnode demo``: solve the ACA paper's three-body problem per trajectory and plot the orbits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from .._atomic import atomic_write_text
from ..datasets._systems import ACA_MASSES, K1, K2, three_body_y0
from ..odeint import solve
from ..physics import NBodyGravity

__all__ = ["MAX_T_END", "main"]

#: Longest orbit the demo solves (nondimensional time; the ACA paper shows [0, 2]).
MAX_T_END = 100.0


def main(argv: list[str] | None = None) -> int:
    """Run the demo; writes ``orbit.png`` and ``summary.json`` into ``--out``."""
    from ._cli import ArgumentParser, check_writable_folder

    parser = ArgumentParser(prog="physnode demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/demo"), help="output folder")
    parser.add_argument(
        "--t-end", type=float, default=2.0, help=f"end time (nondimensional units, at most {MAX_T_END:g})"
    )
    args = parser.parse_args(argv)
    if not 0 < args.t_end <= MAX_T_END:
        raise ValueError(f"--t-end must be positive and at most {MAX_T_END:g} (nondimensional units), got {args.t_end}")
    check_writable_folder(args.out)

    dtype = torch.float64
    y0 = three_body_y0(dtype).unsqueeze(0)
    # A second trajectory, slightly perturbed, observed at its own irregular times.
    y0 = torch.cat([y0, y0 + 0.01 * torch.randn(1, 18, dtype=dtype, generator=torch.Generator().manual_seed(0))])
    t = torch.stack(
        [
            torch.linspace(0, args.t_end, 400, dtype=dtype),
            torch.sort(torch.rand(400, dtype=dtype, generator=torch.Generator().manual_seed(1))).values * args.t_end,
        ]
    )
    t[1, 0] = 0.0
    # The ACA paper's nondimensionalised gravity: dr/dt = K2 v, dv_i/dt = K1 sum_j m_j (r_j - r_i) / |r_j - r_i|^3.
    model = NBodyGravity(3, dim=3, G=1.0, masses=list(ACA_MASSES), k_r=K2, k_v=K1).to(dtype)
    start = time.perf_counter()
    with torch.no_grad():
        sol = solve(model, y0, t, method="dopri5", rtol=1e-9, atol=1e-9)
    elapsed = time.perf_counter() - start

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    for ax, b, title in zip(axes, range(2), ["regular sampling", "irregular sampling, perturbed"], strict=True):
        r = sol.ys[b, :, :9].reshape(-1, 3, 3)
        for i in range(3):
            ax.plot(r[:, i, 0], r[:, i, 1], ".-", ms=2, lw=0.5, label=f"body {i + 1}")
        ax.set_xlabel("x (r_nd)")
        ax.set_ylabel("y (r_nd)")
        ax.set_title(title)
        ax.legend()
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "orbit.png", dpi=120)
    plt.close(fig)
    summary = {
        "nfe": sol.stats.nfe,
        "accepted_steps": sol.stats.n_accepted.tolist(),
        "rejected_steps": sol.stats.n_rejected.tolist(),
        "seconds": elapsed,
    }
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2))
    print(f"solved 2 three-body trajectories on [0, {args.t_end}] in {elapsed:.3f} s")
    print(f"  accepted steps per trajectory: {summary['accepted_steps']}, rejected: {summary['rejected_steps']}")
    print(f"  wrote {args.out / 'orbit.png'} and {args.out / 'summary.json'}")
    return 0
