"""Causal-structure benchmark: who drives whom, and forecasts under unseen interventions.

Systems (from the dataset zoo, float64): ``linear_sparse`` with d = 10 and d = 50, ``glv`` (10 species) and
``spring_network`` (8 masses, second order). Training data: 48 trajectories, up to 50 irregular times each, noise
σ = 0.01 (1 % of the order-one states), 10 % of the entries missing. Test data: the true system under ``do(·)``
interventions never seen in training — the three variables with the most children held at values given below —
8 noise-free trajectories each.

Methods (same network size for both neural models: per variable one tanh MLP with 16 hidden units plus the
linear skip path, and for GLV the multiplicative skip path ``x_i · (M y)_i``, all reading the same groups):

- ``structured+prox``: :class:`~physnode.causal.StructuredODE`; derivative matching (collocation) with the
  group-lasso proximal step — the weighted adjacency of this stage gives AUROC/AUPRC; its support (groups above
  10 % of the largest off-diagonal one) gives SHD and is refitted without penalty (a fresh network masked to the
  support: collocation, then :func:`physnode.fit` on the trajectories) for the interventional forecasts; the refit
  keeps a group lasso ``λ_r`` on each variable's MLP output row (``lam_residual``), so that an MLP the skip paths
  make unnecessary is switched off exactly.
- ``unregularised``: the same StructuredODE, same training stages as the refit, ``λ = 0``, all edges allowed.
- ``lasso (SINDy-like)``: :func:`~physnode.causal.fit_sparse_regression`, lasso of smoothed derivatives on a
  polynomial library (degree 1 for the linear and spring systems, 2 for GLV), penalty by held-out trajectories.

Columns: AUROC and AUPRC of the weighted adjacency (off-diagonal entries), SHD and number of edges of the
thresholded graph, ``int. err``: the relative mean squared error of the forecasts under the interventions
(``Σ (ŷ − y)² / Σ y²`` over all test entries, averaged over the interventions), ``vs unreg.``: the
unregularised model's error divided by this row's, and the wall time of the training.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import physnode

from ._common import Table, fmt_seconds, make_parser, now, setup

__all__ = ["SYSTEMS", "SystemCase", "run", "run_case"]

LAMBDA = 3e-3  # group-lasso weight of the collocation stage (its loss is normalised by the target variances)
LAMBDA_RES = 0.1  # refit only: group lasso on each variable's MLP output row (prefer the skip paths' mechanisms)
CUT = 0.1  # support: groups above CUT x the largest off-diagonal group
SOLVE = {"method": "rk4", "step_size": 0.2}  # training solves (the data come from dopri8 at rtol 1e-10)
TEST_SOLVE = {"method": "rk4", "step_size": 0.05}


@dataclass
class SystemCase:
    """One benchmark system: a zoo dataset, its options, the intervention values and the baseline's library."""

    label: str
    dataset: str
    options: dict[str, Any]
    do_values: Callable[[Any], list[float]]
    degree: int
    order: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    multiplicative: bool = False


SYSTEMS: dict[str, SystemCase] = {
    "linear-10": SystemCase("linear d=10", "linear_sparse", {"d": 10}, lambda tr: [1.5, -1.5, 1.5], degree=1),
    "linear-50": SystemCase("linear d=50", "linear_sparse", {"d": 50}, lambda tr: [1.5, -1.5, 1.5], degree=1),
    # GLV: two knock-outs and one over-abundance, in units of the species' equilibrium abundance x*
    "glv-10": SystemCase(
        "GLV 10 species", "glv", {"n_species": 10}, lambda tr: [0.0, 0.0, 1.8], degree=2, multiplicative=True
    ),
    "spring-8": SystemCase(
        "spring network 8", "spring_network", {"n_masses": 8}, lambda tr: [1.0, -1.0, 1.0], degree=1, order=2
    ),
}


def _interventions(case: SystemCase, train: Any) -> list[dict[str, float]]:
    """The three variables with the most children (ties: lowest index), held at the case's values."""
    truth = torch.tensor(train.attrs["adjacency"])
    d = truth.shape[0]
    children = truth.sum(0)
    order = sorted(range(d), key=lambda j: (-int(children[j]), j))[:3]
    values = case.do_values(train)
    names = train.attrs["state_names"]
    out = []
    for j, v in zip(order, values, strict=True):
        if case.dataset == "glv":
            v = v * train.attrs["system"]["x_star"][j]
        out.append({names[j]: float(v)})
    return out


def _relative_error(model: torch.nn.Module, tests: list[Any], dos: list[dict[str, float]]) -> float:
    from ..causal import intervene, prediction_error

    errs = [
        prediction_error(intervene(model, do), te, relative=True, **TEST_SOLVE)
        for do, te in zip(dos, tests, strict=True)
    ]
    return float(sum(errs) / len(errs))


