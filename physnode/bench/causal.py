"""Causal-structure benchmark: who drives whom, and forecasts under unseen interventions.

Systems (from the dataset zoo, float64): ``linear_sparse`` with d = 10 and d = 50, ``glv`` (10 species) and
``spring_network`` (8 masses, second order). For ``--seeds S1,S2,..`` each seed draws its own system
(``graph_seed``) and its own data. Per seed: training data, 48 trajectories with up to 50 irregular times each,
noise σ = 0.01 (1 % of the order-one states), 10 % of the entries missing; *validation* data, 16 more
observational trajectories drawn the same way (another seed) — every choice of the recipe is made on them; test
data, the true system under three ``do(·)`` interventions never seen in training — the three variables with the
most children held at values given below — 8 noise-free trajectories each, used for scoring only.

Methods (same network size for both neural models: per variable one tanh MLP with 16 hidden units plus the
linear skip path, and for GLV the multiplicative skip path ``x_i · (M y)_i``, all reading the same groups):

- ``structured+prox``: :class:`~physnode.causal.StructuredODE`. (1) A regularisation path of derivative matching
  (collocation) with the group-lasso proximal step, ``λ`` increasing over :data:`LAMBDAS` with warm starts; at each
  ``λ`` the support (groups above :data:`CUT` x the largest off-diagonal one) is refitted without the edge penalty
  (relaxed lasso, Meinshausen 2007) and scored by its forecast error on the validation trajectories; the largest
  ``λ`` within :data:`TOLERANCE` of the best is selected and its weighted adjacency gives AUROC/AUPRC, its support
  SHD. (2) The selected relaxed refit is continued (collocation) with each residual-lasso weight ``λ_r`` in
  :data:`LAMBDA_RES` (a group lasso on each variable's MLP output row, so that an MLP the skip paths make
  unnecessary is switched off exactly), and (3) each of these is fitted to the trajectories by
  :func:`physnode.fit` (:data:`FIT`: full-batch L-BFGS) without penalty, the MLPs the residual lasso switched off
  held off (``StructuredODE(mlp=...)``: the relaxed lasso again, on the MLP terms); the largest ``λ_r`` whose
  fitted model is within :data:`TOLERANCE` of the best validation error is kept. For the second-order spring
  network (``SystemCase.select_on_trajectories``) each relaxed refit of the path is also fitted to the
  trajectories (:data:`FIT`) before it is scored: its collocation refits forecast nothing, so their validation
  errors cannot choose ``λ``.
- ``unregularised``: the same StructuredODE, all edges and all MLPs, the same collocation stage and the same
  trajectory stage (:data:`FIT`), no penalty.
- ``lasso (SINDy-like)``: :func:`~physnode.causal.fit_sparse_regression`, lasso of smoothed derivatives on a
  polynomial library (degree 1 for the linear and spring systems, 2 for GLV), penalty by held-out trajectories.

Columns: AUROC and AUPRC of the weighted adjacency (off-diagonal entries), SHD and number of edges of the
thresholded graph, ``val. err``: the relative mean squared error of forecasts of the observational validation
trajectories, ``int. err``: the same under the interventions (``Σ (ŷ − y)² / Σ y²`` over all test entries,
averaged over the interventions), ``vs unreg.``: the unregularised model's interventional error divided by this
row's, and the wall time of the training. With several seeds every cell is the mean ± the standard deviation
over the seeds, but ``vs unreg.``: the geometric mean of the per-seed ratios and their range.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

import physnode

from ._common import Table, fmt_seconds, make_parser, now, setup

__all__ = ["SYSTEMS", "SystemCase", "run", "run_case"]

#: Group-lasso weights of the collocation path (its loss is normalised by the target variances: dimensionless).
LAMBDAS = (1e-3, 2e-3, 4e-3, 8e-3, 1.6e-2)
#: Residual-lasso weights tried in the refit (group lasso on each variable's MLP output row).
LAMBDA_RES = (0.0, 0.01, 0.1)
#: Selection rule: the largest weight whose validation error is within (1 + TOLERANCE) of the smallest.
TOLERANCE = 0.1
CUT = 0.1  # support: groups above CUT x the largest off-diagonal group
SOLVE = {"method": "rk4", "step_size": 0.2}  # training solves (the data come from dopri8 at rtol 1e-10)
TEST_SOLVE = {"method": "rk4", "step_size": 0.05}
#: Trajectory stage (both neural models): full-batch L-BFGS (strong-Wolfe line search, up to 20 iterations per
#: epoch) on all training trajectories.
FIT = {"optimizer": "lbfgs", "epochs": 20}
#: Collocation: fresh fits take ``epochs`` Adam steps, each path stage and each λ_r refit half, each relaxed refit a
#: quarter (they start from the previous stage's weights).
COLLOCATION = {"lr": 1e-2, "epochs": 1000}


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
    #: Score each relaxed refit of the λ path after the trajectory stage (:data:`FIT`) instead of straight after
    #: its collocation refit. Needed where collocation targets are poor: for second-order systems the smoothed
    #: accelerations are about 24 % off at this sampling, so the collocation refits' validation errors (0.9–9)
    #: carry no signal about λ.
    select_on_trajectories: bool = False


SYSTEMS: dict[str, SystemCase] = {
    "linear-10": SystemCase("linear d=10", "linear_sparse", {"d": 10}, lambda tr: [1.5, -1.5, 1.5], degree=1),
    "linear-50": SystemCase("linear d=50", "linear_sparse", {"d": 50}, lambda tr: [1.5, -1.5, 1.5], degree=1),
    # GLV: two knock-outs and one over-abundance, in units of the species' equilibrium abundance x*
    "glv-10": SystemCase(
        "GLV 10 species", "glv", {"n_species": 10}, lambda tr: [0.0, 0.0, 1.8], degree=2, multiplicative=True
    ),
    "spring-8": SystemCase(
        "spring network 8",
        "spring_network",
        {"n_masses": 8},
        lambda tr: [1.0, -1.0, 1.0],
        degree=1,
        order=2,
        select_on_trajectories=True,
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


def _validation_error(model: torch.nn.Module, val: Any) -> float:
    """Relative MSE of the forecasts of the observational validation trajectories (inf if a solve fails)."""
    from ..causal import prediction_error
    from ..errors import SolverError

    try:
        err = prediction_error(model, val, relative=True, **TEST_SOLVE)
    except SolverError:
        return float("inf")
    return err if err == err else float("inf")  # NaN (a blown-up forecast) ranks last


def _copy_weights(source: torch.nn.Module, target: torch.nn.Module) -> None:
    """Warm start: ``target`` (a StructuredODE of the same shape, masked to a support and possibly with some MLPs
    off) takes ``source``'s weights."""
    with torch.no_grad():
        for p, q in zip(source.parameters(), target.parameters(), strict=True):
            q.copy_(p)
        if target.input_mask is not None:
            target.W_in.mul_(target.input_mask)
        if target.output_mask is not None:
            target.W_out.mul_(target.output_mask)


