"""Decoders of latent hybrid models: observations ``x = g(z_e, z_m) + noise``, masked likelihoods.

- :class:`GaussianDecoder`: ``g`` a network on the scaled state, Gaussian noise with ``σ`` learned per channel (the
  default of :class:`~physnode.latent.LatentHybrid`);
- :class:`Decoder`: channel by channel **known** (``g_c = g_known,c(z_e; φ)``, a :class:`~physnode.latent.KnownMap`),
  **known + residual** (``g_c = g_known,c(z_e; φ) + r_c(z_e, z_m)`` with a network ``r`` that starts at zero) or
  **neural**, and a likelihood per channel (:data:`~physnode.latent.observation.LIKELIHOODS`: Gaussian, Student-t,
  log-normal); described by a :class:`DecoderSpec` that the model completes with its states and saves as JSON.

Both take the model's scales (:class:`ObservationScales`) and the state in its units: :meth:`Decoder.observe` gives
the locations ``g`` in the channels' units, :meth:`Decoder.neg_log_likelihood` the masked negative log-likelihood of
the standardised observations per trajectory.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

import sympy as sp
import torch
from torch import Tensor, nn

from ..physics.base import symbol_name
from ..physics.config import _param_from_config
from ..physics.params import Param
from .observation import KnownCallable, KnownMap, Likelihood, likelihood_from_spec

__all__ = ["Decoder", "DecoderSpec", "GaussianDecoder", "ObservationScales", "build_decoder", "mlp"]


def mlp(n_in: int, hidden: int, n_out: int, depth: int = 2) -> nn.Sequential:
    """``depth`` hidden tanh layers of width ``hidden``; the last layer starts small (near-zero outputs)."""
    layers: list[nn.Module] = []
    width = n_in
    for _ in range(depth):
        layers += [nn.Linear(width, hidden), nn.Tanh()]
        width = hidden
    last = nn.Linear(width, n_out)
    nn.init.normal_(last.weight, std=0.1 / math.sqrt(width))
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class ObservationScales(NamedTuple):
    """The model's scales that a decoder reads (buffers of :class:`~physnode.latent.LatentHybrid`).

    Attributes
    ----------
    expert
        ``(D_e,)`` typical magnitudes of the expert states (their units): networks read ``z_e / expert``.
    loc, scale
        ``(D_x,)`` location and scale of each observed channel (its units), from the training data.
    """

    expert: Tensor
    loc: Tensor
    scale: Tensor


def _scaled(z: Tensor, scales: ObservationScales) -> Tensor:
    """``(z_e / expert, z_m)`` for ``z (..., D_e + D_m)``."""
    De = scales.expert.shape[0]
    return torch.cat([z[..., :De] / scales.expert.to(z.dtype), z[..., De:]], dim=-1)


class GaussianDecoder(nn.Module):
    """``x ~ N(g(z), diag(σ²))`` with ``g`` a network on the (scaled) state and ``σ`` learned per channel.

    The network works in standardised units: ``g(z) = loc + scale · net(z_scaled)``, with the observation location
    and scale set from the training data (:meth:`physnode.latent.LatentHybrid.set_scales`); ``σ`` is in the
    channels' units.

    Parameters
    ----------
    state_dim
        ``D_e + D_m``: the decoder reads the expert states (divided by their scale) and the latent states.
    data_dim
        Observed channels ``D_x``.
    hidden
        Width of the network (``0``: a linear map).
    """

    def __init__(self, state_dim: int, data_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.net: nn.Module = mlp(state_dim, hidden, data_dim) if hidden else nn.Linear(state_dim, data_dim)
        self.log_sigma = nn.Parameter(torch.full((data_dim,), math.log(0.5)))

    def forward(self, z_scaled: Tensor) -> Tensor:
        """Standardised means ``(..., D_x)`` from scaled states ``(..., D_e + D_m)``."""
        return self.net(z_scaled)

    def nll(self, mean_std: Tensor, values_std: Tensor, mask: Tensor) -> Tensor:
        """Negative log-likelihood summed over the observed entries (standardised units; ``σ`` standardised too).

        Parameters
        ----------
        mean_std, values_std
            ``(B, T, D_x)`` predicted means and observations, both standardised.
        mask
            ``(B, T, D_x)`` bool. Unobserved entries of ``values_std`` may hold anything, NaN included: they are
            replaced before the arithmetic, so neither the value nor its gradient sees them.

        Returns
        -------
        Tensor
            ``(B,)`` per trajectory.
        """
        log_sigma = self.log_sigma.clamp(-7.0, 3.0)
        # A NaN that only torch.where removed afterwards would still reach the gradient (0 · NaN = NaN).
        values_std = torch.where(mask, values_std, mean_std.detach())
        r = (values_std - mean_std) * torch.exp(-log_sigma)
        per = 0.5 * r * r + log_sigma + 0.5 * math.log(2 * math.pi)
        return torch.where(mask, per, torch.zeros((), dtype=per.dtype, device=per.device)).sum(dim=(1, 2))

    def observe(self, z: Tensor, scales: ObservationScales, expert: Tensor | None = None) -> Tensor:
        """Means ``(..., D_x)`` in the channels' units from states ``(..., D_e + D_m)`` in theirs (``expert`` is
        not read: a neural decoder has no known map)."""
        return self(_scaled(z, scales)) * scales.scale + scales.loc

    def neg_log_likelihood(
        self, z: Tensor, values: Tensor, mask: Tensor, scales: ObservationScales, expert: Tensor | None = None
    ) -> Tensor:
        """``(B,)`` masked negative log-likelihood of standardised observations from states ``(B, T, D_e + D_m)``
        and observations ``(B, T, D_x)`` in their units (anything, NaN included, at unobserved entries); ``expert``
        is not read."""
        mean = self(_scaled(z, scales))
        values = torch.where(mask, values.to(mean.dtype), scales.loc.to(mean.dtype))
        return self.nll(mean, (values - scales.loc) / scales.scale, mask)


KnownSpec: TypeAlias = str | sp.Expr | KnownCallable


@dataclass(frozen=True)
class DecoderSpec:
    """What a :class:`Decoder` is, before the model gives it its states: channels, known maps, residuals,
    likelihoods. Pass it as ``LatentHybrid(decoder=...)``.

    Attributes
    ----------
    channels
        Names of the ``D_x`` observed channels, in the order of the data's last axis (e.g. ``data.channels``).
    known
        ``{channel: map}``: the channels with a known observation map of the expert states, as SymPy expressions,
        text (``"a*R"``, parsed safely) or torch callables ``fn(z, p)`` (see :class:`KnownMap`); in the channels'
        units. The maps may also read the expert's parameters by name (``"A1/V1"`` with ``V1`` a parameter of the
        expert), with each trajectory's own value where the parameter varies per trajectory. The other channels are
        neural.
    residual
        Known channels that also get a neural residual ``r_c(z_e, z_m)`` (started at zero): additive in standardised
        units (``g_known + scale · r``), or multiplicative (``g_known · exp(r)``) for a positive likelihood.
    params
        Named parameters ``φ`` of the known maps: :class:`~physnode.physics.Param` (learnable or not) or numbers.
    likelihood
        One likelihood for every channel, by name (``"gaussian"``, ``"student_t"``, ``"lognormal"``) or config
        (``{"kind": "student_t", "df": 3.0, "learn_df": True}``), or ``{channel: likelihood}`` (unlisted channels:
        ``"gaussian"``).
    hidden
        Width of the network of the neural and residual channels (``0``: linear; ``None``: the model's ``hidden``).
    """

    channels: Sequence[str]
    known: Mapping[str, KnownSpec] = field(default_factory=dict)
    residual: Sequence[str] = ()
    params: Mapping[str, Param | float] = field(default_factory=dict)
    likelihood: str | Mapping[str, Any] = "gaussian"
    hidden: int | None = None

    def build(
        self, expert_states: Sequence[str], latent_dim: int, hidden: int = 32, expert_params: Sequence[str] = ()
    ) -> Decoder:
        """The decoder of a model with expert states ``expert_states``, ``latent_dim`` latent states and expert
        parameters ``expert_params`` (names the known maps may read)."""
        return Decoder(
            self.channels,
            expert_states=expert_states,
            latent_dim=latent_dim,
            known=self.known,
            residual=self.residual,
            params=self.params,
            likelihood=self.likelihood,
            hidden=hidden if self.hidden is None else self.hidden,
            expert_params=expert_params,
        )

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DecoderSpec:
        """The spec of a :meth:`Decoder.to_config` dict (as saved with a model; text parsed safely on build).

        Raises
        ------
        ValueError
            Unknown or missing keys, or known maps saved as Python callables (pass the spec again).
        """
        allowed = {"channels", "known", "residual", "params", "likelihood", "hidden"}
        if not isinstance(config, Mapping) or "channels" not in config or set(config) - allowed:
            raise ValueError(
                f"a decoder config is a dict with keys {sorted(allowed)} ('channels' required), got "
                f"{config if not isinstance(config, Mapping) else sorted(config)!r}."
            )
        known = dict(config.get("known") or {})
        callables = [c for c, v in known.items() if isinstance(v, str) and v.startswith("callable ")]
        if callables:
            raise ValueError(
                f"the known maps of channels {callables} were Python callables (code, not data); pass the decoder "
                "again, e.g. load_latent_hybrid(path, expert=..., decoder=DecoderSpec(...))."
            )
        params = {n: _param_from_config(n, s) for n, s in dict(config.get("params") or {}).items()}
        return cls(
            channels=list(config["channels"]),
            known=known,
            residual=list(config.get("residual") or ()),
            params=params,
            likelihood=config.get("likelihood", "gaussian"),
            hidden=config.get("hidden"),
        )


class Decoder(nn.Module):
    """Observations ``x_c ~ p_c(· | g_c(z_e, z_m))`` channel by channel: known, known + residual, or neural.

    ``g_c`` is the location of channel ``c`` in its units:

    - known: ``g_c = g_known,c(z_e; φ)`` (:class:`KnownMap`; the latent states do not enter);
    - known + residual: ``g_c = g_known,c + scale_c · r_c(ẑ)`` (additive likelihoods) or ``g_known,c · exp(r_c(ẑ))``
      (log-normal), with ``r`` a network whose output layer starts at zero, so the decoder starts as the known map;
    - neural: ``g_c = loc_c + scale_c · n_c(ẑ)`` (additive) or ``loc_c · exp(n_c(ẑ))`` (log-normal);

    with ``ẑ = (z_e / s_e, z_m)`` the scaled state and ``loc``, ``scale`` the channels' location and scale
    (:class:`ObservationScales`). The neural and residual outputs come from one network of width ``hidden``.

    Parameters
    ----------
    channels
        Names of the ``D_x`` observed channels (data order).
    expert_states
        Names of the expert states ``z_e`` (what the known maps read).
    latent_dim
        ``D_m``.
    known, residual, params, likelihood
        As in :class:`DecoderSpec`; ``known`` may also be a built :class:`KnownMap` (its parameters then are its own).
    hidden
        Width of the network (``0``: linear).
    expert_params
        Names of the expert's parameters that the known maps may read (their values come per trajectory with
        ``expert=`` in :meth:`observe`); a :class:`~physnode.latent.LatentHybrid` passes its expert's.

    Raises
    ------
    ValueError
        Duplicate or invalid channel names, known maps or residuals or likelihoods naming channels that are not
        observed, a residual on a channel without a known map, known maps without expert states.
    """

    def __init__(
        self,
        channels: Sequence[str],
        *,
        expert_states: Sequence[str],
        latent_dim: int,
        known: Mapping[str, KnownSpec] | KnownMap | None = None,
        residual: Sequence[str] = (),
        params: Mapping[str, Param | float] | None = None,
        likelihood: str | Mapping[str, Any] = "gaussian",
        hidden: int = 32,
        expert_params: Sequence[str] = (),
    ) -> None:
        super().__init__()
        if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
            raise ValueError(
                f"channels must be a non-empty list of the observed channels' names (e.g. data.channels), got "
                f"{channels!r}."
            )
        self.channels = [symbol_name(c, "channel") for c in channels]
        if len(set(self.channels)) != len(self.channels):
            raise ValueError(f"channel names must be distinct, got {self.channels}.")
        for what, v in (("latent_dim", latent_dim), ("hidden", hidden)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(f"the decoder's {what} must be an integer >= 0, got {v!r}.")
        self.expert_states = list(expert_states)
        self.latent_dim = latent_dim
        self.hidden = hidden
        Dx = len(self.channels)

        def unknown(names: object, what: str) -> list[str]:
            if isinstance(names, str) or not isinstance(names, (Sequence, Mapping)):
                raise ValueError(f"{what} must be a list of channel names, got {names!r}.")
            bad = [n for n in names if n not in self.channels]
            if bad:
                raise ValueError(f"{what} names {bad}, which are not observed channels {self.channels}.")
            return list(names)

        if isinstance(known, KnownMap):
            if params:
                raise ValueError("params= is for known maps given as expressions; a KnownMap holds its own params.")
            self.known: KnownMap | None = known
        elif known:
            if not isinstance(known, Mapping):
                raise ValueError(f"known must be a dict {{channel: expression}} or a KnownMap, got {known!r}.")
            unknown(known, "known")
            if not self.expert_states:
                raise ValueError(
                    f"known maps of channels {list(known)} read expert states, but the model has none (expert=None)."
                )
            self.known = KnownMap(known, self.expert_states, params, expert_params=expert_params)
        else:
            if params:
                raise ValueError(f"params {sorted(params)} given without any known map (known=).")
            self.known = None
        if self.known is not None:
            unknown(self.known.channels, "known")
            if self.known.state_names != self.expert_states:
                raise ValueError(
                    f"the known map reads the states {self.known.state_names}, but the expert states are "
                    f"{self.expert_states}."
                )
        known_names = self.known.channels if self.known is not None else []
        res = unknown(residual, "residual")
        no_map = [c for c in res if c not in known_names]
        if no_map:
            raise ValueError(
                f"residual names {no_map}, which have no known map (known: {known_names}); a channel without a known "
                "map is neural already."
            )
        # Likelihood of each channel, grouped by equal configs.
        per_channel = self._likelihoods(likelihood)
        groups: dict[str, list[int]] = {}
        configs: dict[str, Mapping[str, Any]] = {}
        for c, spec in enumerate(per_channel):
            key = repr(sorted(spec.items()))
            groups.setdefault(key, []).append(c)
            configs[key] = spec
        self.likelihoods = nn.ModuleList(likelihood_from_spec(configs[k], len(ix)) for k, ix in groups.items())
        self.likelihood_index = [ix for ix in groups.values()]
        self.positive = [False] * Dx
        for lik, ix in zip(self.likelihoods, self.likelihood_index, strict=True):
            for c in ix:
                self.positive[c] = bool(lik.positive)
        # Channel roles and the network's columns (neural channels, then residuals).
        self.known_index = [self.channels.index(c) for c in known_names]
        self.residual_index = [self.channels.index(c) for c in res]
        self.neural_index = [c for c in range(Dx) if c not in self.known_index]
        n_net = len(self.neural_index) + len(self.residual_index)
        n_in = len(self.expert_states) + self.latent_dim
        self.net: nn.Module | None = None
        if n_net:
            self.net = mlp(n_in, hidden, n_net) if hidden else nn.Linear(n_in, n_net)
            last = self.net[-1] if isinstance(self.net, nn.Sequential) else self.net
            assert isinstance(last, nn.Linear)
            with torch.no_grad():  # the residual outputs start at exactly zero
                last.weight[len(self.neural_index) :].zero_()
                last.bias[len(self.neural_index) :].zero_()

    def _likelihoods(self, likelihood: str | Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The likelihood config of each channel."""
        single = isinstance(likelihood, Mapping) and "kind" in likelihood and "kind" not in self.channels
        if isinstance(likelihood, str) or single:
            spec = {"kind": likelihood} if isinstance(likelihood, str) else dict(likelihood)
            likelihood_from_spec(spec, 1)  # checks the name and options
            return [spec] * len(self.channels)
        if not isinstance(likelihood, Mapping):
            raise ValueError(
                f"likelihood must be a name ('gaussian', 'student_t', 'lognormal'), a config {{'kind': ...}} or a "
                f"dict {{channel: likelihood}}, got {likelihood!r}."
            )
        bad = [n for n in likelihood if n not in self.channels]
        if bad:
            raise ValueError(f"likelihood names {bad}, which are not observed channels {self.channels}.")
        out = []
        for c in self.channels:
            v = likelihood.get(c, "gaussian")
            spec = {"kind": v} if isinstance(v, str) else dict(v) if isinstance(v, Mapping) else v
            likelihood_from_spec(spec, 1)
            out.append(spec)
        return out

    @property
    def data_dim(self) -> int:
        """``D_x``."""
        return len(self.channels)

    def roles(self) -> dict[str, str]:
        """``{channel: "known" | "known+residual" | "neural"}``."""
        out = {}
        for c, name in enumerate(self.channels):
            if c in self.residual_index:
                out[name] = "known+residual"
            elif c in self.known_index:
                out[name] = "known"
            else:
                out[name] = "neural"
        return out

    def likelihood_of(self, channel: str) -> Likelihood:
        """The likelihood module of ``channel`` (shared with the channels of the same kind and options)."""
        c = self.channels.index(channel)
        for lik, ix in zip(self.likelihoods, self.likelihood_index, strict=True):
            if c in ix:
                return lik  # type: ignore[return-value]
        raise KeyError(channel)  # unreachable: every channel has a likelihood

    def observe(self, z: Tensor, scales: ObservationScales, expert: Tensor | None = None) -> Tensor:
        """Locations ``g`` ``(..., D_x)`` in the channels' units (the median of a log-normal channel, the mean of
        the others) from states ``z`` ``(..., D_e + D_m)`` in their units; ``expert`` ``(B, E)``: the values of the
        expert parameters the known maps read (see :class:`KnownMap`), one row per trajectory."""
        De = len(self.expert_states)
        if z.shape[-1] != De + self.latent_dim:
            raise ValueError(
                f"the decoder reads states of {De} expert + {self.latent_dim} latent components, got shape "
                f"{tuple(z.shape)}."
            )
        loc, scale = scales.loc.to(z.dtype), scales.scale.to(z.dtype)
        cols: list[Tensor | None] = [None] * self.data_dim
        out = self.net(_scaled(z, scales)) if self.net is not None else None
        n_neural = len(self.neural_index)
        if out is not None:
            for j, c in enumerate(self.neural_index):
                o = out[..., j]
                cols[c] = loc[c] * torch.exp(o) if self.positive[c] else loc[c] + scale[c] * o
        if self.known is not None:
            gk = self.known(z[..., :De], expert)
            for k, c in enumerate(self.known_index):
                cols[c] = gk[..., k]
            for j, c in enumerate(self.residual_index):
                assert out is not None
                r = out[..., n_neural + j]
                g = cols[c]
                assert g is not None
                cols[c] = g * torch.exp(r) if self.positive[c] else g + scale[c] * r
        return torch.stack([c for c in cols if c is not None], dim=-1)

    def neg_log_likelihood(
        self, z: Tensor, values: Tensor, mask: Tensor, scales: ObservationScales, expert: Tensor | None = None
    ) -> Tensor:
        """``(B,)``: the masked negative log-likelihood of the standardised observations, summed per trajectory.

        Parameters
        ----------
        z
            ``(B, T, D_e + D_m)`` states at the observation times (their units).
        values
            ``(B, T, D_x)`` observations in the channels' units (anything, NaN included, where ``mask`` is false).
        mask
            ``(B, T, D_x)`` bool.
        scales
            The model's scales.
        expert
            ``(B, E)`` values of the expert parameters the known maps read (see :meth:`observe`).
        """
        g = self.observe(z, scales, expert)
        total = g.new_zeros(g.shape[0])
        for lik, ix in zip(self.likelihoods, self.likelihood_index, strict=True):
            assert isinstance(lik, Likelihood)
            total = total + lik.nll(g[..., ix], values[..., ix], mask[..., ix], scales.loc[ix], scales.scale[ix])
        return total

    def to_config(self) -> dict[str, Any]:
        """A JSON-ready description that :meth:`DecoderSpec.from_config` reads back (known maps as text, callables
        by name only), for saving with the model."""
        known = self.known.description() if self.known is not None else {"maps": {}, "params": {}}
        likelihood: dict[str, Any] = {}
        for lik, ix in zip(self.likelihoods, self.likelihood_index, strict=True):
            assert isinstance(lik, Likelihood)
            for c in ix:
                likelihood[self.channels[c]] = lik.config()
        return {
            "channels": list(self.channels),
            "known": known["maps"],
            "residual": [self.channels[c] for c in self.residual_index],
            "params": known["params"],
            "likelihood": likelihood,
            "hidden": self.hidden,
        }

    def extra_repr(self) -> str:
        return f"roles={self.roles()}"