def run_case(case: SystemCase, *, quick: bool, seed: int = 0) -> list[dict[str, Any]]:
    """Train the three methods on one system and score them; one result dict per method."""
    from .. import datasets
    from ..causal import (
        GroupLassoProx,
        StructuredODE,
        fit_sparse_regression,
        graph_metrics,
        threshold,
    )
    from ..causal.collocation import fit_collocation

    n_traj, n_times = (12, 30) if quick else (48, 50)
    colloc_steps, fit_epochs = (150, 2) if quick else (1000, 20)
    opts = dict(case.options)
    if quick and case.dataset == "linear_sparse":
        opts["d"] = min(opts["d"], 6)
    if quick and case.dataset == "glv":
        opts["n_species"] = 6
    if quick and case.dataset == "spring_network":
        opts["n_masses"] = 4
    train = datasets.make(
        case.dataset, n_trajectories=n_traj, n_times=n_times, irregular=True, noise=0.01, missing=0.1, seed=seed, **opts
    )
    truth = torch.tensor(train.attrs["adjacency"])
    d = truth.shape[0]
    dos = _interventions(case, train)
    tests = [
        datasets.make(case.dataset, n_trajectories=4 if quick else 8, n_times=n_times, seed=1000 + k, do=do, **opts)
        for k, do in enumerate(dos)
    ]
    names = train.attrs["state_names"]
    rows: list[dict[str, Any]] = []
    fit_kw = dict(grad="direct", progress=False, uncertainty=False, **SOLVE)
    lr_c, lr_f = 1e-2, 1e-3

    def new_model(edges: torch.Tensor | None = None) -> StructuredODE:
        return StructuredODE(
            d,
            order=case.order,
            hidden=(16,),
            edges=edges,
            state_names=names,
            generator=torch.Generator().manual_seed(seed),
            linear=True,
            multiplicative=case.multiplicative,
        )

    # structured + proximal group lasso: the graph from the derivative-matching stage, then a refit on its support
    t0 = now()
    model = new_model()
    fit_collocation(model, train, lam=LAMBDA, lr=lr_c, epochs=colloc_steps)
    A = model.adjacency()
    support = threshold(A, CUT, relative=True) | torch.eye(d, dtype=torch.bool)
    refit = new_model(edges=support)
    fit_collocation(refit, train, lam=0.0, lr=lr_c, epochs=colloc_steps, lam_residual=LAMBDA_RES)
    prox = GroupLassoProx(0.0, lr_f, lam_residual=LAMBDA_RES)
    physnode.fit(refit, train, lr=lr_f, epochs=fit_epochs, optimizer=prox.adam, after_step=prox, **fit_kw)
    secs = now() - t0
    m = graph_metrics(A, truth, cut=CUT, relative=True)
    rows.append({**m, "method": "structured+prox", "int": _relative_error(refit, tests, dos), "time": secs})

    # unregularised, same size and stages
    t0 = now()
    dense = new_model()
    fit_collocation(dense, train, lam=0.0, lr=lr_c, epochs=colloc_steps)
    physnode.fit(dense, train, lr=lr_f, epochs=fit_epochs, **fit_kw)
    secs = now() - t0
    m = graph_metrics(dense.adjacency(), truth, cut=CUT, relative=True)
    rows.append({**m, "method": "unregularised", "int": _relative_error(dense, tests, dos), "time": secs})

    # classical baseline
    t0 = now()
    base = fit_sparse_regression(train, order=case.order, degree=case.degree)
    secs = now() - t0
    m = graph_metrics(base.adjacency(), truth)
    rows.append(
        {
            **m,
            "method": f"lasso (SINDy-like, degree {case.degree})",
            "int": _relative_error(base, tests, dos),
            "time": secs,
        }
    )
    for r in rows:
        r["system"] = f"{case.label}" if not quick else f"{case.label} (quick, d={d})"
        r["do"] = ", ".join(f"{k}={v:.3g}" for do in dos for k, v in do.items())
        r["n_true"] = int(truth.sum() - truth.diagonal().sum())
    return rows


COLUMNS = ("system", "method", "AUROC", "AUPRC", "SHD", "edges", "int. err", "vs unreg.", "time")


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench causal", __doc__.splitlines()[0], repeats=1)
    p.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(SYSTEMS)} (default: all)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the training data and the networks (default 0)")
    args = p.parse_args(argv)
    setup(args)
    if args.device != "cpu":
        raise SystemExit("physnode bench causal runs on the CPU only (--device cpu).")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise SystemExit(f"--systems: unknown {bad}; choose from {', '.join(SYSTEMS)}.")
    table = Table(
        f"Causal structure and interventional forecasts, float64, threads={args.threads}, seed={args.seed}"
        + (", --quick sizes" if args.quick else ""),
        COLUMNS,
    )
    notes = []
    for name in systems:
        rows = run_case(SYSTEMS[name], quick=args.quick, seed=args.seed)
        unreg = next(r["int"] for r in rows if r["method"] == "unregularised")
        for r in rows:
            table.add_row(
                {
                    "system": r["system"],
                    "method": r["method"],
                    "AUROC": f"{r['auroc']:.3f}",
                    "AUPRC": f"{r['auprc']:.3f}",
                    "SHD": r["shd"],
                    "edges": r["n_edges"],
                    "int. err": f"{r['int']:.2e}",
                    "vs unreg.": f"{unreg / r['int']:.2f}×" if r["int"] > 0 else "-",
                    "time": fmt_seconds(r["time"]),
                }
            )
        notes.append(f"{rows[0]['system']}: do() tests {rows[0]['do']}; true edges {int(rows[0].get('n_true', 0))}")
    table.notes += [
        "AUROC/AUPRC: off-diagonal entries of the weighted adjacency vs the true graph; SHD/edges: graph thresholded "
        f"at {CUT:g} x its largest off-diagonal entry (neural models) or at 0 (lasso).",
        "int. err: relative MSE of forecasts under do() interventions unseen in training, mean over 3 interventions; "
        "vs unreg.: unregularised error / this row's (> 1: better than the unregularised neural ODE).",
        f"group-lasso weight λ = {LAMBDA:g} (collocation stage; graph from that stage, support refitted without "
        f"penalty on the edges, residual lasso λ_r = {LAMBDA_RES:g} on the MLP output rows); skip paths: linear (all), "
        f"multiplicative x_i·(M y) (GLV); training solves {SOLVE}; "
        "the lasso's penalty is chosen on held-out trajectories.",
        *notes,
    ]
    print(table.render(args.markdown), flush=True)
    return 0
