"""SDE-GANs: a neural SDE generator trained against a neural-CDE discriminator (Wasserstein loss).

Following Kidger, Foster, Li and Lyons (2021), "Efficient and Accurate Gradients for Neural SDEs":

- the generator is a neural SDE ``dY = μ(t, Y) dt + σ(t, Y) ∘ dW`` (optionally ``μ = physics + network``),
  solved with the reversible Heun method and differentiated with its exact algebraic adjoint through
  torchsde's Brownian Interval (:func:`physnode.sde.sdeint`);
- the discriminator is a neural controlled differential equation ``dH = f(H) dX`` driven by the path
  ``X = (t, Y)`` (time is a channel, so irregular sampling is seen by the discriminator), with score
  ``m · H_T``;
- the discriminator is kept Lipschitz by **weight clipping** of every linear layer to ``±1 / out_features``
  and the **LipSwish** activation (``0.909 · silu``) instead of a gradient penalty (which needs a double
  backward through the discriminator).

The CDE is solved here by one Heun step per observation interval of the piecewise-linear path (its increments
are constant on an interval, ``dH/ds = f(H) ΔX`` for ``s`` in ``[0, 1]``), directly differentiated: this
discrete scheme *is* the discriminator, so no torchcde/torchdiffeq dependency is needed and the gradient
penalty baseline is exact (no adjoint truncation error).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..data.trajectories import Trajectories
from ._training import Batch, Run, check_trajectories, make_batch, model_seed, resolve_resume, train
from .sdeint import GRADS, METHODS, sdeint

__all__ = [
    "LIPSCHITZ",
    "CDEDiscriminator",
    "LipSwish",
    "SDEGANResult",
    "SDEGenerator",
    "clip_lipschitz_",
    "fit_sde_gan",
    "gradient_penalty",
    "mlp",
]

#: ``lipschitz=`` choices of :func:`fit_sde_gan`: weight clipping (the seed paper's method) or the WGAN-GP
#: gradient penalty ``λ E[(|∇_Y D(Ŷ)|₂ − 1)²]`` at random interpolates of real and generated paths.
LIPSCHITZ: tuple[str, ...] = ("clip", "gradient_penalty")

#: LipSwish scale: ``max_x d/dx silu(x) ≈ 1.0998``, so ``0.909 · silu`` has slope at most ``0.9998 < 1``.
LIPSWISH_SCALE = 0.909


class LipSwish(nn.Module):
    """``LipSwish(x) = 0.909 · x · sigmoid(x)``: a smooth, 1-Lipschitz activation (elementwise)."""

    def forward(self, x: Tensor) -> Tensor:
        return LIPSWISH_SCALE * nn.functional.silu(x)


def mlp(in_dim: int, out_dim: int, width: int, depth: int, final_tanh: bool) -> nn.Sequential:
    """``depth`` hidden layers of ``width`` units with :class:`LipSwish`, a linear output, optionally ``tanh``.

    Parameters
    ----------
    in_dim, out_dim
        Input and output sizes.
    width
        Hidden units per layer.
    depth
        Number of hidden layers (``>= 0``; 0 is a single linear layer).
    final_tanh
        Apply ``tanh`` to the output (bounded vector fields, as in the seed paper).
    """
    for name, v, lo in (("in_dim", in_dim, 1), ("out_dim", out_dim, 1), ("width", width, 1), ("depth", depth, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ValueError(f"{name} must be an int >= {lo}, got {v!r}.")
    layers: list[nn.Module] = []
    size = in_dim
    for _ in range(depth):
        layers += [nn.Linear(size, width), LipSwish()]
        size = width
    layers.append(nn.Linear(size, out_dim))
    if final_tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


@torch.no_grad()
def clip_lipschitz_(module: nn.Module) -> nn.Module:
    """Clip every ``nn.Linear`` weight of ``module`` to ``[−1/out_features, 1/out_features]``, in place.

    A clipped ``W`` (``out × in``) has columns of absolute sum at most 1, i.e. ``‖W‖_{1→1} ≤ 1``: each layer,
    and hence (with the elementwise 1-Lipschitz LipSwish and tanh) every clipped MLP, is 1-Lipschitz in the
    ℓ¹ norm. Biases are not clipped (they do not change Lipschitz constants).

    Returns
    -------
    nn.Module
        ``module`` itself.
    """
    for m in module.modules():
        if isinstance(m, nn.Linear):
            lim = 1.0 / m.out_features
            m.weight.clamp_(-lim, lim)
    return module


def _int(name: str, v: object, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < lo:
        raise ValueError(f"{name} must be an int >= {lo}, got {v!r}.")
    return v


def _pos(name: str, v: object) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {v!r}.")
    return float(v)


class _GeneratorDrift(nn.Module):
    """``μ(t, y) = physics(t, y) + drift_scale · tanh(MLP(t, y))``; ``t``: ``(B,)``, ``y``: ``(B, S)``."""

    def __init__(self, state_dim: int, width: int, depth: int, scale: float, physics: nn.Module | None) -> None:
        super().__init__()
        self.net = mlp(1 + state_dim, state_dim, width, depth, final_tanh=True)
        self.scale = scale
        self.physics = physics

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.scale * self.net(torch.cat([t.unsqueeze(-1).to(y.dtype), y], dim=-1))
        if self.physics is not None:
            out = out + self.physics(t, y)
        return out


class _GeneratorDiffusion(nn.Module):
    """``σ(t, y) = diffusion_scale · tanh(MLP(t, y))`` reshaped to ``(B, S, m)`` (general noise)."""

    noise = "general"

    def __init__(self, state_dim: int, noise_dim: int, width: int, depth: int, scale: float) -> None:
        super().__init__()
        self.net = mlp(1 + state_dim, state_dim * noise_dim, width, depth, final_tanh=True)
        self.shape = (state_dim, noise_dim)
        self.scale = scale

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        out = self.scale * self.net(torch.cat([t.unsqueeze(-1).to(y.dtype), y], dim=-1))
        return out.unflatten(-1, self.shape)


class SDEGenerator(nn.Module):
    """Neural SDE generator of paths: ``dY = μ(t, Y) dt + σ(t, Y) ∘ dW``, observed channels ``Y[..., :D]``.

    Parameters
    ----------
    data_dim
        Number ``D`` of observed channels.
    hidden_dim
        Extra unobserved state channels (state size ``S = D + hidden_dim``); 0 by default.
    noise_dim
        Number ``m`` of Brownian motions (default ``S``); the diffusion is a general ``(S, m)`` matrix.
    width, depth
        Hidden width and number of hidden layers of the drift, diffusion and initial networks.
    initial
        ``"learned"``: ``Y_0 = ζ(V)`` with ``V ~ N(0, I)`` of size ``initial_noise_dim`` and an MLP ``ζ`` (a
        generative model of the initial distribution too); ``"data"``: ``Y_0`` is given (the observed initial
        state, hidden channels 0), i.e. a model of the paths conditioned on their start.
    initial_noise_dim
        Size of ``V`` (default ``S``).
    drift_scale, diffusion_scale
        Bounds of the neural drift and diffusion (their networks end in ``tanh``), in units of the channels per
        unit time and per square-root time; choose them to match the scale of the data.
    physics
        Known drift ``physics(t, y) -> (B, S)`` as an ``nn.Module`` (e.g. a
        :class:`~physnode.physics.SymbolicODE` with ``S`` states); the network learns the residual. It is not
        stored in :attr:`config`: pass it again to :func:`~physnode.sde.load_model`.

    Notes
    -----
    Call :meth:`initial_state` then :meth:`solve`, or :meth:`sample` for observed channels in one go.
    """

    def __init__(
        self,
        data_dim: int,
        *,
        hidden_dim: int = 0,
        noise_dim: int | None = None,
        width: int = 32,
        depth: int = 1,
        initial: str = "learned",
        initial_noise_dim: int | None = None,
        drift_scale: float = 1.0,
        diffusion_scale: float = 1.0,
        physics: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.data_dim = _int("data_dim", data_dim, 1)
        self.hidden_dim = _int("hidden_dim", hidden_dim, 0)
        self.state_dim = self.data_dim + self.hidden_dim
        self.noise_dim = _int("noise_dim", self.state_dim if noise_dim is None else noise_dim, 1)
        if initial not in ("learned", "data"):
            raise ValueError(f"initial must be 'learned' or 'data', got {initial!r}.")
        self.initial = initial
        self.initial_noise_dim = _int(
            "initial_noise_dim", self.state_dim if initial_noise_dim is None else initial_noise_dim, 1
        )
        if physics is not None and not isinstance(physics, nn.Module):
            raise TypeError(
                f"physics must be an nn.Module (its parameters are trained and found by the adjoint), got "
                f"{type(physics).__name__}; wrap a function in an nn.Module."
            )
        self.width, self.depth = _int("width", width, 1), _int("depth", depth, 0)
        self.drift_scale, self.diffusion_scale = (
            _pos("drift_scale", drift_scale),
            _pos("diffusion_scale", diffusion_scale),
        )
        self.drift = _GeneratorDrift(self.state_dim, width, depth, self.drift_scale, physics)
        self.diffusion = _GeneratorDiffusion(self.state_dim, self.noise_dim, width, depth, self.diffusion_scale)
        self.initial_net = (
            mlp(self.initial_noise_dim, self.state_dim, width, depth, False) if initial == "learned" else None
        )

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain values (``physics`` excepted): ``SDEGenerator(**config)`` rebuilds it."""
        return {
            "data_dim": self.data_dim,
            "hidden_dim": self.hidden_dim,
            "noise_dim": self.noise_dim,
            "width": self.width,
            "depth": self.depth,
            "initial": self.initial,
            "initial_noise_dim": self.initial_noise_dim,
            "drift_scale": self.drift_scale,
            "diffusion_scale": self.diffusion_scale,
        }

    def _ref(self) -> Tensor:
        return next(self.parameters())

    def initial_state(
        self, n: int | None = None, *, y0: Tensor | None = None, generator: torch.Generator | None = None
    ) -> Tensor:
        """Initial states ``(n, S)``.

        Parameters
        ----------
        n
            Number of paths (``initial="learned"``; taken from ``y0`` otherwise).
        y0
            Observed initial states ``(n, D)`` (``initial="data"``; hidden channels start at 0).
        generator
            Source of the initial noise ``V`` (default: torch's global generator).
        """
        ref = self._ref()
        if self.initial == "data":
            if not isinstance(y0, Tensor) or y0.ndim != 2 or y0.shape[1] != self.data_dim:
                got = tuple(y0.shape) if isinstance(y0, Tensor) else type(y0).__name__
                raise ValueError(
                    f"initial='data' needs y0 of shape (n, {self.data_dim}) (the observed initial states), got {got}."
                )
            y0 = y0.to(ref)
            return torch.cat([y0, y0.new_zeros(y0.shape[0], self.hidden_dim)], dim=-1)
        if y0 is not None:
            raise ValueError(
                "initial='learned' draws its own initial states; do not pass y0 (or build with initial='data')."
            )
        n = _int("n", n, 1)
        v = torch.randn(n, self.initial_noise_dim, generator=generator, dtype=ref.dtype, device="cpu")
        return self.initial_net(v.to(ref.device))

    def solve(
        self,
        t: Tensor,
        y0: Tensor,
        *,
        dt: float,
        seed: int | None = None,
        method: str = "reversible_heun",
        grad: str = "adjoint_reversible_heun",
    ) -> Tensor:
        """Full states ``(n, T, S)`` at the times ``t`` ``(T,)`` from initial states ``y0`` ``(n, S)``.

        ``dt``, ``seed``, ``method`` and ``grad`` are those of :func:`~physnode.sde.sdeint` (general noise with
        ``noise_dim`` Brownian motions).
        """
        return sdeint(self.drift, self.diffusion, y0, t, dt=dt, seed=seed, method=method, grad=grad, noise="general")

    def sample(
        self,
        t: Tensor,
        n: int | None = None,
        *,
        dt: float,
        seed: int | None = None,
        y0: Tensor | None = None,
        method: str = "reversible_heun",
        grad: str = "direct",
    ) -> Tensor:
        """Observed channels ``(n, T, D)`` of ``n`` generated paths at the times ``t`` ``(T,)``.

        ``seed`` fixes both the initial noise and the Brownian sample.
        """
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        state0 = self.initial_state(n, y0=y0, generator=g)
        ys = self.solve(t.to(state0), state0, dt=dt, seed=seed, method=method, grad=grad)
        return ys[..., : self.data_dim]


