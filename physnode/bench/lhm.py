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
from ..latent import Expert, LatentHybrid, SolveSettings, TreatmentSchedule, fit_latent_hybrid
from ..physics.hybrid import Hybrid
from ._common import Table, make_parser, setup

__all__ = ["MODELS", "build_model", "forecast_rmse", "run", "theta_correlation"]

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


def build_model(kind: str, *, hidden: int = 32, u_scale: float = 40.0, seed: int = 0) -> LatentHybrid:
    """One of :data:`MODELS`, float32, weights drawn from ``seed``."""
    torch.manual_seed(seed)
    common: dict[str, Any] = {"data_dim": 2, "input_dim": 1, "hidden": hidden, "encoder_hidden": hidden}
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
) -> float:
    """RMSE over the observed entries after :data:`UNTIL` (``window="forecast"``) or up to it (``"history"``: how well
    the encoded history is reconstructed); the encoder reads the observations up to :data:`UNTIL` either way."""
    if window not in ("forecast", "history"):
        raise ValueError(f"window must be 'forecast' or 'history', got {window!r}.")
    data = data.to(dtype=torch.float32)
    out = model.predict(data, inputs, data.times, until=UNTIL, settings=settings, lengths=data.lengths)
    after = data.times > UNTIL
    chosen = after if window == "forecast" else ~after
    entries = data.mask & data.time_mask.unsqueeze(-1) & chosen.unsqueeze(-1)
    err = (out["mean"] - data.values)[entries]
    return float(err.pow(2).mean().sqrt())


def theta_correlation(model: LatentHybrid, data: Trajectories, inputs: TreatmentSchedule) -> dict[str, float]:
    """Pearson correlation of the inferred per-patient parameters with the truth (metadata ``parameters``)."""
    if model.expert is None or not model.P:
        return {}
    data = data.to(dtype=torch.float32)
    with torch.no_grad():
        post = model.encode(data, inputs, until=UNTIL)
        theta = model.expert.constrained(model.theta_raw(post.mean[:, model.n_init :]))  # type: ignore[arg-type]
    out = {}
    for i, name in enumerate(model.expert.theta_names):
        truth = torch.tensor([m["parameters"][name] for m in data.metadata], dtype=torch.float64)
        est = theta[:, i].double()
        out[name] = float(torch.corrcoef(torch.stack([est, truth]))[0, 1])
    return out


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
    if bad or min(sizes) < 2 or iters < 1 or n_test < 2:
        raise SystemExit(f"--models must name {MODELS}, --sizes >= 2, --iterations >= 1, --test >= 2 (got {bad}).")
    n_times = 8 if args.quick else 24
    full = pkpd(
        n_trajectories=max(sizes) + n_val + n_test,
        n_times=n_times,
        t_span=(0.0, T_END),
        seed=args.seed,
        hidden_damping=args.hidden_damping,
    )
    schedule = TreatmentSchedule.from_metadata(full).to(dtype=torch.float32)
    test_idx = list(range(n_test))
    val_idx = list(range(n_test, n_test + n_val))
    train_all = list(range(n_test + n_val, full.n_trajectories))
    test, val = full[test_idx], full[val_idx]
    settings = SolveSettings(method="midpoint", step_size=0.5)
    table = Table(
        f"pkpd (hidden damping {args.hidden_damping:g}): forecast RMSE over days 6-12 on {n_test} held-out patients "
        f"(encoder reads days 0-6), {iters} "
        f"iterations, batch <= 32, Adam lr 1e-2, midpoint h <= 0.5 day, float32, threads={args.threads}",
        ("N train", *models, "LHM corr CL", "LHM corr EC50", "s / iteration (LHM)"),
    )
    for N in sizes:
        idx = train_all[:N]
        train = full[idx]
        row: dict[str, object] = {"N train": N}
        for kind in models:
            model = build_model(kind, seed=args.seed)
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
            )
            row[kind] = f"{forecast_rmse(fit.model, test, schedule[test_idx], settings):.4f}"
            if kind == "LHM":
                corr = theta_correlation(fit.model, test, schedule[test_idx])
                row["LHM corr CL"] = f"{corr.get('CL', math.nan):.2f}"
                row["LHM corr EC50"] = f"{corr.get('EC50', math.nan):.2f}"
                row["s / iteration (LHM)"] = f"{fit.seconds_per_iteration:.2f}"
            last = fit.history[-10:]
            nll = sum(h["nll"] for h in last) / len(last)
            print(
                f"N={N} {kind}: forecast RMSE {row[kind]}, best iteration {fit.best_iteration}, training NLL per entry "
                f"(mean of the last 10 iterations) {nll:.3f}, {fit.seconds_per_iteration:.2f} s / iteration",
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
    ]
    print(table.render(args.markdown), flush=True)
    return 0
