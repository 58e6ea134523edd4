"""Latent hybridisation model benchmark: forecasts of held-out patients' biomarkers under their own treatments.

Data: the ``pkpd`` zoo dataset (two-compartment pharmacokinetics with infusions, an indirect-response Emax effect on
the disease activity, and a hidden inflammatory process the expert model lacks; two noisy biomarkers, irregular
times, 20 % missing entries). Each model's encoder reads a patient's observations up to day 6 (the conditioning
window); it forecasts the biomarkers over days 6–12 under the patient's actual treatment. Models (same backward-GRU
encoder, decoder width and training budget, selected on the same validation patients):

- expert: the PK/PD equations alone (population CL, V1, EC50 fitted), neural decoder;
- neural ODE: a latent neural ODE with as many states as the LHM (5) reading the infusion rate;
- residual hybrid: ``physnode.physics.Hybrid`` — the expert equations plus a learned residual on their states;
- LHM: expert states plus 2 neural latent states, CL and EC50 per patient (inferred by the encoder).

Forecast error: RMSE over the observed entries after day 6 (biomarker units, both channels pooled), on held-out
patients. Correlations: Pearson correlation between each held-out patient's inferred CL / EC50 (LHM) and the truth.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories
from ..datasets.pkpd import POPULATION, expert_physics, pkpd
from ..latent import DecoderSpec, Expert, LatentHybrid, Posterior, SolveSettings, TreatmentSchedule, fit_latent_hybrid
from ..latent.refine import refine
from ..physics.hybrid import Hybrid
from ..physics.params import Param
from ._common import Table, make_parser, now, setup

__all__ = ["MODELS", "build_model", "collapse_diagnostics", "forecast_rmse", "run", "theta_correlation"]

#: Conditioning window end and horizon (days).
UNTIL, T_END = 6.0, 12.0
#: Scales of the expert states A1, A2 (mg), R (1) read by the networks.
EXPERT_SCALE = [50.0, 50.0, 1.0]
#: The compared models, in table order.
MODELS = ("expert", "neural ODE", "residual hybrid", "LHM")


class _ScaledResidual(nn.Module):
    """The residual of :class:`~physnode.physics.Hybrid`: an MLP on ``(A1/50, A2/50, R, u/u_scale)``."""

    scale: Tensor

    def __init__(self, hidden: int, u_scale: float) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor([50.0, 50.0, 1.0, u_scale]))
        last = nn.Linear(hidden, 3)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(nn.Linear(4, hidden), nn.Tanh(), last)
        self.out_scale = nn.Parameter(torch.tensor([10.0, 10.0, 0.1]), requires_grad=False)

    def forward(self, y: Tensor) -> Tensor:
        return self.net(y / self.scale.to(y)) * self.out_scale.to(y)


#: Decoders of the models with expert states: ``"neural"`` (an MLP of the states) or ``"known"`` (each biomarker a
#: learnable multiple of the disease activity ``R`` plus a neural residual of all states, started at zero).
DECODERS = ("neural", "known")


def known_decoder() -> DecoderSpec:
    """``score = a R + r_1(ẑ)``, ``marker = b R + r_2(ẑ)``: the biomarkers read the disease activity (the expert's
    knowledge; ``a``, ``b`` learned from 1 and 0.5) and a residual network of the scaled states (the rest)."""
    return DecoderSpec(
        channels=["score", "marker"],
        known={"score": "a*R", "marker": "b*R"},
        residual=["score", "marker"],
        params={"a": Param(1.0), "b": Param(0.5)},
    )


def build_model(
    kind: str,
    *,
    hidden: int = 32,
    u_scale: float = 40.0,
    seed: int = 0,
    decoder: str = "neural",
    inference: str = "variational",
) -> LatentHybrid:
    """One of :data:`MODELS`, float32, weights drawn from ``seed``; ``decoder`` one of :data:`DECODERS` (the neural
    ODE, without expert states, always has a neural one)."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}.")
    torch.manual_seed(seed)
    common: dict[str, Any] = {
        "data_dim": 2,
        "input_dim": 1,
        "hidden": hidden,
        "encoder_hidden": hidden,
        "inference": inference,
    }
    if kind != "neural ODE" and decoder == "known":
        common["decoder"] = known_decoder()
    fixed = {"A1": 0.0, "A2": 0.0}
    if kind == "expert":
        ex = Expert(expert_physics(), inputs=["u"])
        model = LatentHybrid(expert=ex, latent_dim=0, expert_scale=EXPERT_SCALE, fixed_initial=fixed, **common)
    elif kind == "neural ODE":
        model = LatentHybrid(expert=None, latent_dim=5, **common)
    elif kind == "residual hybrid":
        hyb = Hybrid(expert_physics(), _ScaledResidual(hidden, u_scale), on=[0, 1, 2])
        ex = Expert(hyb, inputs=["u"])
        model = LatentHybrid(expert=ex, latent_dim=0, expert_scale=EXPERT_SCALE, fixed_initial=fixed, **common)
    elif kind == "LHM":
        ex = Expert(expert_physics(), inputs=["u"], per_trajectory=["CL", "EC50"])
        model = LatentHybrid(expert=ex, latent_dim=2, expert_scale=EXPERT_SCALE, fixed_initial=fixed, **common)
    else:
        raise ValueError(f"unknown model {kind!r}; choose one of {MODELS}.")
    return model.float()