def _select(errors: list[float]) -> int:
    """Index of the largest weight (the list is in increasing weight) within (1 + TOLERANCE) of the best error."""
    best = min(errors)
    return max(k for k, e in enumerate(errors) if e <= best * (1 + TOLERANCE))


def run_case(case: SystemCase, *, quick: bool, seed: int = 0) -> list[dict[str, Any]]:
    """Train the three methods on one system and score them; one result dict per method.

    ``seed`` draws the system (``graph_seed``), the training data (``seed``), the validation data (``500 + seed``),
    the interventional test data (``1000 + 10 seed + k``) and the networks' initial weights.
    """
    from .. import datasets
    from ..causal import (
        StructuredODE,
        fit_sparse_regression,
        graph_metrics,
        threshold,
    )
    from ..causal.collocation import fit_collocation

    n_traj, n_times = (12, 30) if quick else (48, 50)
    steps = 150 if quick else COLLOCATION["epochs"]
    lambdas = LAMBDAS[1::2] if quick else LAMBDAS
    fit_cfg = {**FIT, "epochs": 1} if quick else dict(FIT)
    opts = dict(case.options)
    if quick and case.dataset == "linear_sparse":
        opts["d"] = min(opts["d"], 6)
    if quick and case.dataset == "glv":
        opts["n_species"] = 6
    if quick and case.dataset == "spring_network":
        opts["n_masses"] = 4
    opts["graph_seed"] = seed
    common = dict(n_times=n_times, irregular=True, noise=0.01, missing=0.1, **opts)
    train = datasets.make(case.dataset, n_trajectories=n_traj, seed=seed, **common)
    val = datasets.make(case.dataset, n_trajectories=max(4, n_traj // 3), seed=500 + seed, **common)
    truth = torch.tensor(train.attrs["adjacency"])
    d = truth.shape[0]
    eye = torch.eye(d, dtype=torch.bool)
    dos = _interventions(case, train)
    tests = [
        datasets.make(
            case.dataset, n_trajectories=4 if quick else 8, n_times=n_times, seed=1000 + 10 * seed + k, do=do, **opts
        )
        for k, do in enumerate(dos)
    ]
    names = train.attrs["state_names"]
    rows: list[dict[str, Any]] = []
    lr_c = COLLOCATION["lr"]
    fit_kw = dict(grad="direct", progress=False, uncertainty=False, **fit_cfg, **SOLVE)

    def new_model(edges: torch.Tensor | None = None, mlp: torch.Tensor | None = None) -> StructuredODE:
        return StructuredODE(
            d,
            order=case.order,
            hidden=(16,),
            edges=edges,
            state_names=names,
            generator=torch.Generator().manual_seed(seed),
            linear=True,
            multiplicative=case.multiplicative,
            mlp=mlp,
        )

    # structured + proximal group lasso. (1) the path over λ, each support refitted (relaxed) and validated
    t0 = now()
    path = new_model()
    fit_collocation(path, train, lam=0.0, lr=lr_c, epochs=steps)
    adjacencies, val_errors, relaxed_fits = [], [], []
    for lam in lambdas:
        fit_collocation(path, train, lam=lam, lr=lr_c, epochs=steps // 2)
        A = path.adjacency()
        relaxed = new_model(edges=threshold(A, CUT, relative=True) | eye)
        _copy_weights(path, relaxed)
        fit_collocation(relaxed, train, lam=0.0, lr=lr_c, epochs=steps // 4)
        if case.select_on_trajectories:
            physnode.fit(relaxed, train, **fit_kw)
        adjacencies.append(A)
        relaxed_fits.append(relaxed)
        val_errors.append(_validation_error(relaxed, val))
    k = _select(val_errors)
    A = adjacencies[k]
    # (2) the selected relaxed refit continued with each residual-lasso weight, then (3) fitted to the trajectories
    # without penalty, the MLPs that the residual lasso switched off held off; each candidate validated
    support = threshold(A, CUT, relative=True) | eye
    fits, res_errors = [], []
    lambda_res = (LAMBDA_RES[0], LAMBDA_RES[-1]) if quick else LAMBDA_RES
    for lam_r in lambda_res:
        refit = new_model(edges=support)
        _copy_weights(relaxed_fits[k], refit)
        fit_collocation(refit, train, lam=0.0, lr=lr_c, epochs=steps // 2, lam_residual=lam_r)
        fitted = new_model(edges=support, mlp=(refit.W_out != 0).any(1))
        _copy_weights(refit, fitted)
        physnode.fit(fitted, train, **fit_kw)
        fits.append(fitted)
        res_errors.append(_validation_error(fitted, val))
    r = _select(res_errors)
    refit, lam_r = fits[r], lambda_res[r]
    secs = now() - t0
    m = graph_metrics(A, truth, cut=CUT, relative=True)
    chosen = {
        "lam": lambdas[k],
        "lam_r": lam_r,
        "mlp": int(refit.output_mask.sum()) if refit.output_mask is not None else d,
        "path": list(zip(lambdas, val_errors, strict=True)),
        "res": list(zip(lambda_res, res_errors, strict=True)),
    }
    rows.append(
        {
            **m,
            "method": "structured+prox",
            "val": _validation_error(refit, val),
            "int": _relative_error(refit, tests, dos),
            "time": secs,
            "chosen": chosen,
        }
    )

    # unregularised, same size and stages
    t0 = now()
    dense = new_model()
    fit_collocation(dense, train, lam=0.0, lr=lr_c, epochs=steps)
    physnode.fit(dense, train, **fit_kw)
    secs = now() - t0
    m = graph_metrics(dense.adjacency(), truth, cut=CUT, relative=True)
    rows.append(
        {
            **m,
            "method": "unregularised",
            "val": _validation_error(dense, val),
            "int": _relative_error(dense, tests, dos),
            "time": secs,
        }
    )

    # classical baseline
    t0 = now()
    base = fit_sparse_regression(train, order=case.order, degree=case.degree)
    secs = now() - t0
    m = graph_metrics(base.adjacency(), truth)
    rows.append(
        {
            **m,
            "method": f"lasso (SINDy-like, degree {case.degree})",
            "val": _validation_error(base, val),
            "int": _relative_error(base, tests, dos),
            "time": secs,
        }
    )
    unreg = rows[1]["int"]
    for row in rows:
        row["ratio"] = unreg / row["int"] if row["int"] > 0 else float("nan")
        row["system"] = f"{case.label}" if not quick else f"{case.label} (quick, d={d})"
        row["do"] = ", ".join(f"{k}={v:.3g}" for do in dos for k, v in do.items())
        row["n_true"] = int(truth.sum() - truth.diagonal().sum())
        row["seed"] = seed
        row["d"] = d
    return rows


COLUMNS = ("system", "method", "AUROC", "AUPRC", "SHD", "edges", "val. err", "int. err", "vs unreg.", "time")


def _cell(values: list[float], fmt: str) -> str:
    """``mean`` for one seed, ``mean ± sd`` for several."""
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(statistics.fmean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"


def _ratio_cell(ratios: list[float]) -> str:
    """Ratios of errors: the value for one seed; for several, the geometric mean and the range over the seeds (an
    arithmetic mean would be ruled by one blown-up forecast)."""
    if len(ratios) == 1:
        return f"{ratios[0]:.2f}×"
    gmean = math.exp(statistics.fmean(math.log(r) for r in ratios))
    return f"{gmean:.2f}× ({min(ratios):.2f}–{max(ratios):.2f})"


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench causal", __doc__.splitlines()[0], repeats=1)
    p.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"comma-separated, from {', '.join(SYSTEMS)} (default: all)"
    )
    p.add_argument(
        "--seeds",
        default="0",
        help="comma-separated seeds; each draws its own system, data and initial weights; with several, the table "
        "shows mean ± standard deviation (default 0)",
    )
    args = p.parse_args(argv)
    setup(args)
    if args.device != "cpu":
        raise SystemExit("physnode bench causal runs on the CPU only (--device cpu).")
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [s for s in systems if s not in SYSTEMS]
    if bad:
        raise SystemExit(f"--systems: unknown {bad}; choose from {', '.join(SYSTEMS)}.")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise SystemExit(f"--seeds: expected comma-separated integers such as 0,1,2, got {args.seeds!r}.") from None
    if not seeds or any(s < 0 for s in seeds):
        raise SystemExit(f"--seeds: expected comma-separated integers >= 0 such as 0,1,2, got {args.seeds!r}.")
    table = Table(
        f"Causal structure and interventional forecasts, float64, threads={args.threads}, "
        f"seed{'s' if len(seeds) > 1 else ''}={','.join(map(str, seeds))}" + (", --quick sizes" if args.quick else ""),
        COLUMNS,
    )
    notes = []
    for name in systems:
        per_seed = [run_case(SYSTEMS[name], quick=args.quick, seed=s) for s in seeds]
        for i, first in enumerate(per_seed[0]):
            rows = [rs[i] for rs in per_seed]
            col = {key: [float(r[key]) for r in rows] for key in ("auroc", "auprc", "shd", "n_edges", "val", "int")}
            table.add_row(
                {
                    "system": first["system"],
                    "method": first["method"],
                    "AUROC": _cell(col["auroc"], ".3f"),
                    "AUPRC": _cell(col["auprc"], ".3f"),
                    "SHD": _cell(col["shd"], ".3g"),
                    "edges": _cell(col["n_edges"], ".3g"),
                    "val. err": _cell(col["val"], ".2e"),
                    "int. err": _cell(col["int"], ".2e"),
                    "vs unreg.": _ratio_cell([r["ratio"] for r in rows]),
                    "time": fmt_seconds(statistics.fmean(r["time"] for r in rows)),
                }
            )
        for rs in per_seed:
            sel, unreg = rs[0], rs[1]
            notes.append(
                f"{sel['system']}, seed {sel['seed']}: do() tests {sel['do']}; true edges {sel['n_true']}; "
                f"selected λ = {sel['chosen']['lam']:g}, λ_r = {sel['chosen']['lam_r']:g} (MLPs on: "
                f"{sel['chosen']['mlp']} of {sel['d']}); vs unreg. {sel['ratio']:.2f}× (int. err {sel['int']:.2e} "
                f"vs {unreg['int']:.2e}); validation error of the relaxed refits along the path: "
                + ", ".join(f"{lam:g}: {e:.2e}" for lam, e in sel["chosen"]["path"])
                + "; of the trajectory fits per λ_r: "
                + ", ".join(f"{lam:g}: {e:.2e}" for lam, e in sel["chosen"]["res"])
            )
    table.notes += [
        "AUROC/AUPRC: off-diagonal entries of the weighted adjacency vs the true graph; SHD/edges: graph thresholded "
        f"at {CUT:g} x its largest off-diagonal entry (neural models) or at 0 (lasso).",
        "val. err / int. err: relative MSE of forecasts of held-out observational trajectories / under do() "
        "interventions unseen in training (mean over 3); vs unreg.: unregularised int. err / this row's, per seed "
        "(> 1: better than the unregularised neural ODE); several seeds: geometric mean (range).",
        f"λ path {', '.join(f'{x:g}' for x in LAMBDAS)} and λ_r in {', '.join(f'{x:g}' for x in LAMBDA_RES)}, each "
        f"chosen on the validation trajectories (largest within {TOLERANCE:.0%} of the best); skip paths: linear "
        f"(all), multiplicative x_i·(M y) (GLV); training solves {SOLVE}; trajectory stage {FIT}; the lasso's "
        "penalty is chosen on held-out trajectories.",
        *notes,
    ]
    print(table.render(args.markdown), flush=True)
    return 0
