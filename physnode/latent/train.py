"""Training a :class:`LatentHybrid` by amortised variational inference (or point estimates), with checkpoints."""

from __future__ import annotations

import copy
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm import tqdm

from ..data.trajectories import Trajectories
from .model import InputSeries, LatentHybrid, SolveSettings

__all__ = ["LatentFit", "fit_latent_hybrid"]


@dataclass
class LatentFit:
    """What :func:`fit_latent_hybrid` returns.

    Attributes
    ----------
    model
        The trained model (the best validation state when validation data was given).
    history
        One entry per iteration: ``iteration``, ``loss`` (negative ELBO per observed entry), ``nll``, ``kl``,
        ``wall_time`` (s), and ``validation`` (forecast loss, every ``validate_every`` iterations) when given.
    seconds_per_iteration
        Mean wall time of an iteration.
    best_iteration
        Iteration of the kept state (the last one without validation data).
    """

    model: LatentHybrid
    history: list[dict[str, float]] = field(default_factory=list)
    seconds_per_iteration: float = math.nan
    best_iteration: int = 0


def _check_inputs(model: LatentHybrid, data: Trajectories, inputs: InputSeries | None, what: str) -> None:
    if not isinstance(data, Trajectories):
        raise TypeError(f"{what} must be physnode.data.Trajectories, got {type(data).__name__}.")
    if data.n_channels != model.Dx:
        raise ValueError(f"{what} has {data.n_channels} channels ({data.channels}); the model expects {model.Dx}.")
    if model.C:
        if inputs is None:
            raise ValueError(f"the model reads {model.C} input channel(s); pass the inputs of {what} (inputs=...).")
        n = getattr(inputs, "n_trajectories", None)
        if n is not None and n != data.n_trajectories:
            raise ValueError(f"{what} has {data.n_trajectories} trajectories but its inputs have {n}.")