def forecast_rmse(
    model: LatentHybrid,
    data: Trajectories,
    inputs: TreatmentSchedule,
    settings: SolveSettings,
    window: str = "forecast",
    posterior: Posterior | None = None,
) -> float:
    """RMSE over the observed entries after :data:`UNTIL` (``window="forecast"``) or up to it (``"history"``: how well
    the encoded history is reconstructed); the encoder reads the observations up to :data:`UNTIL` either way
    (``posterior``: use this one, e.g. refined, instead)."""
    if window not in ("forecast", "history"):
        raise ValueError(f"window must be 'forecast' or 'history', got {window!r}.")
    data = data.to(dtype=torch.float32)
    out = model.predict(
        data, inputs, data.times, until=UNTIL, settings=settings, lengths=data.lengths, posterior=posterior
    )
    after = data.times > UNTIL
    chosen = after if window == "forecast" else ~after
    entries = data.mask & data.time_mask.unsqueeze(-1) & chosen.unsqueeze(-1)
    err = (out["mean"] - data.values)[entries]
    return float(err.pow(2).mean().sqrt())


def theta_correlation(
    model: LatentHybrid, data: Trajectories, inputs: TreatmentSchedule, posterior: Posterior | None = None
) -> dict[str, float]:
    """Pearson correlation of the inferred per-patient parameters with the truth (metadata ``parameters``)."""
    if model.expert is None or not model.P:
        return {}
    data = data.to(dtype=torch.float32)
    with torch.no_grad():
        post = posterior if posterior is not None else model.encode(data, inputs, until=UNTIL)
        theta = model.expert.constrained(model.theta_raw(post.mean[:, model.n_init :]))  # type: ignore[arg-type]
    out = {}
    for i, name in enumerate(model.expert.theta_names):
        truth = torch.tensor([m["parameters"][name] for m in data.metadata], dtype=torch.float64)
        est = theta[:, i].double()
        out[name] = float(torch.corrcoef(torch.stack([est, truth]))[0, 1])
    return out


def collapse_diagnostics(model: LatentHybrid, data: Trajectories, inputs: TreatmentSchedule) -> dict[str, float]:
    """How much the encoder's posterior over the per-patient parameter offsets departs from the prior (posterior
    collapse: KL near 0, posterior std near the prior std, means near the prior location).

    Returns
    -------
    dict
        ``"kl theta"``: mean KL per patient and parameter dimension (nats); ``"std ratio"``: mean posterior std over
        prior std of those dimensions; ``"mean spread"``: std over patients of the posterior means over the prior
        std (0: every patient gets the population value). Empty without per-patient parameters.
    """
    if not model.P:
        return {}
    with torch.no_grad():
        post = model.encode(data.to(dtype=torch.float32), inputs, until=UNTIL)
        loc, logstd = model._prior()
        sl = slice(model.n_init, model.n_init + model.P)
        mu, lv = post.mean[:, sl], post.logvar[:, sl]
        lp, ls = loc[sl], logstd[sl]
        var_p = torch.exp(2 * ls)
        kl = 0.5 * (torch.exp(lv) / var_p + (mu - lp) ** 2 / var_p - 1 + 2 * ls - lv)
        ratio = torch.exp(0.5 * lv - ls)
        spread = mu.std(0) / torch.exp(ls)
    return {"kl theta": float(kl.mean()), "std ratio": float(ratio.mean()), "mean spread": float(spread.mean())}