class CDEDiscriminator(nn.Module):
    """Neural-CDE discriminator ``D(X) = m · H_T``, ``H_0 = ξ(X_0)``, ``dH = f(H) dX`` with ``X = (t, Y)``.

    ``ξ`` and ``f`` are :func:`mlp`\\ s with LipSwish (``f`` ends in ``tanh``), ``m`` a linear readout. The CDE is
    solved with one Heun step per observation interval of the piecewise-linear path:
    ``H̃ = H_k + f(H_k) ΔX_k``, ``H_{k+1} = H_k + ½ (f(H_k) + f(H̃)) ΔX_k``; padded times (shorter trajectories)
    have ``ΔX = 0``.

    Parameters
    ----------
    data_dim
        Number ``D`` of path channels (the time channel is added).
    hidden_dim
        Size ``H`` of the CDE state.
    width, depth
        Hidden width and number of hidden layers of ``ξ`` and ``f``.
    """

    def __init__(self, data_dim: int, *, hidden_dim: int = 16, width: int = 32, depth: int = 1) -> None:
        super().__init__()
        self.data_dim = _int("data_dim", data_dim, 1)
        self.hidden_dim = _int("hidden_dim", hidden_dim, 1)
        self.width, self.depth = _int("width", width, 1), _int("depth", depth, 0)
        C = self.data_dim + 1
        self.initial = mlp(C, self.hidden_dim, width, depth, final_tanh=False)
        self.field = mlp(self.hidden_dim, self.hidden_dim * C, width, depth, final_tanh=True)
        self.readout = nn.Linear(self.hidden_dim, 1)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments: ``CDEDiscriminator(**config)`` rebuilds it."""
        return {"data_dim": self.data_dim, "hidden_dim": self.hidden_dim, "width": self.width, "depth": self.depth}

    def forward(self, times: Tensor, values: Tensor, valid: Tensor | None = None) -> Tensor:
        """Scores ``(B,)`` of paths.

        Parameters
        ----------
        times
            ``(B, T)`` or ``(T,)`` observation times.
        values
            ``(B, T, D)`` fully filled path values (fill missing entries first, e.g. forward).
        valid
            ``(B, T)`` bool, the valid (non-padded) times of each path; default all.
        """
        if values.ndim != 3 or values.shape[-1] != self.data_dim:
            raise ValueError(f"values must have shape (B, T, {self.data_dim}), got {tuple(values.shape)}.")
        B, T, _ = values.shape
        times = times.to(values).expand(B, T)
        X = torch.cat([times.unsqueeze(-1), values], dim=-1)  # (B, T, C)
        dX = X.diff(dim=1)
        if valid is not None:
            dX = dX * valid[:, 1:].unsqueeze(-1).to(dX.dtype)
        H, C = self.hidden_dim, X.shape[-1]
        h = self.initial(X[:, 0])
        for k in range(T - 1):
            d = dX[:, k].unsqueeze(-1)  # (B, C, 1)
            f1 = (self.field(h).view(B, H, C) @ d).squeeze(-1)
            f2 = (self.field(h + f1).view(B, H, C) @ d).squeeze(-1)
            h = h + 0.5 * (f1 + f2)
        return self.readout(h).squeeze(-1)


def gradient_penalty(
    discriminator: CDEDiscriminator,
    times: Tensor,
    real: Tensor,
    fake: Tensor,
    valid: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """WGAN-GP penalty ``E[(|∇_Y D(Ŷ)|₂ − 1)²]`` at ``Ŷ = ε Y_real + (1 − ε) Y_fake``, ``ε ~ U[0, 1]`` per path.

    Needs a double backward through the discriminator (``create_graph=True``). ``real`` and ``fake``: ``(B, T, D)``
    (``fake`` detached from the generator). Returns a 0-d tensor.
    """
    eps = torch.rand(real.shape[0], 1, 1, generator=generator, dtype=real.dtype).to(real.device)
    mix = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    (g,) = torch.autograd.grad(discriminator(times, mix, valid).sum(), mix, create_graph=True)
    return (g.flatten(1).norm(dim=1) - 1).square().mean()


@dataclass
class SDEGANResult:
    """Outcome of :func:`fit_sde_gan`.

    Attributes
    ----------
    history
        One dict per iteration: ``iteration`` (1-based), ``wasserstein`` (the critic's estimate
        ``mean D(real) − mean D(generated)`` on the batch), ``penalty`` (gradient penalty, 0 when clipping) and
        ``wall_time`` (seconds since the start of this call).
    seconds_per_iteration
        Mean wall time of the iterations run by this call (``nan`` when none ran).
    """

    history: list[dict[str, float]] = field(default_factory=list)
    seconds_per_iteration: float = math.nan


def _initial_observations(batch: Batch, data_dim: int) -> Tensor:
    """The observed states at the common initial time (``initial='data'``); clear errors otherwise."""
    if not bool((batch.times[:, 0] == batch.grid[0]).all()) or not bool(batch.mask[:, 0].all()):
        raise ValueError(
            "initial='data' needs every trajectory observed in all channels at a common first time (the initial "
            "state); the data has a trajectory whose first time differs or whose first values are masked. Use "
            "SDEGenerator(..., initial='learned') for data without a common observed start."
        )
    return batch.values[:, 0]


class _WeightAverage:
    """Running mean of a module's parameters over the iterations from ``start`` on (1-based; ``None``: never)."""

    def __init__(self, module: nn.Module, start: int | None) -> None:
        self.module, self.start = module, start
        self.mean = [p.detach().clone() for p in module.parameters()]
        self.count = 0

    @torch.no_grad()
    def update(self, iteration: int) -> None:
        """Add the parameters after ``iteration`` (1-based) to the mean, from ``start`` on."""
        if self.start is not None and iteration >= self.start:
            self.count += 1
            for a, p in zip(self.mean, self.module.parameters(), strict=True):
                a.add_((p - a) / self.count)

    def state(self) -> dict[str, Any]:
        """The checkpoint entries of the average."""
        return {"averaged": self.mean, "n_averaged": self.count}

    def load(self, extra: Mapping[str, Any]) -> None:
        """Restore the average from a checkpoint's entries (:meth:`state`)."""
        self.mean = [a.to(p) for a, p in zip(extra["averaged"], self.module.parameters(), strict=True)]
        self.count = int(extra["n_averaged"])

    @torch.no_grad()
    def apply(self) -> None:
        """Replace the module's parameters by their mean (nothing if no iteration was averaged)."""
        if self.count:
            for a, p in zip(self.mean, self.module.parameters(), strict=True):
                p.copy_(a)


