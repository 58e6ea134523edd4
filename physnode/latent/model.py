"""The latent hybridisation model (LHM): expert ODEs inside a latent neural ODE, with an amortised encoder.

State ``z = (z_e, z_m)``: expert states ``dz_e/dt = f_e(t, z_e, u; θ_e)`` (a physnode physics model, parameters
optionally per trajectory), latent states ``dz_m/dt = f_m(z_m, z_e, u)`` (a network); observations
``x = g(z_e, z_m) + ε`` with a masked Gaussian likelihood; the initial state and the per-trajectory parameters are
inferred by a GRU run backwards over the observed history (amortised variational inference, or a point estimate).
After Qian, Zame, Fleuren, Elbers and van der Schaar, "Integrating Expert ODEs into Neural ODEs: Pharmacology and
Disease Progression", NeurIPS 2021.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from ..data.inputs import Inputs
from ..data.trajectories import Trajectories, solver_ready_times
from .decoder import Decoder, DecoderSpec, ObservationScales, build_decoder, mlp
from .encoder import BackwardGRUEncoder
from .expert import Expert

__all__ = ["INFERENCE", "InputSeries", "LatentHybrid", "Posterior", "SolveSettings", "as_inputs"]

#: Kinds of inference of the initial state and per-trajectory parameters.
INFERENCE = ("variational", "point")


class InputSeries(Protocol):
    """What the model needs of inputs: ``u(t)`` for ``t (B,)`` -> ``(B, C)`` (read by the encoder), ``inputs[idx]``
    selecting trajectories for training, and for the solve either a :class:`~physnode.data.Inputs` itself or a
    ``to_inputs(t0)`` giving one: a :class:`~physnode.data.Inputs` or a :class:`~physnode.latent.TreatmentSchedule`."""

    def __call__(self, t: Tensor) -> Tensor: ...


def as_inputs(inputs: InputSeries | None, t0: float = 0.0) -> Inputs | None:
    """``inputs`` as the :class:`~physnode.data.Inputs` of a :func:`physnode.odeint` solve from ``t0``.

    Raises
    ------
    TypeError
        Neither an ``Inputs`` nor an object with ``to_inputs(t0)`` (a :class:`~physnode.latent.TreatmentSchedule`).
    """
    if inputs is None or isinstance(inputs, Inputs):
        return inputs
    convert = getattr(inputs, "to_inputs", None)
    if convert is None:
        raise TypeError(
            f"inputs must be a physnode.data.Inputs or a physnode.latent.TreatmentSchedule, got "
            f"{type(inputs).__name__}; build an Inputs from the series' knots (e.g. Inputs.from_infusions)."
        )
    out = convert(t0)
    if not isinstance(out, Inputs):
        raise TypeError(
            f"{type(inputs).__name__}.to_inputs must return a physnode.data.Inputs, got {type(out).__name__}."
        )
    return out


@dataclass(frozen=True)
class SolveSettings:
    """How the latent ODE is solved (passed to :func:`physnode.odeint`).

    Attributes
    ----------
    method, step_size, grad, rtol, atol
        As in :func:`physnode.odeint` (default: fixed-step ``rk4`` with ``step_size=0.25`` time units, backprop).
    options
        Solver / gradient options as ``(key, value)`` pairs (e.g. ``(("adaptive", False),)`` for ``"alf"``).
    """

    method: str = "rk4"
    step_size: float | None = 0.25
    grad: str = "direct"
    rtol: float = 1e-5
    atol: float = 1e-6
    options: tuple[tuple[str, Any], ...] = ()

    def keywords(self) -> dict[str, Any]:
        """Keywords of :func:`physnode.odeint`."""
        kw: dict[str, Any] = {"method": self.method, "grad": self.grad, "step_size": self.step_size}
        kw.update(rtol=self.rtol, atol=self.atol)
        if self.options:
            kw["options"] = dict(self.options)
        return kw


@dataclass
class Posterior:
    """The encoder's Gaussian over ``w = (ẑ_0, δθ)`` for a batch.

    Attributes
    ----------
    mean, logvar
        ``(B, n_w)``: scaled free initial states (``n_init``) then per-trajectory parameter offsets (``P``) in the
        parameters' unconstrained space.
    """

    mean: Tensor
    logvar: Tensor


class _Field:
    """``f(t, z)`` of one batch: the model's vector field with the batch's inputs and parameters bound.

    A plain callable (not a module), so the solve is told exactly which tensors ``f`` reads
    (:meth:`LatentHybrid.field_params`): the per-trajectory parameters ``θ_raw`` (a non-leaf computed from the encoder
    and the population values) and the weights ``f`` uses directly, never the encoder's weights or the population
    values that reach ``f`` only through ``θ_raw`` (a method with its own backward pass would count that path twice).
    """

    def __init__(self, model: LatentHybrid, theta_raw: Tensor | None) -> None:
        self.model = model
        self.theta_raw = theta_raw

    def __call__(self, t: Tensor, z: Tensor, u: Tensor | None = None) -> Tensor:
        return self.model.field(t, z, u, self.theta_raw)


class LatentHybrid(nn.Module):
    """Latent hybridisation model: ``z = (z_e, z_m)``, expert + neural dynamics, neural decoder, GRU encoder.

    Parameters
    ----------
    data_dim
        Observed channels ``D_x``.
    input_dim
        Input channels ``C`` (``0``: no inputs).
    expert
        The expert part (:class:`Expert`), or ``None`` for a purely latent neural ODE.
    latent_dim
        Latent neural states ``D_m`` (``0``: the expert model alone, with a neural decoder).
    hidden
        Width of ``f_m`` and the decoder.
    encoder_hidden
        Width of the GRU encoder.
    expert_scale
        ``D_e`` typical magnitudes of the expert states (their units): the networks read ``z_e / scale`` and the
        encoder infers ``z_e(t0) / scale``. Default ones.
    fixed_initial
        Expert states whose initial value is known (e.g. ``{"A1": 0.0}``: no drug before the first dose), not
        inferred.
    inference
        ``"variational"`` (sample ``w`` from the encoder's Gaussian, ELBO with KL to the priors) or ``"point"``
        (the encoder's mean, negative log prior as penalty).
    theta_prior_std
        Initial prior standard deviation of the per-trajectory parameters around the population value, in their
        unconstrained space (``0.3`` is about 30 % for a softplus-positive parameter far from zero); learned in
        variational inference, fixed for point estimates.
    decoder
        ``None``: a neural :class:`~physnode.latent.GaussianDecoder` of width ``hidden``; or a
        :class:`~physnode.latent.DecoderSpec` (channels known / known + residual / neural, likelihoods per channel),
        completed with the model's states, or a built :class:`~physnode.latent.Decoder`.

    Notes
    -----
    Shapes: ``z (B, D_e + D_m)``, ``u (B, C)``, ``θ_raw (B, P)``, ``x (B, T, D_x)``. Time units are those of the data
    and of the expert equations.
    """

    expert_scale: Tensor
    fixed_value: Tensor
    free_index: Tensor
    obs_loc: Tensor
    obs_scale: Tensor
    input_scale: Tensor
    time_scale: Tensor
    scales_set: Tensor

    def __init__(
        self,
        *,
        data_dim: int,
        input_dim: int = 0,
        expert: Expert | None = None,
        latent_dim: int = 2,
        hidden: int = 32,
        encoder_hidden: int = 32,
        expert_scale: list[float] | None = None,
        fixed_initial: Mapping[str, float] | None = None,
        inference: str = "variational",
        theta_prior_std: float = 0.3,
        decoder: DecoderSpec | Decoder | Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        for name, v, lo in (("data_dim", data_dim, 1), ("input_dim", input_dim, 0), ("latent_dim", latent_dim, 0)):
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}.")
        if inference not in INFERENCE:
            raise ValueError(f"inference must be one of {INFERENCE}, got {inference!r}.")
        if expert is None and latent_dim == 0:
            raise ValueError("a model without an expert needs latent_dim >= 1 (a latent neural ODE).")
        if expert is not None and expert.input_dim not in (0, input_dim):
            raise ValueError(
                f"the expert reads {expert.input_dim} inputs {expert.input_names}, but input_dim = {input_dim}."
            )
        if not (theta_prior_std > 0 and math.isfinite(theta_prior_std)):
            raise ValueError(f"theta_prior_std must be a positive number, got {theta_prior_std!r}.")
        self.expert = expert
        De = expert.state_dim if expert is not None else 0
        names = expert.state_names if expert is not None else []
        fixed = dict(fixed_initial or {})
        unknown = [k for k in fixed if k not in names]
        if unknown:
            raise ValueError(f"fixed_initial names {unknown}, which are not expert states ({names}).")
        scale = [1.0] * De if expert_scale is None else [float(s) for s in expert_scale]
        if len(scale) != De or not all(s > 0 and math.isfinite(s) for s in scale):
            raise ValueError(
                f"expert_scale must hold {De} positive numbers (one per expert state {names}), got {expert_scale}."
            )
        self.config: dict[str, Any] = {
            "data_dim": data_dim,
            "input_dim": input_dim,
            "latent_dim": latent_dim,
            "hidden": hidden,
            "encoder_hidden": encoder_hidden,
            "expert_scale": scale,
            "fixed_initial": fixed,
            "inference": inference,
            "theta_prior_std": float(theta_prior_std),
        }
        self.De, self.Dm, self.C, self.Dx = De, latent_dim, input_dim, data_dim
        self.P = len(expert.theta_names) if expert is not None else 0
        self.inference = inference
        self.free_expert = [i for i, n in enumerate(names) if n not in fixed]
        self.n_init = len(self.free_expert) + latent_dim
        self.register_buffer("expert_scale", torch.tensor(scale, dtype=torch.get_default_dtype()))
        init = torch.zeros(De)
        for name_k, value_k in fixed.items():
            init[names.index(name_k)] = float(value_k)
        self.register_buffer("fixed_value", init)
        self.register_buffer("free_index", torch.tensor(self.free_expert, dtype=torch.long), persistent=False)
        # Data scales, set from the training data by set_scales (kept in the state dict).
        self.register_buffer("obs_loc", torch.zeros(data_dim))
        self.register_buffer("obs_scale", torch.ones(data_dim))
        self.register_buffer("input_scale", torch.ones(input_dim))
        self.register_buffer("time_scale", torch.ones(()))
        self.register_buffer("scales_set", torch.zeros((), dtype=torch.bool))
        self.encoder = BackwardGRUEncoder(data_dim, input_dim, self.n_init + self.P, encoder_hidden)
        self.f_m = mlp(latent_dim + De + input_dim, hidden, latent_dim) if latent_dim else None
        self.decoder = build_decoder(
            decoder,
            expert_states=names,
            latent_dim=latent_dim,
            data_dim=data_dim,
            hidden=hidden,
            expert_params=expert.param_names if expert is not None else (),
        )
        if isinstance(self.decoder, Decoder):  # saved with the model (the default Gaussian one is implied)
            self.config["decoder"] = self.decoder.to_config()
        self.z0_prior_loc = nn.Parameter(torch.zeros(self.n_init))
        self.z0_prior_logstd = nn.Parameter(torch.zeros(self.n_init))
        self.theta_prior_logstd = nn.Parameter(torch.full((self.P,), math.log(theta_prior_std)))
        if inference == "point":
            self.theta_prior_logstd.requires_grad_(False)

    # ------------------------------------------------------------------------------------------------- data
    @torch.no_grad()
    def set_scales(self, data: Trajectories, inputs: InputSeries | None, t0: float = 0.0) -> None:
        """Observation location/scale per channel, input scale per channel and time scale from training data."""
        v, m = data.values.to(self.obs_loc.dtype), data.mask
        n = m.sum(dim=(0, 1)).clamp(min=1)
        loc = torch.where(m, v, 0.0).sum(dim=(0, 1)) / n
        var = torch.where(m, (v - loc) ** 2, 0.0).sum(dim=(0, 1)) / n
        self.obs_loc.copy_(loc)
        self.obs_scale.copy_(var.sqrt().clamp(min=1e-6))
        if self.C and inputs is not None:
            # The knot values of a TreatmentSchedule (levels) or a physnode.data.Inputs (values, NaN padded).
            levels = getattr(inputs, "levels", getattr(inputs, "values", None))
            if isinstance(levels, Tensor):  # the mean nonzero level per channel (typical rate, not the peak)
                a = levels.detach().abs().nan_to_num(0.0).flatten(0, 1)
                peak = (a.sum(0) / (a > 0).sum(0).clamp(min=1)).to(self.input_scale)
            else:
                grid = torch.linspace(t0, float(data.times.nan_to_num(t0).max()), 200, dtype=data.times.dtype)
                peak = torch.stack([inputs(tk.expand(data.n_trajectories)).abs().amax(0) for tk in grid]).amax(0)
            self.input_scale.copy_(torch.where(peak > 0, peak, torch.ones_like(peak)).to(self.input_scale))
        valid = data.time_mask
        span = float((torch.where(valid, data.times, t0) - t0).max())
        self.time_scale.fill_(max(span, 1e-12))
        self.scales_set.fill_(True)

    # ------------------------------------------------------------------------------------------------- dynamics
    def field(self, t: Tensor, z: Tensor, u: Tensor | None, theta_raw: Tensor | None = None) -> Tensor:
        """``dz/dt = (f_e(t, z_e, u; θ_e), f_m(z_m, z_e, u))`` for ``z (B, D_e + D_m)``, ``u (B, C)``."""
        z_e, z_m = z[:, : self.De], z[:, self.De :]
        out = []
        if self.expert is not None:
            out.append(self.expert(t, z_e, u, theta_raw if self.P else None))
        if self.f_m is not None:
            parts = [z_m, z_e / self.expert_scale]
            if self.C:
                if u is None:
                    raise ValueError(f"the model has {self.C} input channels; pass inputs.")
                parts.append(u / self.input_scale)
            out.append(self.f_m(torch.cat(parts, dim=-1)))
        return torch.cat(out, dim=-1)

    def field_params(self, theta_raw: Tensor | None) -> list[Tensor]:
        """The tensors requiring grad that :meth:`field` reads: ``θ_raw``, the expert's parameters other than the
        per-trajectory ones (those enter through ``θ_raw``) and the weights of ``f_m``."""
        out = [theta_raw] if theta_raw is not None and theta_raw.requires_grad else []
        if self.expert is not None:
            skip = {id(p) for p in self.expert.per_trajectory_raw()} if self.P else set()
            out += [p for p in self.expert.parameters() if p.requires_grad and id(p) not in skip]
        if self.f_m is not None:
            out += [p for p in self.f_m.parameters() if p.requires_grad]
        return out

    def observation_scales(self) -> ObservationScales:
        """The scales the decoder reads: expert-state scale, observation location and scale."""
        return ObservationScales(self.expert_scale, self.obs_loc, self.obs_scale)

    def scaled_state(self, z: Tensor) -> Tensor:
        """``(z_e / scale, z_m)`` as the decoder reads it."""
        return torch.cat([z[..., : self.De] / self.expert_scale, z[..., self.De :]], dim=-1)

    def initial_state(self, w_init: Tensor) -> Tensor:
        """``(B, n_init)`` scaled free initial values -> ``z(t0)`` ``(B, D_e + D_m)``."""
        B = w_init.shape[0]
        parts = []
        if self.De:
            z_e = self.fixed_value.to(w_init).expand(B, -1)
            if self.free_expert:
                free = w_init[:, : len(self.free_expert)] * self.expert_scale[self.free_index]
                z_e = z_e.index_copy(-1, self.free_index, free)
            parts.append(z_e)
        if self.Dm:
            parts.append(w_init[:, len(self.free_expert) :])
        return torch.cat(parts, dim=-1)

    def expert_parameters(self, theta_raw: Tensor | None, like: Tensor) -> Tensor | None:
        """``(B, E)`` values of the expert's parameters per trajectory (what known observation maps read), or
        ``None`` without an expert; ``like`` ``(B, ...)`` gives the batch, dtype and device."""
        known = getattr(self.decoder, "known", None)
        if self.expert is None or known is None or not known.expert_param_names:
            return None
        return self.expert.parameter_values(theta_raw, like.shape[0], like)

    def theta_raw(self, offset: Tensor) -> Tensor | None:
        """Per-trajectory unconstrained parameters ``population + offset`` ``(B, P)`` (``None`` when ``P = 0``)."""
        if not self.P:
            return None
        assert self.expert is not None
        return self.expert.population_raw().to(offset) + offset

    def solve(
        self,
        z0: Tensor,
        times: Tensor,
        lengths: Tensor,
        inputs: InputSeries | None,
        theta_raw: Tensor | None,
        *,
        t0: float = 0.0,
        settings: SolveSettings | None = None,
    ) -> Tensor:
        """States ``(B, T, D_e + D_m)`` at the observation times (``0`` at padded entries) from ``z0`` at ``t0``.

        One :func:`physnode.odeint` solve over ``t0`` and each trajectory's own observation times with
        ``inputs=`` (:func:`as_inputs`): the solver lands on every input breakpoint (infusion start or end), so no
        step straddles a jump of ``u``; the steps are fixed or adaptive as ``settings`` says. Boluses carried by the
        inputs (a :class:`~physnode.data.Inputs` with ``boluses=``) jump the state ``z = (z_e, z_m)`` at their times
        (``index``: the component, expert states first), through :func:`physnode.solve`'s ``boluses``.

        Parameters
        ----------
        z0
            ``(B, D_e + D_m)`` initial states at ``t0``.
        times, lengths
            ``(B, T)`` observation times (the first ``lengths[b]`` of row ``b`` valid, increasing, ``> t0``) and
            ``(B,)`` their numbers.
        inputs
            The inputs (``None`` for a model without input channels).
        theta_raw
            ``(B, P)`` unconstrained per-trajectory parameters or ``None``.
        t0
            Initial time (the data's time units).
        settings
            How to solve (:class:`SolveSettings`).

        Raises
        ------
        ValueError
            An observation at or before ``t0``; a bolus on a component the state does not have.
        """
        from ..odeint import odeint

        settings = settings or SolveSettings()
        B, T = times.shape
        valid = torch.arange(T, device=times.device).unsqueeze(0) < lengths.unsqueeze(1)
        early = valid[:, 0] & (times[:, 0] <= t0)
        if bool(early.any()):
            b = int(torch.nonzero(early)[0])
            raise ValueError(
                f"trajectory {b} has an observation at t = {float(times[b, 0]):.6g} <= t0 = {t0:.6g}; the initial "
                "state is inferred at t0, before the first observation. Choose t0 earlier than every observation time."
            )
        series = as_inputs(inputs, t0)
        if series is not None and series.boluses is not None:
            bad = series.boluses.index >= self.De + self.Dm
            if bool(bad.any()):
                raise ValueError(
                    f"a bolus adds to state component {int(series.boluses.index[bad][0])}, but the model's state "
                    f"z = (z_e, z_m) has {self.De + self.Dm} components; index an expert state by its position in "
                    "expert.state_names (e.g. 0 for the first)."
                )
        start = torch.full((B, 1), t0, dtype=times.dtype, device=times.device)
        grid = solver_ready_times(torch.cat([start, torch.where(valid, times, torch.nan)], dim=1), lengths + 1)
        ys = odeint(
            _Field(self, theta_raw),
            z0,
            grid.to(z0.dtype),
            params=self.field_params(theta_raw),
            inputs=series,
            **settings.keywords(),
        )[:, 1:]
        return torch.where(valid.unsqueeze(-1), ys, torch.zeros((), dtype=ys.dtype, device=ys.device))

    # ------------------------------------------------------------------------------------------------- inference
    def encode(
        self, data: Trajectories, inputs: InputSeries | None, *, until: float | None = None, t0: float = 0.0
    ) -> Posterior:
        """The encoder's posterior from the observations at times ``<= until`` (all when ``None``)."""
        dtype = self.obs_loc.dtype
        times = data.times.to(dtype)
        mask = data.mask & data.time_mask.unsqueeze(-1)
        if until is not None:
            mask = mask & (times <= until).unsqueeze(-1)
        values = (data.values.to(dtype) - self.obs_loc) / self.obs_scale
        u = None
        if self.C:
            if inputs is None:
                raise ValueError(f"the model has {self.C} input channels; pass the inputs of the data.")
            u = torch.stack([inputs(times[:, k]).to(dtype) for k in range(times.shape[1])], dim=1) / self.input_scale
        mean, logvar = self.encoder((times - t0) / self.time_scale, values, mask, u)
        return Posterior(mean, logvar)

    def _prior(self) -> tuple[Tensor, Tensor]:
        loc = torch.cat([self.z0_prior_loc, self.z0_prior_loc.new_zeros(self.P)])
        logstd = torch.cat([self.z0_prior_logstd, self.theta_prior_logstd]).clamp(-7.0, 3.0)
        return loc, logstd

    def kl(self, post: Posterior) -> Tensor:
        """``KL(q(w) || p(w))`` per trajectory ``(B,)`` (variational) or ``-log p(mean) + const`` (point)."""
        loc, logstd = self._prior()
        if self.inference == "point":
            r = (post.mean - loc) * torch.exp(-logstd)
            return (0.5 * r * r + logstd).sum(-1)
        var_q = torch.exp(post.logvar)
        var_p = torch.exp(2 * logstd)
        return 0.5 * (var_q / var_p + (post.mean - loc) ** 2 / var_p - 1 + 2 * logstd - post.logvar).sum(-1)

    def sample(self, post: Posterior, generator: torch.Generator | None = None, mean: bool = False) -> Tensor:
        """A reparameterised draw of ``w`` (the mean for point inference or ``mean=True``)."""
        if mean or self.inference == "point":
            return post.mean
        eps = torch.randn(post.mean.shape, generator=generator, dtype=post.mean.dtype, device=post.mean.device)
        return post.mean + torch.exp(0.5 * post.logvar) * eps

    def loss(
        self,
        data: Trajectories,
        inputs: InputSeries | None,
        *,
        until: float | None = None,
        t0: float = 0.0,
        settings: SolveSettings | None = None,
        generator: torch.Generator | None = None,
        kl_weight: float = 1.0,
    ) -> tuple[Tensor, dict[str, float]]:
        """Negative ELBO per observed entry: ``(Σ masked NLL + β Σ KL) / number of observed entries``.

        The encoder reads the observations up to ``until``; the reconstruction covers every observation, so the
        model learns to forecast past the conditioning window. ``kl_weight`` is ``β`` (``1``: the ELBO; smaller
        during a KL warm-up, Bowman et al. 2016, "Generating Sentences from a Continuous Space").
        """
        post = self.encode(data, inputs, until=until, t0=t0)
        w = self.sample(post, generator)
        z0 = self.initial_state(w[:, : self.n_init])
        theta = self.theta_raw(w[:, self.n_init :])
        zs = self.solve(z0, data.times.to(z0.dtype), data.lengths, inputs, theta, t0=t0, settings=settings)
        mask = data.mask & data.time_mask.unsqueeze(-1)
        nll = self.decoder.neg_log_likelihood(
            zs, data.values, mask, self.observation_scales(), self.expert_parameters(theta, zs)
        )
        kl = self.kl(post)
        n = mask.sum().clamp(min=1)
        total = (nll.sum() + kl_weight * kl.sum()) / n
        return total, {
            "loss": float(total.detach()),
            "nll": float(nll.detach().sum() / n),
            "kl": float(kl.detach().sum() / n),
        }

    # ------------------------------------------------------------------------------------------------- prediction
    @torch.no_grad()
    def predict(
        self,
        history: Trajectories,
        inputs: InputSeries | None,
        times: Tensor,
        *,
        until: float | None = None,
        plan: InputSeries | None = None,
        t0: float = 0.0,
        settings: SolveSettings | None = None,
        lengths: Tensor | None = None,
        posterior: Posterior | None = None,
    ) -> dict[str, Tensor]:
        """Forecast from the observed history under the given (or a counterfactual) treatment plan.

        Parameters
        ----------
        history
            The patients' observations; the encoder reads those at times ``<= until``.
        inputs
            The inputs the patients received (read by the encoder at the observation times).
        times
            ``(B, T')`` or ``(T',)`` increasing prediction times ``> t0``.
        plan
            Inputs for the solve from ``t0`` over ``times`` (default ``inputs``): the same history with another
            future is a counterfactual treatment.
        lengths
            ``(B,)`` number of valid entries of each row of ``times`` (default: all); states are ``0`` past them.
        posterior
            Use this posterior's mean (e.g. refined by :func:`~physnode.latent.refine`) instead of encoding
            ``history``.

        Returns
        -------
        dict
            ``"mean"`` ``(B, T', D_x)`` predicted observations (posterior mean of ``w``, channel units);
            ``"states"`` ``(B, T', D_e + D_m)``; ``"theta"`` ``(B, P)`` per-trajectory parameter values (their units);
            ``"z0"`` ``(B, D_e + D_m)``.
        """
        post = posterior if posterior is not None else self.encode(history, inputs, until=until, t0=t0)
        w = post.mean
        z0 = self.initial_state(w[:, : self.n_init])
        theta = self.theta_raw(w[:, self.n_init :])
        B = z0.shape[0]
        tt = times.to(z0.dtype)
        tt = tt.unsqueeze(0).expand(B, -1) if tt.ndim == 1 else tt
        if lengths is None:
            lengths = torch.full((B,), tt.shape[1], dtype=torch.long, device=tt.device)
        zs = self.solve(z0, tt, lengths, plan if plan is not None else inputs, theta, t0=t0, settings=settings)
        mean = self.decoder.observe(zs, self.observation_scales(), self.expert_parameters(theta, zs))
        out = {"mean": mean, "states": zs, "z0": z0}
        if theta is not None and self.expert is not None:
            out["theta"] = self.expert.constrained(theta)
        return out