#: Log-normal between-patient CVs of the per-patient parameters of ``pkpd`` (the oracle's prior).
_CV = {"CL": POPULATION["CL"][2], "V1": POPULATION["V1"][2], "EC50": POPULATION["EC50"][2]}


def _oracle_parts(data: Trajectories, damping: float) -> tuple[Any, Tensor, Tensor, Tensor]:
    """Inputs, the solve grid (``t0`` then the observation times) and the history / forecast masks of ``data``."""
    from ..data.trajectories import solver_ready_times

    B = data.n_trajectories
    inputs = TreatmentSchedule.from_metadata(data).to_inputs(0.0)
    grid = solver_ready_times(torch.cat([torch.zeros(B, 1, dtype=torch.float64), data.times], 1), data.lengths + 1)
    mask = data.mask & data.time_mask.unsqueeze(-1)
    return inputs, grid, mask & (data.times <= UNTIL).unsqueeze(-1), mask & (data.times > UNTIL).unsqueeze(-1)


def _simulate(p: dict[str, Tensor], y0: Tensor, hidden: bool, inputs: Any, grid: Tensor) -> Tensor:
    """Noise-free biomarkers ``(B, T, 2)`` of the true system (``hidden=False``: without the hidden process)."""
    from ..datasets.pkpd import true_rhs
    from ..odeint import odeint

    def f(t: Tensor, y: Tensor, u: Tensor | None = None) -> Tensor:
        assert u is not None
        dy = true_rhs(t, y, u.squeeze(-1), p)
        return dy if hidden else torch.cat([dy[:, :3], torch.zeros_like(dy[:, 3:])], -1)

    ys = odeint(f, y0, grid, method="rk4", step_size=0.25, inputs=inputs)[:, 1:]
    R, M1, M2 = ys[..., 2], ys[..., 3], ys[..., 4]
    return torch.stack([R + M1, 0.5 * R + M2 / p["omega"].unsqueeze(-1)], -1)


def oracle(data: Trajectories, damping: float, iterations: int = 300) -> list[dict[str, object]]:
    """Per-patient fits of the true observation map on each patient's history (days 0-6), forecast days 6-12.

    Rows: ``truth`` (true parameters and initial states: the noise floor); ``expert/population`` and
    ``expert/per-patient`` (the expert model without the hidden process, biomarkers ``R`` and ``R/2``; population
    CL, V1, EC50 or per-patient ones, and ``R(0)`` fitted); ``true/population`` and ``true/per-patient`` (the true
    system with the hidden process, its initial state fitted too). Per-patient parameters: maximum a posteriori with
    the generator's log-normal population prior (Adam, ``iterations`` steps, all patients at once: their problems are
    independent). Float64, rk4 with steps of at most 0.25 day landing on every infusion start and end.
    """
    F64 = torch.float64
    data = data.to(dtype=F64)
    B = data.n_trajectories
    inputs, grid, hist, fut = _oracle_parts(data, damping)
    x = data.values
    sigma = float(data.attrs["options"]["noise"])
    truth = {k: torch.tensor([m["parameters"][k] for m in data.metadata], dtype=F64) for k in POPULATION}
    y0_true = torch.tensor([m["initial_state"] for m in data.metadata], dtype=F64)

    def rmse(pred: Tensor, m: Tensor) -> float:
        return float((pred - x)[m].pow(2).mean().sqrt())

    def fit(hidden: bool, per_patient: bool) -> dict[str, object]:
        w = {"R0": torch.ones(B, dtype=F64), "M1": torch.zeros(B, dtype=F64), "M2": torch.zeros(B, dtype=F64)}
        if per_patient:
            w.update({k: torch.zeros(B, dtype=F64) for k in _CV})
        fitted = [k for k in w if hidden or k not in ("M1", "M2")]
        for k in fitted:
            w[k].requires_grad_(True)
        opt = torch.optim.Adam([w[k] for k in fitted], lr=0.03)

        def predict() -> tuple[Tensor, dict[str, Tensor]]:
            p = {k: torch.full((B,), v[0], dtype=F64) for k, v in POPULATION.items()}
            p["zeta"] = torch.full((B,), damping, dtype=F64)
            for k in _CV:
                if k in w:
                    p[k] = POPULATION[k][0] * torch.exp(w[k])
            zero = torch.zeros(B, dtype=F64)
            y0 = torch.stack([zero, zero, w["R0"], w["M1"], w["M2"]], -1)
            return _simulate(p, y0, hidden, inputs, grid), p

        for _ in range(iterations):
            pred, _ = predict()
            loss = 0.5 * torch.where(hist, (pred - x) / sigma, 0.0).pow(2).sum()
            if per_patient:
                loss = loss + sum(0.5 * (w[k] / cv).pow(2).sum() for k, cv in _CV.items())
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                for k in _CV:
                    if k in w:
                        w[k].clamp_(-3.0, 3.0)
        with torch.no_grad():
            pred, p = predict()
        row: dict[str, object] = {"history RMSE": f"{rmse(pred, hist):.4f}", "forecast RMSE": f"{rmse(pred, fut):.4f}"}
        for k in ("CL", "EC50"):
            c = float(torch.corrcoef(torch.stack([p[k], truth[k]]))[0, 1]) if per_patient else math.nan
            row[f"corr {k}"] = f"{c:.2f}" if per_patient else "-"
        return row

    with torch.no_grad():
        pt = _simulate(truth, y0_true, True, inputs, grid)
    rows: list[dict[str, object]] = [
        {"fit": "truth", "history RMSE": f"{rmse(pt, hist):.4f}", "forecast RMSE": f"{rmse(pt, fut):.4f}"}
    ]
    for hidden in (False, True):
        for per in (False, True):
            name = f"{'true' if hidden else 'expert'}/{'per-patient' if per else 'population'}"
            rows.append({"fit": name, **fit(hidden, per)})
    return rows