def fit_latent_hybrid(
    model: LatentHybrid,
    data: Trajectories,
    inputs: InputSeries | None = None,
    *,
    until: float | None = None,
    t0: float = 0.0,
    iterations: int = 500,
    batch_size: int = 64,
    lr: float = 1e-2,
    seed: int = 0,
    settings: SolveSettings | None = None,
    validation: tuple[Trajectories, InputSeries | None] | None = None,
    validate_every: int = 25,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 50,
    resume: bool = False,
    progress: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    kl_warmup: int = 0,
) -> LatentFit:
    """Train ``model`` on ``data`` (Adam, minibatches of trajectories, gradient norm clipped at 10).

    Parameters
    ----------
    model
        The model; its data scales are set from ``data`` on the first fit (:meth:`LatentHybrid.set_scales`).
    data, inputs
        Training trajectories and their inputs (``inputs[idx]`` must select trajectories, e.g. a
        :class:`TreatmentSchedule`).
    until
        The encoder reads observations at times ``<= until`` (the conditioning window); the loss covers all, so
        the model learns to forecast. ``None``: everything.
    t0
        Time of the initial state (before every observation).
    iterations, batch_size, lr
        Optimisation budget: each iteration takes the next ``batch_size`` trajectories of a seeded permutation.
    seed
        Seeds the batch order and the reparameterisation noise (the model's initial weights are the caller's).
    settings
        How the ODE is solved (:class:`SolveSettings`).
    validation
        ``(trajectories, inputs)`` scored every ``validate_every`` iterations by the loss with the posterior mean;
        the best state is kept (early stopping by selection).
    checkpoint, checkpoint_every, resume
        Path of a training checkpoint (model, optimiser, generator, history; ``weights_only`` loadable, written
        atomically) every ``checkpoint_every`` iterations and at the end; ``resume=True`` continues from it.
    progress
        Show a tqdm bar.
    callback
        ``callback(iteration, entry)`` after each iteration.
    kl_warmup
        Iterations over which the weight of the KL term grows linearly from ``0`` to ``1`` (KL annealing, Bowman et
        al. 2016: the encoder learns to carry information before the prior pulls it back; ``0``: the ELBO
        throughout).

    Returns
    -------
    LatentFit
    """
    from ..fit.checkpoint import load_checkpoint, save_checkpoint

    _check_inputs(model, data, inputs, "data")
    if validation is not None:
        _check_inputs(model, validation[0], validation[1], "validation data")
    for name, v in (("iterations", iterations), ("batch_size", batch_size), ("validate_every", validate_every)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    if not isinstance(kl_warmup, int) or isinstance(kl_warmup, bool) or kl_warmup < 0:
        raise ValueError(f"kl_warmup must be a non-negative integer (iterations), got {kl_warmup!r}.")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs checkpoint=PATH (the file to resume from).")
    if not bool(model.scales_set):
        model.set_scales(data, inputs, t0)
    dtype = model.obs_loc.dtype
    data = data.to(dtype=dtype)
    settings = settings or SolveSettings()
    rng = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    history: list[dict[str, float]] = []
    order: list[int] = []
    start = 0
    best: tuple[float, int, dict[str, Tensor]] | None = None
    path = Path(checkpoint) if checkpoint is not None else None
    if resume and path is not None and path.exists():
        state = load_checkpoint(path)
        extra = state.get("extra", {})
        if extra.get("kind") != "latent_hybrid" or extra.get("data_digest") != data.digest():
            raise ValueError(
                f"checkpoint {str(path)!r} belongs to another run (not a latent-hybrid fit of this data); pass another "
                "path to start afresh."
            )
        model.load_state_dict(state["model"]["model"])
        opt.load_state_dict(state["optimizer"]["model"])
        rng.set_state(state["rng"]["generator"])
        history = [{k: v for k, v in h.items() if k != "epoch"} for h in state["history"]]
        start = len(history)
        order = [int(i) for i in extra["order"]]
        if extra.get("best_iteration"):
            best = (float(extra["best_value"]), int(extra["best_iteration"]), state["model"]["best"])

    def score() -> float:
        assert validation is not None
        vdata, vin = validation
        with torch.no_grad():
            was = model.inference
            model.inference = "point"  # the posterior mean, no sampling
            try:
                _, stats = model.loss(vdata.to(dtype=dtype), vin, until=until, t0=t0, settings=settings)
            finally:
                model.inference = was
        return stats["nll"]

    def write() -> None:
        assert path is not None
        extra: dict[str, Any] = {"kind": "latent_hybrid", "data_digest": data.digest(), "order": order}
        models = {"model": model.state_dict()}
        if best is not None:
            extra.update(best_value=best[0], best_iteration=best[1])
            models["best"] = best[2]
        save_checkpoint(
            path,
            {
                "epoch": len(history),
                "model": models,
                "learnables": {},
                "optimizer": {"model": opt.state_dict()},
                "rng": {"generator": rng.get_state(), "torch": torch.get_rng_state()},
                "history": [{**h, "epoch": i + 1} for i, h in enumerate(history)],
                "run": {"kind": "latent_hybrid", "iterations": iterations},
                "extra": extra,
            },
        )

    n = data.n_trajectories
    bs = min(batch_size, n)
    t_start = time.perf_counter()
    bar = tqdm(range(start, iterations), initial=start, total=iterations, disable=not progress, desc="LHM", leave=False)
    for it in bar:
        if len(order) < bs:
            order = torch.randperm(n, generator=rng).tolist()
        idx, order = order[:bs], order[bs:]
        batch = data[idx]
        bin_ = inputs[idx] if inputs is not None else None  # type: ignore[index]
        model.train()
        beta = min(1.0, (it + 1) / kl_warmup) if kl_warmup else 1.0
        loss, stats = model.loss(batch, bin_, until=until, t0=t0, settings=settings, generator=rng, kl_weight=beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        entry = {"iteration": float(it + 1), **stats, "wall_time": time.perf_counter() - t_start}
        if validation is not None and ((it + 1) % validate_every == 0 or it + 1 == iterations):
            val = score()
            entry["validation"] = val
            if best is None or val < best[0]:
                best = (val, it + 1, copy.deepcopy(model.state_dict()))
        history.append(entry)
        if progress:
            bar.set_postfix({"loss": f"{stats['loss']:.4g}"})
        if callback is not None:
            callback(it + 1, entry)
        if path is not None and ((it + 1) % checkpoint_every == 0 or it + 1 == iterations):
            write()
    bar.close()
    ran = iterations - start
    if best is not None:
        model.load_state_dict(best[2])
    model.eval()
    return LatentFit(
        model=model,
        history=history,
        seconds_per_iteration=(time.perf_counter() - t_start) / ran if ran else math.nan,
        best_iteration=best[1] if best is not None else iterations,
    )