def _check_common(
    iterations: int, batch_size: int | None, method: str, grad: str, seed: int, n: int
) -> tuple[int, int]:
    iterations = _int("iterations", iterations, 1)
    bs = n if batch_size is None else _int("batch_size", batch_size, 1)
    if method not in METHODS:
        raise ValueError(f"unknown method={method!r}; choose one of {', '.join(map(repr, METHODS))}.")
    if grad not in GRADS:
        raise ValueError(f"unknown grad={grad!r}; choose one of {', '.join(map(repr, GRADS))}.")
    _int("seed", seed, 0)
    return iterations, min(bs, n)


def fit_sde_gan(
    generator: SDEGenerator,
    discriminator: CDEDiscriminator,
    data: Trajectories,
    *,
    dt: float,
    iterations: int = 500,
    batch_size: int | None = 64,
    lr_generator: float = 5e-4,
    lr_discriminator: float = 2e-3,
    lipschitz: str = "clip",
    penalty_weight: float = 10.0,
    average_from: int | None = None,
    method: str = "reversible_heun",
    grad: str = "adjoint_reversible_heun",
    device: torch.device | str | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    progress: bool = True,
    seed: int = 0,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> SDEGANResult:
    """Train an SDE-GAN (Wasserstein loss) on irregularly sampled, masked trajectories (in place).

    Each iteration draws ``batch_size`` trajectories, generates as many paths at the batch's observation times
    (one SDE solve on the union of the batch's times), masks and forward-fills them exactly like the data, and
    takes one Adam step of both networks on ``L = mean D(generated) − mean D(real)`` (+ ``penalty_weight ·``
    :func:`gradient_penalty` with ``lipschitz="gradient_penalty"``): the discriminator descends ``L``, the
    generator ascends it (one backward pass; the generator's gradients are negated). With ``lipschitz="clip"``
    the discriminator's weights are clipped after each step (:func:`clip_lipschitz_`).

    Parameters
    ----------
    generator, discriminator
        The networks (trained in place). With ``generator.initial == "data"`` every trajectory must be fully
        observed at a common first time.
    data
        :class:`~physnode.data.Trajectories` ``(N, T, D)``, per-trajectory times and masks.
    dt
        SDE step size (time units). With ``grad="adjoint_reversible_heun"`` every observation time must lie on
        the lattice ``t0 + k dt`` (``t0`` the earliest time of the data).
    iterations
        Optimiser steps.
    batch_size
        Trajectories per step (``None``: all); drawn without replacement, reshuffled every pass.
    lr_generator, lr_discriminator
        Adam learning rates (``betas = (0.5, 0.9)``).
    lipschitz
        ``"clip"`` (default) or ``"gradient_penalty"``; see :data:`LIPSCHITZ`.
    penalty_weight
        ``λ`` of the gradient penalty.
    average_from
        Stochastic weight averaging of the generator, as in the seed paper: the running mean of the generator's
        parameters over iterations ``average_from, ..., iterations`` (1-based) replaces its weights at the end.
        Adversarial training oscillates; the average is a much steadier model. ``None``: keep the last weights.
    method, grad
        SDE solver and gradient of :func:`~physnode.sde.sdeint` for the generator.
    device
        Move the networks and data there.
    checkpoint, resume
        A path, ``{"path": ..., "every": n}`` or :class:`~physnode.fit.Checkpoint` (written atomically, read with
        ``weights_only=True``); with ``resume=True`` an existing checkpoint is loaded and training continues
        (the result equals an uninterrupted run: all randomness comes from ``seed`` and saved states).
    progress
        Show a tqdm bar with the Wasserstein estimate.
    seed
        Seed of the batches, initial noise, Brownian samples and interpolates.
    callback
        Called as ``callback(iteration, entry)`` after each step with the history entry.

    Returns
    -------
    SDEGANResult
    """
    if not isinstance(generator, SDEGenerator) or not isinstance(discriminator, CDEDiscriminator):
        raise TypeError(
            f"fit_sde_gan needs an SDEGenerator and a CDEDiscriminator, got {type(generator).__name__} and "
            f"{type(discriminator).__name__}."
        )
    data = check_trajectories(data, generator.data_dim, "fit_sde_gan")
    if discriminator.data_dim != generator.data_dim:
        raise ValueError(
            f"the discriminator reads {discriminator.data_dim} channels but the generator makes "
            f"{generator.data_dim}; build both with data_dim={data.n_channels}."
        )
    if lipschitz not in LIPSCHITZ:
        raise ValueError(f"unknown lipschitz={lipschitz!r}; choose one of {', '.join(map(repr, LIPSCHITZ))}.")
    iterations, bs = _check_common(iterations, batch_size, method, grad, seed, data.n_trajectories)
    lr_g, lr_d, lam = _pos("lr_generator", lr_generator), _pos("lr_discriminator", lr_discriminator), 0.0
    if lipschitz == "gradient_penalty":
        lam = _pos("penalty_weight", penalty_weight)
    if average_from is not None:
        average_from = _int("average_from", average_from, 1)
        if average_from > iterations:
            raise ValueError(f"average_from = {average_from} is after the last iteration ({iterations}).")
    ckpt = resolve_resume(checkpoint, resume)
    if device is not None:
        generator.to(device)
        discriminator.to(device)
        data = data.to(device)
    ref = next(generator.parameters())
    data = data.to(dtype=ref.dtype)
    discriminator.to(dtype=ref.dtype)
    t0 = float(data.times[data.time_mask].min())

    opt_g = torch.optim.Adam(generator.parameters(), lr=lr_g, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr_d, betas=(0.5, 0.9))
    rng = torch.Generator().manual_seed(seed)
    if lipschitz == "clip":
        clip_lipschitz_(discriminator)
    run = Run(
        nets={"generator": generator, "discriminator": discriminator},
        opts={"generator": opt_g, "discriminator": opt_d},
        rng=rng,
        data=data,
        iterations=iterations,
        info={"kind": "sde_gan", "lipschitz": lipschitz, "method": method, "grad": grad, "average": str(average_from)},
    )
    average = _WeightAverage(generator, average_from)

    def step(it: int, idx: list[int]) -> dict[str, float]:
        batch = make_batch(data[idx], t0)
        y0 = _initial_observations(batch, generator.data_dim) if generator.initial == "data" else None
        state0 = generator.initial_state(bs, y0=y0, generator=rng)
        ys = generator.solve(batch.grid, state0, dt=dt, seed=model_seed(seed, it), method=method, grad=grad)
        fake = batch.observe(batch.gather(ys[..., : generator.data_dim]))
        real_score = discriminator(batch.times, batch.values, batch.valid).mean()
        fake_score = discriminator(batch.times, fake, batch.valid).mean()
        loss = fake_score - real_score
        pen = torch.zeros((), dtype=loss.dtype, device=loss.device)
        if lam:
            pen = gradient_penalty(discriminator, batch.times, batch.values, fake, batch.valid, generator=rng)
            loss = loss + lam * pen
        opt_g.zero_grad()
        opt_d.zero_grad()
        loss.backward()
        for p in generator.parameters():
            if p.grad is not None:
                p.grad.neg_()
        opt_g.step()
        opt_d.step()
        if lipschitz == "clip":
            clip_lipschitz_(discriminator)
        average.update(it + 1)
        return {"wasserstein": float(real_score.detach() - fake_score.detach()), "penalty": float(pen.detach())}

    history, secs = train(
        run,
        step,
        batch_size=bs,
        checkpoint=ckpt,
        resume=resume,
        progress=progress,
        desc="sde-gan",
        postfix=("w", "wasserstein"),
        callback=callback,
        save=average.state,
        load=average.load,
    )
    average.apply()
    return SDEGANResult(history=history, seconds_per_iteration=secs)
