"""Latent SDEs: variational training of a neural SDE on irregular, masked observations.

The model (Li, Wong, Chen and Duvenaud 2020, "Scalable Gradients for Stochastic Differential Equations"; the
training used by Kidger et al. 2021 next to SDE-GANs) has a latent state ``Z`` in ``R^L``:

- prior: ``Z_0 ~ N(m_0, diag s_0²)``, ``dZ = h(t, Z) dt + σ ∘ dW``;
- posterior: ``Z_0 ~ N(μ_φ, diag σ_φ²)``, ``dZ = f(t, Z, c(t)) dt + σ ∘ dW``, with a context ``c(t)`` from a GRU
  run backwards in time over the observed path (so ``c(t)`` summarises the observations at and after ``t``);
- decoder: ``Y_{t_i} ~ N(W Z_{t_i} + b, diag ρ²)`` on the observed entries only (the mask).

The same diffusion ``σ`` (additive, diagonal, learnable) in prior and posterior makes the path KL finite
(Girsanov): ``KL = E ∫ ½ |u_t|² dt`` with ``u = (f − h) / σ``; it is integrated as an extra state channel of
the posterior SDE. The ELBO per trajectory is

``E_q[ Σ_i log N(y_i | decode(Z_{t_i}), ρ²) ] − KL(q(Z_0) ‖ p(Z_0)) − E_q ∫ ½ |u_t|² dt``,

estimated with one posterior sample per trajectory (reparameterised), solved with the reversible Heun method
and its exact adjoint by default.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories
from ._training import Batch, Run, check_trajectories, make_batch, model_seed, resolve_resume, train
from .diffusion import DiagonalDiffusion, LogPositive
from .gan import _check_common, _int, _pos, mlp
from .sdeint import sdeint

__all__ = ["LatentSDE", "LatentSDEResult", "fit_latent_sde"]


class _PriorDrift(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.net(torch.cat([t.unsqueeze(-1).to(z.dtype), z], dim=-1))


class _AugmentedDrift(nn.Module):
    """Posterior drift and the KL integrand on ``[Z, KL]`` (``(B, L + 1)``); context looked up per trajectory."""

    def __init__(self, post: nn.Module, prior: nn.Module, diffusion: nn.Module, ctx: Tensor, times: Tensor) -> None:
        super().__init__()
        self.post, self.prior, self.diffusion = post, prior, diffusion
        self.ctx = ctx  # (B, T, C), differentiated through params=
        self.times = times.contiguous()  # (B, T), non-decreasing (padding repeats the last time)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        z = y[..., :-1]
        i = torch.searchsorted(self.times, t.reshape(-1, 1).to(self.times.dtype).contiguous()).clamp(
            max=self.times.shape[1] - 1
        )
        c = self.ctx.gather(1, i.unsqueeze(-1).expand(-1, -1, self.ctx.shape[-1])).squeeze(1)
        tz = torch.cat([t.unsqueeze(-1).to(z.dtype), z], dim=-1)
        f = self.post(torch.cat([tz, c], dim=-1))
        h = self.prior.net(tz)
        u = (f - h) / self.diffusion(t, z)
        return torch.cat([f, 0.5 * u.square().sum(-1, keepdim=True)], dim=-1)


class _AugmentedDiffusion(nn.Module):
    noise = "diagonal"

    def __init__(self, diffusion: nn.Module) -> None:
        super().__init__()
        self.diffusion = diffusion

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        g = self.diffusion(t, y[..., :-1])
        return torch.cat([g, torch.zeros_like(y[..., -1:])], dim=-1)


class LatentSDE(nn.Module):
    """Latent neural SDE with a GRU encoder, trained by :func:`fit_latent_sde` (module docstring).

    Parameters
    ----------
    data_dim
        Number ``D`` of observed channels.
    latent_dim
        Size ``L`` of the latent state.
    context_dim
        Size ``C`` of the GRU context.
    width, depth
        Hidden width and number of hidden layers (LipSwish) of the prior and posterior drifts.
    sigma
        Initial latent diffusion (per square-root time), learnable, the same for all ``L`` channels.
    noise_std
        Initial observation noise ``ρ`` (units of the channels), learnable per channel.
    """

    def __init__(
        self,
        data_dim: int,
        *,
        latent_dim: int = 4,
        context_dim: int = 16,
        width: int = 32,
        depth: int = 1,
        sigma: float = 0.3,
        noise_std: float = 0.1,
    ) -> None:
        super().__init__()
        self.data_dim = _int("data_dim", data_dim, 1)
        self.latent_dim = _int("latent_dim", latent_dim, 1)
        self.context_dim = _int("context_dim", context_dim, 1)
        self.width, self.depth = _int("width", width, 1), _int("depth", depth, 0)
        self.sigma0, self.noise_std0 = _pos("sigma", sigma), _pos("noise_std", noise_std)
        L, C, D = self.latent_dim, self.context_dim, self.data_dim
        self.encoder = nn.GRU(2 * D + 1, C, batch_first=True)
        self.qz0 = nn.Linear(C, 2 * L)
        self.pz0_mean = nn.Parameter(torch.zeros(L))
        self.pz0_logstd = nn.Parameter(torch.zeros(L))
        self.prior_drift = _PriorDrift(mlp(1 + L, L, width, depth, final_tanh=False))
        self.post_drift = mlp(1 + L + C, L, width, depth, final_tanh=False)
        self.diffusion = DiagonalDiffusion([sigma] * L)
        self.decoder = nn.Linear(L, D)
        self.obs_noise = LogPositive([noise_std] * D)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain values: ``LatentSDE(**config)`` rebuilds it."""
        return {
            "data_dim": self.data_dim,
            "latent_dim": self.latent_dim,
            "context_dim": self.context_dim,
            "width": self.width,
            "depth": self.depth,
            "sigma": self.sigma0,
            "noise_std": self.noise_std0,
        }

    def _ref(self) -> Tensor:
        return self.pz0_mean

    def encode(self, batch: Batch) -> Tensor:
        """Context ``(B, T, C)``: a GRU over each trajectory's valid observations in reverse time order.

        Input per time: the filled values times the mask, the mask, and the time to the next observation.
        """
        valid, times = batch.valid, batch.times
        B, T = valid.shape
        lengths = valid.sum(1)
        k = torch.arange(T, device=valid.device).expand(B, T)
        rev = torch.where(valid, lengths.unsqueeze(1) - 1 - k, k)  # reverse the valid part, keep the padding
        m = batch.mask.to(batch.values.dtype)
        gap = torch.cat([times.diff(dim=1), torch.zeros_like(times[:, :1])], dim=1)
        x = torch.cat([batch.values * m, m, gap.unsqueeze(-1)], dim=-1)
        x_rev = x.gather(1, rev.unsqueeze(-1).expand_as(x))
        out, _ = self.encoder(x_rev)
        return out.gather(1, rev.unsqueeze(-1).expand(-1, -1, out.shape[-1]))

    def elbo(
        self,
        batch: Batch,
        *,
        dt: float,
        seed: int,
        generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
        method: str = "reversible_heun",
        grad: str = "adjoint_reversible_heun",
    ) -> tuple[Tensor, dict[str, float]]:
        """Per-trajectory ELBO ``(B,)`` of a batch (one reparameterised posterior sample) and its parts.

        Returns
        -------
        elbo, parts
            ``elbo``: log-likelihood − ``kl_weight`` · (KL of ``Z_0`` + path KL), in nats; ``parts``: the batch
            sums ``log_likelihood``, ``kl`` (both KL terms) and ``n_observed``.
        """
        ref = self._ref()
        ctx = self.encode(batch)
        q = self.qz0(ctx[:, 0])
        qm, qlogs = q[:, : self.latent_dim], q[:, self.latent_dim :]
        eps = torch.randn(qm.shape, generator=generator, dtype=ref.dtype).to(ref.device)
        z0 = qm + qlogs.exp() * eps
        pm, plogs = self.pz0_mean, self.pz0_logstd
        kl0 = (plogs - qlogs + ((qlogs.exp().square() + (qm - pm).square()) / (2 * (2 * plogs).exp())) - 0.5).sum(-1)
        drift = _AugmentedDrift(self.post_drift, self.prior_drift, self.diffusion, ctx, batch.times)
        y0 = torch.cat([z0, z0.new_zeros(z0.shape[0], 1)], dim=-1)
        ys = sdeint(
            drift,
            _AugmentedDiffusion(self.diffusion),
            y0,
            batch.grid,
            dt=dt,
            seed=seed,
            method=method,
            grad=grad,
            params=[ctx],
        )
        kl_path = ys[:, -1, -1]
        z = batch.gather(ys[..., :-1])
        rho = self.obs_noise()
        logp = -0.5 * ((batch.values - self.decoder(z)) / rho).square() - rho.log() - 0.5 * math.log(2 * math.pi)
        loglik = (logp * batch.mask.to(logp.dtype)).sum((1, 2))
        kl = kl0 + kl_path
        parts = {
            "log_likelihood": float(loglik.detach().sum()),
            "kl": float(kl.detach().sum()),
            "n_observed": float(batch.mask.sum()),
        }
        return loglik - kl_weight * kl, parts

    def sample(
        self,
        t: Tensor,
        n: int,
        *,
        dt: float,
        seed: int | None = None,
        observation_noise: bool = False,
        method: str = "reversible_heun",
    ) -> Tensor:
        """``n`` paths ``(n, T, D)`` from the prior at the times ``t`` ``(T,)`` (``t[0]`` is the time of ``Z_0``).

        With ``observation_noise`` the decoder's Gaussian noise ``ρ`` is added.
        """
        ref = self._ref()
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        eps = torch.randn(_int("n", n, 1), self.latent_dim, generator=g, dtype=ref.dtype).to(ref.device)
        z0 = self.pz0_mean + self.pz0_logstd.exp() * eps
        zs = sdeint(self.prior_drift, self.diffusion, z0, t.to(ref), dt=dt, seed=seed, method=method, grad="direct")
        ys = self.decoder(zs)
        if observation_noise:
            ys = ys + self.obs_noise() * torch.randn(ys.shape, generator=g, dtype=ys.dtype).to(ys.device)
        return ys

    @torch.no_grad()
    def forecast(
        self,
        data: Trajectories,
        t: Tensor,
        n_samples: int,
        *,
        dt: float,
        seed: int = 0,
        method: str = "reversible_heun",
    ) -> Tensor:
        """Forecast samples ``(S, N, T, D)`` at future times ``t`` ``(T,)`` given each trajectory's observations.

        The posterior SDE (conditioned on the observations through the encoder) runs over the observed window up
        to the latest observation time ``t_end`` of ``data``; the prior SDE continues from there to the times
        ``t`` (``t[0] >= t_end``). No observation noise is added.
        """
        check_trajectories(data, self.data_dim, "LatentSDE.forecast")
        S = _int("n_samples", n_samples, 1)
        ref = self._ref()
        data = data.to(ref.device, ref.dtype)
        one = make_batch(data)
        batch = Batch(
            one.grid,
            *(x.repeat(S, *([1] * (x.ndim - 1))) for x in (one.index, one.times, one.values, one.mask, one.valid)),
        )
        t = t.to(ref)
        if t.ndim != 1 or float(t[0]) < float(batch.grid[-1]):
            raise ValueError(
                f"forecast times must be a 1-D tensor starting at or after the last observation time "
                f"{float(batch.grid[-1]):.10g}, got {t.tolist() if t.numel() < 8 else tuple(t.shape)}."
            )
        g = torch.Generator().manual_seed(seed)
        ctx = self.encode(batch)
        q = self.qz0(ctx[:, 0])
        z0 = q[:, : self.latent_dim] + q[:, self.latent_dim :].exp() * torch.randn(
            q.shape[0], self.latent_dim, generator=g, dtype=ref.dtype
        ).to(ref.device)
        drift = _AugmentedDrift(self.post_drift, self.prior_drift, self.diffusion, ctx, batch.times)
        y0 = torch.cat([z0, z0.new_zeros(z0.shape[0], 1)], dim=-1)
        grid = batch.grid if len(batch.grid) > 1 else torch.cat([batch.grid, batch.grid + dt])
        ys = sdeint(
            drift, _AugmentedDiffusion(self.diffusion), y0, grid, dt=dt, seed=seed, method=method, grad="direct"
        )
        z_end = ys[:, -1, :-1]
        future = torch.cat([grid[-1:], t]) if float(t[0]) > float(grid[-1]) else t
        zs = sdeint(self.prior_drift, self.diffusion, z_end, future, dt=dt, seed=seed + 1, method=method, grad="direct")
        zs = zs[:, -len(t) :]
        return self.decoder(zs).unflatten(0, (S, data.n_trajectories))