def identifiability(data: Trajectories, damping: float) -> dict[str, tuple[float, float]]:
    """Laplace posterior standard deviation of log CL, log V1, log EC50 given a patient's history (days 0-6) at the
    truth: ``(J^T J / σ² + prior precision)^-1`` with ``J`` the finite-difference Jacobian of the noise-free history
    biomarkers w.r.t. (log CL, log V1, log EC50, R(0), M1(0), M2(0)). Returns ``{name: (prior std, median posterior
    std over patients)}``; a posterior std near the prior's means the history does not identify the parameter."""
    F64 = torch.float64
    data = data.to(dtype=F64)
    B = data.n_trajectories
    inputs, grid, hist, _ = _oracle_parts(data, damping)
    sigma = float(data.attrs["options"]["noise"])
    truth = {k: torch.tensor([m["parameters"][k] for m in data.metadata], dtype=F64) for k in POPULATION}
    y0 = torch.tensor([m["initial_state"] for m in data.metadata], dtype=F64)
    eps = 1e-5
    cols = []
    with torch.no_grad():
        base = _simulate(truth, y0, True, inputs, grid)
        for i in range(6):
            p, y = dict(truth), y0.clone()
            if i < 3:
                name = list(_CV)[i]
                p[name] = truth[name] * math.exp(eps)
            else:
                y[:, i - 1] += eps
            cols.append((_simulate(p, y, True, inputs, grid) - base) / eps)
    J = torch.where(hist.unsqueeze(-1), torch.stack(cols, -1), 0.0).reshape(B, -1, 6)
    # Prior: the population CVs; R(0) ~ U(0.8, 1.2) (std 0.4/sqrt(12)); M1(0), M2(0) ~ N(0, 0.3^2).
    prior_std = torch.tensor([*_CV.values(), 0.4 / math.sqrt(12), 0.3, 0.3], dtype=F64)
    cov = torch.linalg.inv(J.transpose(1, 2) @ J / sigma**2 + torch.diag(prior_std**-2))
    sd = cov.diagonal(dim1=1, dim2=2).sqrt()
    return {k: (cv, float(sd[:, i].median())) for i, (k, cv) in enumerate(_CV.items())}


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench lhm", __doc__.splitlines()[0], repeats=1)
    p.add_argument("--sizes", default=None, help="comma-separated training-set sizes (default 10,100,500)")
    p.add_argument("--iterations", type=int, default=None, help="training iterations per model (default 300)")
    p.add_argument("--test", type=int, default=None, help="held-out test patients (default 200)")
    p.add_argument("--models", default=None, help=f"comma-separated subset of: {', '.join(MODELS)}")
    p.add_argument("--seed", type=int, default=0, help="seed of the model weights and training (default 0)")
    p.add_argument(
        "--hidden-damping",
        type=float,
        default=0.25,
        help="damping ratio of the dataset's hidden process (default 0.25, the pkpd default; 0.05 keeps it alive)",
    )
    p.add_argument("--decoder", choices=DECODERS, default="neural", help="decoder of the expert-based models")
    p.add_argument("--inference", choices=("variational", "point"), default="variational", help="encoder's inference")
    p.add_argument("--kl-warmup", type=int, default=0, help="iterations of linear KL warm-up (default 0)")
    p.add_argument(
        "--refine",
        type=int,
        default=0,
        help="semi-amortised inference: Adam steps on each test patient's encoding (history objective), kept for a "
        "model when they lower its validation forecast error (default 0)",
    )
    p.add_argument("--refine-lr", type=float, default=0.05, help="step size of --refine (default 0.05)")
    p.add_argument(
        "--pool",
        type=int,
        default=None,
        help="patients generated (default: largest size + validation + test); the same --pool gives the same test "
        "and validation patients whatever --sizes, so sizes can run in separate processes",
    )
    p.add_argument(
        "--oracle",
        action="store_true",
        help="instead of training: per-patient fits of the true observation map on the test patients' histories "
        "(the achievable forecast error) and the identifiability of CL, V1, EC50 from days 0-6",
    )
    p.add_argument("--oracle-iterations", type=int, default=300, help="Adam steps of the --oracle fits (default 300)")
    args = p.parse_args(argv)
    device = setup(args)
    if device.type != "cpu":
        raise SystemExit("physnode bench lhm runs on the CPU (--device cpu).")
    sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else ([4] if args.quick else [10, 100, 500])
    iters = args.iterations if args.iterations is not None else (3 if args.quick else 300)
    n_test = args.test if args.test is not None else (4 if args.quick else 200)
    n_val = 4 if args.quick else 50
    models = [m.strip() for m in args.models.split(",")] if args.models else list(MODELS)
    bad = [m for m in models if m not in MODELS]
    if bad or min(sizes) < 2 or iters < 1 or n_test < 2 or args.refine < 0 or args.kl_warmup < 0:
        raise SystemExit(
            f"--models must name {MODELS}, --sizes >= 2, --iterations >= 1, --test >= 2, --refine and --kl-warmup "
            f">= 0 (got {bad})."
        )
    n_times = 8 if args.quick else 24
    pool = max(sizes) + n_val + n_test if args.pool is None else args.pool
    if pool < max(sizes) + n_val + n_test:
        raise SystemExit(
            f"--pool must hold the training, validation and test patients: >= {max(sizes) + n_val + n_test}."
        )
    full = pkpd(
        n_trajectories=pool,
        n_times=n_times,
        t_span=(0.0, T_END),
        seed=args.seed,
        hidden_damping=args.hidden_damping,
    )
    if args.oracle:
        test = full[list(range(n_test))]
        ident = identifiability(test, args.hidden_damping)
        table = Table(
            f"pkpd (hidden damping {args.hidden_damping:g}): oracle fits on the histories (days 0-6) of {n_test} "
            f"held-out patients, forecast days 6-12; {args.oracle_iterations} Adam steps, float64",
            ("fit", "history RMSE", "forecast RMSE", "corr CL", "corr EC50"),
        )
        for r in oracle(test, args.hidden_damping, args.oracle_iterations):
            table.add_row(r)
        table.notes += [
            f"identifiability from days 0-6 (Laplace at the truth, median over patients): log {k}: prior std "
            f"{a:.2f}, posterior std {b:.3f}"
            for k, (a, b) in ident.items()
        ]
        print(table.render(args.markdown), flush=True)
        return 0
    schedule = TreatmentSchedule.from_metadata(full).to(dtype=torch.float32)
    test_idx = list(range(n_test))
    val_idx = list(range(n_test, n_test + n_val))
    train_all = list(range(n_test + n_val, full.n_trajectories))
    test, val = full[test_idx], full[val_idx]
    settings = SolveSettings(method="midpoint", step_size=0.5)
    refine_note = f", refined {args.refine} steps when validated" if args.refine else ""
    table = Table(
        f"pkpd (hidden damping {args.hidden_damping:g}): forecast RMSE over days 6-12 on {n_test} held-out patients "
        f"(encoder reads days 0-6{refine_note}), {iters} iterations, batch <= 32, Adam lr 1e-2, {args.inference} "
        f"inference, KL warm-up {args.kl_warmup}, {args.decoder} decoder, midpoint h <= 0.5 day, float32, "
        f"threads={args.threads}, {args.clock} clock",
        ("N train", *models, "LHM corr CL", "LHM corr EC50", "LHM KL θ", "LHM std ratio", "s / iteration (LHM)"),
    )

    def refined(model: LatentHybrid, data: Trajectories, idx: list[int]) -> Posterior:
        return refine(
            model,
            data.to(dtype=torch.float32),
            schedule[idx],
            until=UNTIL,
            settings=settings,
            steps=args.refine,
            lr=args.refine_lr,
        )

    for N in sizes:
        idx = train_all[:N]
        train = full[idx]
        row: dict[str, object] = {"N train": N}
        for kind in models:
            model = build_model(kind, seed=args.seed, decoder=args.decoder, inference=args.inference)
            start = now()
            fit = fit_latent_hybrid(
                model,
                train,
                schedule[idx],
                until=UNTIL,
                iterations=iters,
                batch_size=32,
                lr=1e-2,
                seed=args.seed,
                settings=settings,
                validation=(val, schedule[val_idx]),
                validate_every=max(1, iters // 12),
                kl_warmup=args.kl_warmup,
            )
            per_iter = (now() - start) / iters
            m = fit.model
            amortised = forecast_rmse(m, test, schedule[test_idx], settings)
            post = None
            text = f"forecast RMSE {amortised:.4f} (encoder)"
            if args.refine:
                v0 = forecast_rmse(m, val, schedule[val_idx], settings)
                v1 = forecast_rmse(m, val, schedule[val_idx], settings, posterior=refined(m, val, val_idx))
                post_test = refined(m, test, test_idx)
                r1 = forecast_rmse(m, test, schedule[test_idx], settings, posterior=post_test)
                text += f", {r1:.4f} refined (validation {v0:.4f} -> {v1:.4f}: {'kept' if v1 < v0 else 'not kept'})"
                post = post_test if v1 < v0 else None
            row[kind] = f"{amortised if post is None else r1:.4f}"
            if kind == "LHM":
                corr = theta_correlation(m, test, schedule[test_idx], posterior=post)
                diag = collapse_diagnostics(m, test, schedule[test_idx])
                row["LHM corr CL"] = f"{corr.get('CL', math.nan):.2f}"
                row["LHM corr EC50"] = f"{corr.get('EC50', math.nan):.2f}"
                row["LHM KL θ"] = f"{diag.get('kl theta', math.nan):.3f}"
                row["LHM std ratio"] = f"{diag.get('std ratio', math.nan):.2f}"
                row["s / iteration (LHM)"] = f"{per_iter:.2f}"
                text += (
                    f"; corr CL {row['LHM corr CL']}, EC50 {row['LHM corr EC50']}; encoder KL per θ dimension "
                    f"{row['LHM KL θ']} nats, posterior/prior std {row['LHM std ratio']}, spread of the means / prior "
                    f"std {diag.get('mean spread', math.nan):.2f}"
                )
            last = fit.history[-10:]
            nll = sum(h["nll"] for h in last) / len(last)
            curve = ", ".join(f"{int(h['iteration'])}: {h['validation']:.3f}" for h in fit.history if "validation" in h)
            print(
                f"N={N} {kind}: {text}; best iteration {fit.best_iteration}, training NLL per entry (mean of the last "
                f"10 iterations) {nll:.3f}, {per_iter:.2f} s / iteration ({args.clock}); validation NLL per entry by "
                f"iteration: {curve}",
                flush=True,
            )
        table.add_row(row)
    noise = float(full.attrs["options"]["noise"])
    table.notes += [
        f"noise floor: the observation noise standard deviation is {noise:g} (an RMSE of about {noise:g} is perfect).",
        "each model: the state of its best validation score (negative log-likelihood of all the validation patients' "
        "observations, encoder reading days 0-6; "
        f"{n_val} validation patients, scored {12} times over the run).",
        f"true population values: CL = {POPULATION['CL'][0]} L/day, EC50 = {POPULATION['EC50'][0]} mg/L; the expert, "
        "residual and LHM models start from 1.5 times them.",
        "LHM KL θ: the encoder's mean KL to the prior per patient and parameter dimension (nats; near 0 = collapsed "
        "to the prior); std ratio: posterior over prior standard deviation (near 1 = the data told it nothing).",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
