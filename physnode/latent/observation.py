"""Observation models of latent hybrid models: known observation maps ``g_known(z_e; φ)`` and noise likelihoods.

- :class:`KnownMap`: observed channels written as functions of the expert states with named parameters ``φ``
  (:class:`~physnode.physics.Param`, optionally learnable): SymPy expressions or text (parsed safely, compiled once by
  physnode's symbolic compiler, saved as text) or torch callables;
- likelihoods of one observed entry given its location ``g``, masked and summed per trajectory:
  :class:`Gaussian`, :class:`StudentT` (heavy tails: robust to outliers), :class:`LogNormal` (positive quantities
  such as concentrations), registered by name in :data:`LIKELIHOODS`.

Every likelihood returns the negative log density of the **standardised** observation ``x̃ = (x − loc) / scale``
(``loc``, ``scale``: the channel's location and scale from the training data), which is the density of ``x`` in its
units plus ``log scale`` per entry: the same convention as :class:`~physnode.latent.GaussianDecoder`, so losses stay
of order one per entry whatever the units, and the likelihoods of different kinds can be compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import sympy as sp
import torch
from torch import Tensor, nn

from ..physics.base import PhysicsModel, SymbolSpec, canonicalize, symbol_name, symbol_names
from ..physics.config import _param_from_config
from ..physics.params import Param

__all__ = ["LIKELIHOODS", "Gaussian", "KnownMap", "Likelihood", "LogNormal", "StudentT", "likelihood_from_spec"]

#: A known observation map given as a torch callable: ``fn(z, p) -> (...)`` with ``z[name]`` the expert state
#: ``name`` and ``p[name]`` the value of parameter ``name``, each of the batch shape ``(...)`` or a scalar.
KnownCallable = Callable[[Mapping[str, Tensor], Mapping[str, Tensor]], Tensor]

_LOG_2PI = math.log(2 * math.pi)


class KnownMap(PhysicsModel):
    """A known observation map: some observed channels as functions of the expert states, ``g_known(z_e; φ)``.

    Each channel is a SymPy expression or text over the expert state names and the parameter names (text is read by
    physnode's safe parser, never ``eval``; the expressions are compiled once into batched torch code, as the
    equations of a :class:`~physnode.physics.SymbolicODE`), or a torch callable ``fn(z, p)`` that gets the states
    and the parameter values by name (shape ``(...)`` each) and returns the channel ``(...)``.

    Parameters
    ----------
    maps
        ``{channel name: expression, text or callable}``, in the order of the known channels.
    state
        Names of the expert states ``z_e`` (the last axis of the ``z_e`` passed to :meth:`forward`).
    params
        Named quantities ``φ``: ``{"a": Param(0.5), "R0": 1.0}`` (numbers are known constants; a learnable
        :class:`~physnode.physics.Param` is trained with the model). Scalars only.
    expert_params
        Names of the expert's parameters that the maps may read too (e.g. a volume ``V1`` in ``"A1/V1"``). Their
        values are not the map's own: :meth:`forward` receives them per trajectory (``expert=``), so a parameter
        that varies between patients enters each patient's observations with its own value. A
        :class:`~physnode.latent.LatentHybrid` passes the names and values of its expert's parameters itself.

    Raises
    ------
    ValueError
        An expression that uses undeclared names, the time, text outside the parser's whitelist, no channel; a name
        that is both one of ``params`` and one of ``expert_params``.
    TypeError
        A channel given as something other than an expression, text or callable.

    Examples
    --------
    A biomarker proportional to the disease activity ``R`` with an unknown factor:

    >>> g = KnownMap({"marker": "a*R"}, ["A1", "A2", "R"], {"a": Param(0.5)})

    A concentration: the central amount over a volume that varies per patient (read from the expert):

    >>> c = KnownMap({"C": "A1/V1"}, ["A1", "A2"], expert_params=["V1"])
    """

    def __init__(
        self,
        maps: Mapping[str, sp.Expr | str | KnownCallable],
        state: Sequence[SymbolSpec],
        params: Mapping[str, Param | float] | None = None,
        *,
        expert_params: Sequence[str] = (),
    ) -> None:
        super().__init__(params)
        names = symbol_names(state, "expert state", "KnownMap")
        extra = symbol_names(list(expert_params), "expert parameter", "KnownMap") if expert_params else []
        both = sorted(set(extra) & set(self.params))
        if both:
            raise ValueError(
                f"{both} are named both as parameters of the known map (params=) and as expert parameters; the map "
                "reads the expert's value of an expert parameter, so drop it from params= (or rename it)."
            )
        if not isinstance(maps, Mapping) or not maps:
            raise ValueError(
                f"a known observation map needs a non-empty dict {{channel name: expression}}, got {maps!r}; e.g. "
                "{'marker': 'a*R'}."
            )
        self.channels = [symbol_name(c, "channel") for c in maps]
        # The expert parameters are read like extra state columns (appended to z_e in forward), so the compiled
        # maps take them per row; state_names stays the expert states.
        table = self._declare_symbols(names + extra, "t")
        self.state_names = names
        self.expert_param_names = extra
        self.param_names = self._scalar_param_names()
        self.exprs: dict[int, sp.Expr] = {}
        self.callables: dict[int, KnownCallable] = {}
        for i, (channel, spec) in enumerate(maps.items()):
            where = f"the known map of channel {channel!r}"
            if isinstance(spec, (str, sp.Basic)):
                expr = canonicalize(spec, table, where)
                if self.time_symbol in expr.free_symbols:
                    raise ValueError(
                        f"{where} uses the time 't'; an observation map reads the expert states {names} and the "
                        "parameters only. Add a clock as an expert state (dt/dt = 1) to use the time."
                    )
                self.exprs[i] = expr
            elif callable(spec):
                self.callables[i] = spec
            else:
                raise TypeError(
                    f"{where} must be a SymPy expression, text such as 'a*R', or a callable fn(z, p), got "
                    f"{type(spec).__name__} {spec!r}."
                )
        order = sorted(self.exprs)
        self._expr_index = order
        self.compiled = self._compile([self.exprs[i] for i in order], "the known observation map") if order else None

    @property
    def out_dim(self) -> int:
        """Number of known channels."""
        return len(self.channels)

    def forward(self, z_e: Tensor, expert: Tensor | None = None) -> Tensor:
        """``g_known(z_e; φ)``: ``(..., n_known)`` in the channels' units from states ``(..., D_e)`` in theirs.

        Parameters
        ----------
        z_e
            ``(..., D_e)`` expert states, e.g. ``(B, T, D_e)``.
        expert
            Values of :attr:`expert_param_names` (their units), ``(B, E)`` (one row per trajectory, broadcast over
            the time axis) or of the shape ``(..., E)`` of ``z_e``; required when the map declares expert parameters.
        """
        if z_e.shape[-1] != self.state_dim:
            raise ValueError(
                f"the known observation map reads the {self.state_dim} expert states {self.state_names}; got a state "
                f"of shape {tuple(z_e.shape)}."
            )
        rows = self._expert_rows(z_e, expert)
        values = self.param_values()
        cols: list[Tensor | None] = [None] * self.out_dim
        if self.compiled is not None:
            t = z_e.new_zeros(())
            y = z_e if rows is None else torch.cat([z_e, rows], dim=-1)
            out = self.compiled(t, y, [v.to(z_e.dtype) for v in values])
            for j, i in enumerate(self._expr_index):
                cols[i] = out[..., j]
        if self.callables:
            z = dict(zip(self.state_names, z_e.unbind(-1), strict=True))
            p = {n: v.to(z_e.dtype) for n, v in zip(self.params, values, strict=True)}
            if rows is not None:
                p.update(zip(self.expert_param_names, rows.unbind(-1), strict=True))
            for i, fn in self.callables.items():
                o = fn(z, p)
                if not isinstance(o, Tensor) or o.shape != z_e.shape[:-1]:
                    got = tuple(o.shape) if isinstance(o, Tensor) else type(o).__name__
                    raise ValueError(
                        f"the known map of channel {self.channels[i]!r} returned {got}; it must return a tensor of "
                        f"the batch shape {tuple(z_e.shape[:-1])} (one value per state row)."
                    )
                cols[i] = o
        return torch.stack([c for c in cols if c is not None], dim=-1)

    def _text(self, expr: sp.Expr, where: str) -> str:
        """``expr`` as text the parser reads back, over the states and the expert parameters (as declared)."""
        from ..physics.parse import expression_text

        table = self._symbol_table(self.state_names + self.expert_param_names, self.time_symbol.name)
        return expression_text(expr, table, f"{type(self).__name__}: {where}")

    def _expert_rows(self, z_e: Tensor, expert: Tensor | None) -> Tensor | None:
        """The expert parameter values as columns of ``z_e``'s shape ``(..., E)`` (``None`` without any)."""
        E = len(self.expert_param_names)
        if not E:
            return None
        if expert is None or expert.ndim == 0 or expert.shape[-1] != E or expert.ndim > z_e.ndim:
            got = None if expert is None else tuple(expert.shape)
            raise ValueError(
                f"the known observation map reads the expert parameters {self.expert_param_names}: pass their values "
                f"as expert= of shape (B, {E}) or {(*z_e.shape[:-1], E)}, got {got}."
            )
        lead = expert.shape[:-1]
        view = expert.reshape(*lead, *([1] * (z_e.ndim - expert.ndim)), E).to(z_e.dtype)
        try:
            return view.expand(*z_e.shape[:-1], E)
        except RuntimeError:
            raise ValueError(
                f"expert= of shape {tuple(expert.shape)} does not match the states {tuple(z_e.shape)}: give one row "
                f"per trajectory, (B, {E}) with B = {z_e.shape[0]}."
            ) from None

    def equations(self) -> list[sp.Eq]:
        """``[Eq(channel, g_channel)]`` of the symbolic channels, current parameter values substituted."""
        subs = self.substitutions()
        return [sp.Eq(sp.Symbol(self.channels[i]), e.xreplace(subs)) for i, e in self.exprs.items()]

    def to_config(self) -> dict[str, Any]:
        """``{"maps": {channel: text}, "state": [...], "params": {...}}`` for :meth:`from_config`.

        Raises
        ------
        ValueError
            A channel is a callable (code, not data): pass the same map again when loading.
        """
        if self.callables:
            names = [self.channels[i] for i in self.callables]
            raise ValueError(
                f"the known maps of channels {names} are Python callables, which are code, not data; they cannot be "
                "written to a file."
            )
        maps = {
            self.channels[i]: self._text(e, f"the known map of channel {self.channels[i]!r}")
            for i, e in self.exprs.items()
        }
        out: dict[str, Any] = {"maps": maps, "state": list(self.state_names), "params": self._params_config()}
        if self.expert_param_names:
            out["expert_params"] = list(self.expert_param_names)
        return out

    def description(self) -> dict[str, Any]:
        """What a saved model records of this map: the text of the symbolic channels, the names of callables."""
        maps: dict[str, str] = {}
        for i, c in enumerate(self.channels):
            if i in self.exprs:
                maps[c] = self._text(self.exprs[i], f"the known map of channel {c!r}")
            else:
                fn = self.callables[i]
                maps[c] = "callable " + getattr(fn, "__qualname__", type(fn).__name__)
        return {"maps": maps, "state": list(self.state_names), "params": self._params_config()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> KnownMap:
        """Rebuild a map written by :meth:`to_config` (text parsed by the safe parser)."""
        if not isinstance(config, Mapping) or not {"maps", "state"} <= set(config):
            raise ValueError(f"a known-map config needs 'maps' and 'state', got {config!r}.")
        maps = config["maps"]
        if not isinstance(maps, Mapping) or not all(isinstance(v, str) for v in maps.values()):
            raise ValueError(f"a known-map config's 'maps' must map channel names to expression text, got {maps!r}.")
        callables = [c for c, v in maps.items() if v.startswith("callable ")]
        if callables:
            raise ValueError(
                f"the known maps of channels {callables} were Python callables; pass the decoder again (decoder=) to "
                "rebuild them."
            )
        params = {n: _param_from_config(n, s) for n, s in dict(config.get("params") or {}).items()}
        return cls(dict(maps), list(config["state"]), params, expert_params=list(config.get("expert_params") or []))

    def extra_repr(self) -> str:
        extra = f", expert_params={self.expert_param_names}" if self.expert_param_names else ""
        return f"channels={self.channels}, state={self.state_names}{extra}"


# ----------------------------------------------------------------------------------------------------- likelihoods
class Likelihood(nn.Module):
    """Noise model of ``n`` observed channels given their locations ``g``: the masked negative log-likelihood.

    Subclasses set :attr:`name` and :attr:`positive` and implement :meth:`per_entry`. The decoder reads
    :attr:`positive` to build a positive location (``loc · exp(net)`` for a network, ``g_known · exp(r)`` for a
    residual) instead of an additive one (``loc + scale · net``, ``g_known + scale · r``).

    Parameters
    ----------
    n
        Number of channels.
    """

    name: ClassVar[str]
    positive: ClassVar[bool] = False

    def __init__(self, n: int) -> None:
        super().__init__()
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"a likelihood needs a number of channels >= 1, got {n!r}.")
        self.n = n

    def per_entry(self, g: Tensor, x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """``−log p(x̃)`` of each entry, ``(..., n)``, for locations ``g`` and observations ``x`` ``(..., n)`` in
        channel units, with ``x̃ = (x − loc) / scale`` and ``loc``, ``scale`` ``(n,)``."""
        raise NotImplementedError

    def safe_value(self, g: Tensor) -> Tensor:
        """A value put at unobserved entries before :meth:`per_entry` (so NaN padding never reaches a gradient)."""
        return g.detach()

    def nll(self, g: Tensor, x: Tensor, mask: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        """Negative log-likelihood of the observed entries, summed per trajectory.

        Parameters
        ----------
        g, x
            ``(B, T, n)`` locations and observations in channel units (``x`` may hold anything, NaN included, where
            ``mask`` is false).
        mask
            ``(B, T, n)`` bool: observed entries.
        loc, scale
            ``(n,)`` the channels' location and scale (standardisation).

        Returns
        -------
        Tensor
            ``(B,)``: ``Σ_{t, c observed} −log p(x̃_{btc})``.
        """
        x = torch.where(mask, x.to(g.dtype), self.safe_value(g))
        per = self.per_entry(g, x, loc.to(g.dtype), scale.to(g.dtype))
        return torch.where(mask, per, torch.zeros((), dtype=per.dtype, device=per.device)).sum(dim=(1, 2))

    def config(self) -> dict[str, Any]:
        """``{"kind": name, ...options}``: what :func:`likelihood_from_spec` rebuilds this likelihood from."""
        return {"kind": self.name}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in {"channels": self.n, **self.config()}.items() if k != "kind")


class Gaussian(Likelihood):
    """``x ~ N(g, (scale · σ̃)²)`` with ``σ̃`` learned per channel in standardised units (started at 0.5).

    ``−log p(x̃) = ½ r² + log σ̃ + ½ log 2π``, ``r = (x − g) / (scale · σ̃)``.
    """

    name = "gaussian"

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.log_sigma = nn.Parameter(torch.full((n,), math.log(0.5)))

    def sigma(self) -> Tensor:
        """``(n,)`` standardised noise scales ``σ̃`` (``log σ̃`` clamped to ``[−7, 3]``)."""
        return self.log_sigma.clamp(-7.0, 3.0).exp()

    def per_entry(self, g: Tensor, x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        log_sigma = self.log_sigma.clamp(-7.0, 3.0).to(g.dtype)
        r = (x - g) / (scale * torch.exp(log_sigma))
        return 0.5 * r * r + log_sigma + 0.5 * _LOG_2PI


class StudentT(Likelihood):
    """``x = g + scale · σ̃ · ε`` with ``ε`` Student-t with ``ν`` degrees of freedom: heavy tails, so a few outliers
    (a mislabelled sample, an assay failure) do not drag the fit.

    ``−log p(x̃) = −log Γ((ν+1)/2) + log Γ(ν/2) + ½ log(νπ) + log σ̃ + (ν+1)/2 · log(1 + r²/ν)``,
    ``r = (x − g) / (scale · σ̃)``. ``σ̃`` is learned per channel (started at 0.5); ``ν`` is fixed (default 4) or
    learned per channel (``learn_df=True``, kept above 1 so the mean exists: ``ν = 1 + softplus(raw)``).

    Parameters
    ----------
    n
        Number of channels.
    df
        ``ν > 1`` (initial value when learned). Small values give heavier tails; ``ν → ∞`` is the Gaussian.
    learn_df
        Learn ``ν`` per channel.
    """

    name = "student_t"

    def __init__(self, n: int, df: float = 4.0, learn_df: bool = False) -> None:
        super().__init__(n)
        if isinstance(df, bool) or not isinstance(df, (int, float)) or not (1.0 < df < math.inf):
            raise ValueError(f"Student-t df (degrees of freedom ν) must be a number > 1, got {df!r}.")
        if not isinstance(learn_df, bool):
            raise TypeError(f"learn_df must be True or False, got {learn_df!r}.")
        self.log_sigma = nn.Parameter(torch.full((n,), math.log(0.5)))
        raw = math.log(math.expm1(float(df) - 1.0))  # inverse softplus of ν − 1
        self.df_raw = nn.Parameter(torch.full((n,), raw), requires_grad=learn_df)
        self.df0, self.learn_df = float(df), learn_df

    def df(self) -> Tensor:
        """``(n,)`` degrees of freedom ``ν``."""
        return 1.0 + nn.functional.softplus(self.df_raw)

    def per_entry(self, g: Tensor, x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        log_sigma = self.log_sigma.clamp(-7.0, 3.0).to(g.dtype)
        nu = self.df().to(g.dtype)
        r = (x - g) / (scale * torch.exp(log_sigma))
        const = torch.lgamma(nu / 2) - torch.lgamma((nu + 1) / 2) + 0.5 * torch.log(nu * math.pi)
        return const + log_sigma + 0.5 * (nu + 1) * torch.log1p(r * r / nu)

    def config(self) -> dict[str, Any]:
        return {"kind": self.name, "df": self.df0, "learn_df": self.learn_df}


class LogNormal(Likelihood):
    """``log x ~ N(log g, s²)``: positive observations (concentrations, counts of cells) with multiplicative noise.

    ``g > 0`` is the median of ``x`` (the mean is ``g · exp(s²/2)``); ``s`` is dimensionless, learned per channel
    (started at 0.5). ``−log p(x̃) = log x + log s + ½ log 2π + ½ ((log x − log g)/s)² − log scale``. Observed values
    must be ``> 0`` (a clear error otherwise); ``g`` is floored at the smallest normal number of the dtype.
    """

    name = "lognormal"
    positive = True

    def __init__(self, n: int) -> None:
        super().__init__(n)
        self.log_s = nn.Parameter(torch.full((n,), math.log(0.5)))

    def safe_value(self, g: Tensor) -> Tensor:
        return torch.ones((), dtype=g.dtype, device=g.device)

    def per_entry(self, g: Tensor, x: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        log_s = self.log_s.clamp(-7.0, 3.0).to(g.dtype)
        log_x = torch.log(x)
        r = (log_x - torch.log(g.clamp_min(torch.finfo(g.dtype).tiny))) * torch.exp(-log_s)
        return log_x + log_s + 0.5 * _LOG_2PI + 0.5 * r * r - torch.log(scale)

    def nll(self, g: Tensor, x: Tensor, mask: Tensor, loc: Tensor, scale: Tensor) -> Tensor:
        bad = mask & ~(x > 0)
        if bool(bad.any()):
            b, t, c = (int(i) for i in bad.nonzero()[0])
            raise ValueError(
                f"a log-normal likelihood needs positive observations; x[{b}, {t}, {c}] = {float(x[b, t, c])} in a "
                "log-normal channel. Use likelihood 'gaussian' or 'student_t' for that channel, or mask the entries "
                "below the detection limit."
            )
        return super().nll(g, x, mask, loc, scale)


#: The likelihoods by name.
LIKELIHOODS: dict[str, type[Likelihood]] = {c.name: c for c in (Gaussian, StudentT, LogNormal)}


def likelihood_from_spec(spec: str | Mapping[str, Any], n: int) -> Likelihood:
    """A likelihood of ``n`` channels from its name (``"student_t"``) or config (``{"kind": "student_t", "df": 3}``).

    Raises
    ------
    ValueError
        An unknown name or option.
    """
    if isinstance(spec, str):
        spec = {"kind": spec}
    if not isinstance(spec, Mapping) or not isinstance(spec.get("kind"), str):
        raise ValueError(
            f"a likelihood is given by name ({sorted(LIKELIHOODS)}) or as a dict {{'kind': name, ...options}}, got "
            f"{spec!r}."
        )
    kind = spec["kind"]
    if kind not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {kind!r}; known: {sorted(LIKELIHOODS)}.")
    options = {k: v for k, v in spec.items() if k != "kind"}
    try:
        return LIKELIHOODS[kind](n, **options)
    except TypeError as err:
        raise ValueError(f"likelihood {kind!r} got options {sorted(options)} it does not take ({err}).") from None