@dataclass
class LatentSDEResult:
    """Outcome of :func:`fit_latent_sde`.

    Attributes
    ----------
    history
        One dict per iteration: ``iteration``, ``elbo`` (batch ELBO per observed entry, nats), ``log_likelihood``
        and ``kl`` (per observed entry), ``kl_weight``, ``wall_time`` (seconds since the start of this call).
    seconds_per_iteration
        Mean wall time of the iterations run by this call.
    """

    history: list[dict[str, float]] = field(default_factory=list)
    seconds_per_iteration: float = math.nan


def fit_latent_sde(
    model: LatentSDE,
    data: Trajectories,
    *,
    dt: float,
    iterations: int = 500,
    batch_size: int | None = 64,
    lr: float = 1e-2,
    kl_warmup: int = 0,
    method: str = "reversible_heun",
    grad: str = "adjoint_reversible_heun",
    device: torch.device | str | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    progress: bool = True,
    seed: int = 0,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> LatentSDEResult:
    """Train a :class:`LatentSDE` by maximising the ELBO on irregular, masked trajectories (in place).

    Parameters
    ----------
    model
        The latent SDE.
    data
        :class:`~physnode.data.Trajectories` ``(N, T, D)``; only entries with ``mask`` true enter the likelihood,
        each trajectory is encoded from its own valid times.
    dt
        SDE step size (time units); with ``grad="adjoint_reversible_heun"`` every observation time must lie on
        the lattice ``t0 + k dt`` (``t0`` the earliest time of the data).
    iterations
        Adam steps.
    batch_size
        Trajectories per step (``None``: all), reshuffled every pass.
    lr
        Adam learning rate.
    kl_warmup
        Iterations over which the KL weight rises linearly from 0 to 1 (0: always 1, the true ELBO).
    method, grad
        Solver and gradient of :func:`~physnode.sde.sdeint`.
    device, checkpoint, resume, progress, seed, callback
        As for :func:`~physnode.sde.fit_sde_gan`.

    Returns
    -------
    LatentSDEResult
    """
    if not isinstance(model, LatentSDE):
        raise TypeError(f"fit_latent_sde needs a LatentSDE, got {type(model).__name__}.")
    data = check_trajectories(data, model.data_dim, "fit_latent_sde")
    iterations, bs = _check_common(iterations, batch_size, method, grad, seed, data.n_trajectories)
    lr = _pos("lr", lr)
    kl_warmup = _int("kl_warmup", kl_warmup, 0)
    ckpt = resolve_resume(checkpoint, resume)
    if device is not None:
        model.to(device)
    ref = model._ref()
    data = data.to(ref.device, ref.dtype)
    t0 = float(data.times[data.time_mask].min())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    rng = torch.Generator().manual_seed(seed)
    info = {"kind": "latent_sde", "method": method, "grad": grad}
    run = Run(nets={"model": model}, opts={"model": opt}, rng=rng, data=data, iterations=iterations, info=info)

    def step(it: int, idx: list[int]) -> dict[str, float]:
        batch = make_batch(data[idx], t0)
        w = min(1.0, (it + 1) / kl_warmup) if kl_warmup else 1.0
        elbo, parts = model.elbo(
            batch, dt=dt, seed=model_seed(seed, it), generator=rng, kl_weight=w, method=method, grad=grad
        )
        n_obs = max(parts["n_observed"], 1.0)
        loss = -elbo.sum() / n_obs
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {
            "elbo": (parts["log_likelihood"] - parts["kl"]) / n_obs,
            "log_likelihood": parts["log_likelihood"] / n_obs,
            "kl": parts["kl"] / n_obs,
            "kl_weight": w,
        }

    history, secs = train(
        run,
        step,
        batch_size=bs,
        checkpoint=ckpt,
        resume=resume,
        progress=progress,
        desc="latent-sde",
        postfix=("elbo", "elbo"),
        callback=callback,
    )
    return LatentSDEResult(history, secs)