def build_decoder(
    decoder: DecoderSpec | Decoder | Mapping[str, Any] | None,
    *,
    expert_states: Sequence[str],
    latent_dim: int,
    data_dim: int,
    hidden: int,
    expert_params: Sequence[str] = (),
) -> GaussianDecoder | Decoder:
    """The decoder of a :class:`~physnode.latent.LatentHybrid`: ``None`` gives the default :class:`GaussianDecoder`
    (width ``hidden``), a :class:`DecoderSpec` or its config dict (as saved) is built for the model's states, a
    :class:`Decoder` is checked against them.

    Raises
    ------
    ValueError
        A decoder whose channels, expert states or latent dimension differ from the model's.
    TypeError
        Something else than the above.
    """
    if decoder is None:
        return GaussianDecoder(len(expert_states) + latent_dim, data_dim, hidden)
    if isinstance(decoder, Mapping):
        decoder = DecoderSpec.from_config(decoder)
    if isinstance(decoder, DecoderSpec):
        decoder = decoder.build(expert_states, latent_dim, hidden, expert_params)
    if not isinstance(decoder, Decoder):
        raise TypeError(
            f"decoder must be a physnode.latent.DecoderSpec, a Decoder or None (the Gaussian neural decoder), got "
            f"{type(decoder).__name__}."
        )
    if decoder.data_dim != data_dim:
        raise ValueError(
            f"the decoder has {decoder.data_dim} channels {decoder.channels}, but the model's data_dim = {data_dim}; "
            "give one channel name per observed channel."
        )
    if decoder.expert_states != list(expert_states) or decoder.latent_dim != latent_dim:
        raise ValueError(
            f"the decoder reads expert states {decoder.expert_states} and {decoder.latent_dim} latent states, but the "
            f"model has expert states {list(expert_states)} and latent_dim = {latent_dim}; pass a DecoderSpec, which "
            "the model completes with its own states."
        )
    return decoder
