"""Forecast bands: parameter uncertainty of a fit propagated to predictions, and the :class:`Forecast` they form.

Two methods turn the Gauss–Newton covariance ``Σ`` of a fit's unconstrained unknowns ``θ`` (the raw tensors of the
learnable parameters, and the initial states when they were fitted; :attr:`physnode.fit.FitResult.raw_covariance`)
into bands around the predictions ``y(t; θ)``:

``"linear"`` (linearised propagation, the delta method)
    ``J = ∂y/∂θ`` at ``θ̂`` by differentiating one ``direct`` solve (all columns in one batched double-backward pass,
    :func:`physnode.fit.uncertainty.residual_jacobian`); ``Var y = diag(J Σ Jᵀ) + σ²`` and the band is
    ``ŷ ± z·sd`` with ``z = Φ⁻¹((1 + level)/2)``. Cheap (about four solves) and exact for a model linear in ``θ``.
``"laplace"`` (sampling the Laplace approximation)
    ``θ_s ~ N(θ̂, Σ)`` (``n_samples`` draws), each solved (in one batched solve when the model can be evaluated
    with a batch of parameter sets by ``torch.func.vmap``, else one solve per draw), observation noise ``ε ~ N(0,
    σ²)`` added to each; the band holds the empirical ``(1 ∓ level)/2`` quantiles. It keeps the non-linearity of
    the solve (bands may be asymmetric) and the parameters' constraints (draws are made on the raw tensors).

``σ`` is the observation noise: with it the band is a *predictive* band (where a new observation falls); without it
(``σ = 0``) a *confidence* band (where the noise-free trajectory lies). Network weights are held at their fitted
values in both.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from ._atomic import atomic_write
from .data.trajectories import Trajectories

__all__ = ["UNCERTAINTY_METHODS", "Band", "Forecast", "laplace_samples", "linear_variance", "quantiles"]

#: The accepted ``forecast(..., uncertainty=...)`` names.
UNCERTAINTY_METHODS: tuple[str, ...] = ("linear", "laplace")

#: Suffixes of the band variables written next to each channel ``x``: ``x_lower``, ``x_upper``, ``x_std``.
BAND_SUFFIXES: tuple[str, ...] = ("_lower", "_upper", "_std")


class Band(NamedTuple):
    """One channel of one trajectory of a :class:`Forecast`, ready to plot (1-D CPU tensors of the same length).

    ``t`` the times, ``mean`` the central prediction, ``lower``/``upper`` the band, ``std`` the standard deviation.
    """

    t: Tensor
    mean: Tensor
    lower: Tensor
    upper: Tensor
    std: Tensor


@dataclass(frozen=True)
class Forecast:
    """Predictions with uncertainty bands, as returned by ``physnode.forecast(..., uncertainty=...)``.

    Attributes
    ----------
    mean
        :class:`~physnode.data.Trajectories` ``(N, T, S)``: the prediction at the fitted parameters
        (``"linear"``) or the mean of the draws (``"laplace"``); channels, times, ids and metadata as the plain
        forecast's.
    std
        ``(N, T, S)`` standard deviation of the predictive (or confidence) distribution, in the channels' units.
    lower, upper
        ``(N, T, S)`` band limits: the central ``level`` interval.
    level
        Probability content of the band, in ``(0, 1)`` (e.g. ``0.95``).
    method
        ``"linear"`` or ``"laplace"`` (see :mod:`physnode.predictive`).
    noise
        ``(S,)`` observation-noise standard deviation included per channel (0 where none): channels with
        ``noise > 0`` have predictive bands, the others confidence bands.
    samples
        ``(n_samples, N, T, S)`` the draws (with their noise) for ``"laplace"``, else ``None``.
    """

    mean: Trajectories
    std: Tensor
    lower: Tensor
    upper: Tensor
    level: float
    method: str
    noise: Tensor
    samples: Tensor | None = None

    @property
    def channels(self) -> list[str]:
        """Channel names, in order."""
        return list(self.mean.channels)

    @property
    def times(self) -> Tensor:
        """``(N, T)`` forecast times."""
        return self.mean.times

    def kind(self, channel: str) -> str:
        """``"predictive"`` when the channel's band includes observation noise, else ``"confidence"``."""
        return "predictive" if float(self.noise[self._index(channel)]) > 0 else "confidence"

    def _index(self, channel: str) -> int:
        if channel not in self.mean.channels:
            raise KeyError(f"no channel {channel!r} in this forecast; its channels are {self.mean.channels}.")
        return self.mean.channels.index(channel)

    def band(self, channel: str, trajectory: int = 0) -> Band:
        """Times, mean, lower and upper limit and standard deviation of one channel of one trajectory (what a
        plot needs), as 1-D CPU tensors trimmed to the trajectory's length.

        Raises
        ------
        KeyError
            An unknown channel (the message lists the channels).
        IndexError
            A trajectory index outside ``0 .. N - 1``.
        """
        j = self._index(channel)
        N = self.mean.n_trajectories
        if not isinstance(trajectory, int) or not -N <= trajectory < N:
            raise IndexError(f"trajectory must be an index in 0 .. {N - 1}, got {trajectory!r}.")
        n = int(self.mean.lengths[trajectory])

        def row(x: Tensor) -> Tensor:
            return x[trajectory, :n].detach().cpu()

        return Band(
            row(self.mean.times),
            row(self.mean.values[..., j]),
            row(self.lower[..., j]),
            row(self.upper[..., j]),
            row(self.std[..., j]),
        )

    def to_trajectories(self) -> Trajectories:
        """The forecast as one :class:`~physnode.data.Trajectories`: for every channel ``x`` the channels ``x``,
        ``x_lower``, ``x_upper`` and ``x_std`` (in that order, same units); ``attrs["forecast_uncertainty"]`` holds
        the method, level and noise."""
        m = self.mean
        parts, channels, units = [], [], []
        for j, (c, u) in enumerate(zip(m.channels, m.units, strict=True)):
            parts += [m.values[..., j], self.lower[..., j], self.upper[..., j], self.std[..., j]]
            channels += [c] + [c + s for s in BAND_SUFFIXES]
            units += [u] * 4
        values = torch.stack(parts, dim=-1)
        info = {
            "method": self.method,
            "level": self.level,
            "noise": dict(zip(m.channels, self.noise.detach().cpu().tolist(), strict=True)),
        }
        if self.samples is not None:
            info["n_samples"] = int(self.samples.shape[0])
        attrs = {**m.attrs, "forecast_uncertainty": info}
        return Trajectories(
            m.times,
            values,
            lengths=m.lengths,
            channels=channels,
            units=units,
            time_units=m.time_units,
            metadata=m.metadata,
            attrs=attrs,
            ids=m.ids,
        )

    def to_xarray(self, standard_names: Mapping[str, str] | None = None) -> Any:
        """An ``xarray.Dataset`` in the CF trajectory layout of :mod:`physnode.data.io` with the band variables.

        Each channel variable ``x`` gets ``ancillary_variables = "x_lower x_upper x_std"``; ``x_std`` is described
        as the standard deviation and ``x_lower``/``x_upper`` as the limits of the ``level`` band (attributes
        ``physnode_band`` = ``"predictive"`` / ``"confidence"`` and ``physnode_band_level``). With
        ``standard_names={"x": "<CF standard name>"}`` the channel gets that ``standard_name`` and ``x_std`` the
        CF modifier form ``"<standard name> standard_error"``.
        """
        from .data.io import to_xarray

        names = dict(standard_names or {})
        unknown = sorted(set(names) - set(self.channels))
        if unknown:
            raise ValueError(f"standard_names names unknown channels {unknown}; the channels are {self.channels}.")
        ds = to_xarray(self.to_trajectories())
        pct = f"{100 * self.level:g} %"
        for c in self.channels:
            kind = self.kind(c)
            ds[c].attrs["ancillary_variables"] = " ".join(c + s for s in BAND_SUFFIXES)
            ds[c].attrs["long_name"] = f"{c}: {'mean of the draws' if self.method == 'laplace' else 'prediction'}"
            for s, what in (("_lower", "lower limit"), ("_upper", "upper limit")):
                ds[c + s].attrs["long_name"] = f"{c}: {what} of the {pct} {kind} band ({self.method})"
            ds[c + "_std"].attrs["long_name"] = f"{c}: standard deviation of the {kind} distribution ({self.method})"
            for s in BAND_SUFFIXES:
                ds[c + s].attrs["physnode_band"] = kind
                ds[c + s].attrs["physnode_band_level"] = float(self.level)
                ds[c + s].attrs["physnode_band_method"] = self.method
            if c in names:
                ds[c].attrs["standard_name"] = names[c]
                ds[c + "_std"].attrs["standard_name"] = f"{names[c]} standard_error"
        ds.attrs["physnode_band_method"] = self.method
        ds.attrs["physnode_band_level"] = float(self.level)
        return ds

    def to_netcdf(self, path: str | os.PathLike, standard_names: Mapping[str, str] | None = None) -> None:
        """Write :meth:`to_xarray` to a ``.nc`` file atomically (readable back with :func:`physnode.data.load`,
        which returns :meth:`to_trajectories`).

        Raises
        ------
        ValueError
            ``path`` does not end in ``.nc``.
        FileNotFoundError
            The folder does not exist.
        """
        path = Path(path)
        if path.suffix.lower() != ".nc":
            raise ValueError(f"forecast bands are written to netCDF: the path must end in .nc, got {str(path)!r}.")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise FileNotFoundError(f"folder {folder} does not exist; create it before saving {path.name}.")
        ds = self.to_xarray(standard_names)
        atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))

    def __repr__(self) -> str:
        N, T, S = self.lower.shape
        return (
            f"Forecast({self.method}, level={self.level:g}, N={N}, T={T}, channels={self.channels}, "
            f"predictive on {int((self.noise > 0).sum())} of {S} channels)"
        )


# ------------------------------------------------------------------------------------------ the two methods
def linear_variance(prediction: Tensor, theta: Sequence[Tensor], cov: Tensor) -> Tensor:
    """``diag(J Σ Jᵀ)`` reshaped like ``prediction``, with ``J = ∂prediction/∂θ`` (``(M, P)``) of a prediction
    computed with a graph that supports double backward (a ``direct`` solve).

    Parameters
    ----------
    prediction
        Any shape, ``M`` entries, depending on ``theta``.
    theta
        The ``P`` unknowns (flattened in order), as the graph saw them.
    cov
        ``(P, P)`` their covariance.
    """
    from .fit.uncertainty import residual_jacobian

    J = residual_jacobian(prediction.reshape(-1), list(theta)).to(cov.dtype)
    var = ((J @ cov) * J).sum(-1)
    return var.clamp_min(0).reshape(prediction.shape)


def _sqrt_psd(cov: Tensor) -> Tensor:
    """``L`` with ``L Lᵀ = cov`` for a symmetric positive semi-definite ``cov`` (eigenvalues below 0 set to 0)."""
    lam, V = torch.linalg.eigh(0.5 * (cov + cov.T))
    return V * lam.clamp_min(0).sqrt()


def laplace_samples(theta_hat: Tensor, cov: Tensor, n_samples: int, generator: torch.Generator | None = None) -> Tensor:
    """``(n_samples, P)`` draws from ``N(θ̂, Σ)`` (``θ̂ (P,)``, ``Σ (P, P)``); ``generator`` on the CPU."""
    z = torch.randn(n_samples, theta_hat.numel(), generator=generator, dtype=torch.float64)
    L = _sqrt_psd(cov.detach().to(torch.float64).cpu())
    return (theta_hat.detach().cpu().to(torch.float64) + z @ L.T).to(dtype=theta_hat.dtype, device=theta_hat.device)


def quantiles(samples: Tensor, probs: Sequence[float]) -> list[Tensor]:
    """Empirical quantiles along the first axis (linear interpolation between order statistics, as
    ``numpy.quantile``'s default); works for inputs larger than ``torch.quantile`` accepts."""
    s, _ = torch.sort(samples, dim=0)
    n = s.shape[0]
    out = []
    for p in probs:
        pos = p * (n - 1)
        lo = min(math.floor(pos), n - 1)
        hi = min(lo + 1, n - 1)
        w = pos - lo
        out.append(s[lo] * (1 - w) + s[hi] * w)
    return out


class VmapMismatch(RuntimeError):
    """The vmapped evaluation of a model disagreed with the model's own (see :class:`PerSampleModel`)."""


class PerSampleModel(nn.Module):
    """``model`` evaluated with one parameter set per block of ``N`` rows (``torch.func.vmap`` over the sets).

    The state ``(n·N, S)`` holds ``n`` blocks of ``N`` trajectories; block ``s`` is evaluated with the tensors
    ``params[name][s]`` in place of the model's tensors ``name``. Further arguments (the inputs ``u (n·N, C)`` of
    ``model(t, y, u)``) are split into blocks the same way. The first evaluation is checked: block 0 must equal
    ``model`` itself with its tensors set to ``params[...][0]`` (``raws``), else :class:`VmapMismatch`.
    """

    def __init__(self, model: nn.Module, params: Mapping[str, Tensor], n: int, raws: Sequence[Tensor]) -> None:
        super().__init__()
        self.model, self.params, self.n = model, dict(params), n
        self.raws = list(raws)
        self.checked = False

    def forward(self, t: Tensor, y: Tensor, *args: Tensor) -> Tensor:
        n = self.n
        B, S = y.shape
        N = B // n
        tb = t.reshape(n, N) if t.ndim else t.expand(B).reshape(n, N)
        blocks = [a.reshape(n, N, *a.shape[1:]) for a in args]

        def one(p: dict[str, Tensor], ts: Tensor, ys: Tensor, *extra: Tensor) -> Tensor:
            return torch.func.functional_call(self.model, p, (ts, ys, *extra))

        out = torch.func.vmap(one)(self.params, tb, y.reshape(n, N, S), *blocks).reshape(B, S)
        if not self.checked:
            with _assigned(self.raws, [p[0] for p in self.params.values()]):
                ref = self.model(tb[0], y[:N], *[b[0] for b in blocks])
            scale = float(ref.abs().max()) if ref.numel() else 0.0
            if ref.shape != out[:N].shape or not bool(((out[:N] - ref).abs() <= 1e-9 * scale + 1e-300).all()):
                raise VmapMismatch("the vmapped evaluation of the model differs from its own evaluation")
            self.checked = True
        return out


def solve_samples(
    model: nn.Module,
    raws: Sequence[Tensor],
    draws: Tensor,
    y0: Tensor,
    y0_draws: Tensor | None,
    solve: Callable[[nn.Module, Tensor], Tensor],
) -> Tensor:
    """Solve ``model`` once per parameter draw: ``(n, N, T, S)``.

    ``draws (n, P_raw)`` are values of the flattened ``raws`` (tensors of ``model``); ``y0 (N, S)`` the initial
    states, or per draw ``y0_draws (n, N, S)``; ``solve(func, y0_rows)`` solves ``(rows, S)`` initial states. One
    batched solve of ``n·N`` rows through :class:`PerSampleModel` when ``model`` evaluates correctly under
    ``vmap`` (checked on its first evaluation), else one solve per draw with the model's tensors set in turn
    (restored afterwards). A :class:`~physnode.errors.SolverError` of a draw is raised, not retried.
    """
    from .errors import SolverError

    n = draws.shape[0]
    N, S = y0.shape
    starts = y0_draws if y0_draws is not None else y0.unsqueeze(0).expand(n, N, S)
    names = {id(p): k for k, p in model.named_parameters()}
    split = _split(draws, raws)
    with torch.no_grad():
        if all(id(r) in names for r in raws):
            batched = PerSampleModel(model, {names[id(r)]: s for r, s in zip(raws, split, strict=True)}, n, raws)
            try:
                ys = solve(batched, starts.reshape(n * N, S))
                return ys.reshape(n, N, *ys.shape[1:])
            except SolverError:
                raise
            except Exception:  # a model that vmap cannot evaluate (or evaluates differently): one solve per draw
                pass
        out = []
        for s in range(n):
            with _assigned(raws, [x[s] for x in split]):
                out.append(solve(model, starts[s]))
        return torch.stack(out)


def _split(flat: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """``(n, P)`` → one ``(n, *t.shape)`` tensor per ``t`` in ``like``."""
    out, i = [], 0
    for t in like:
        k = t.numel()
        out.append(flat[:, i : i + k].reshape(flat.shape[0], *t.shape).to(t))
        i += k
    return out


class _assigned:
    """Context manager: the tensors hold the given values inside, their own values again after."""

    def __init__(self, tensors: Sequence[Tensor], values: Sequence[Tensor]) -> None:
        self.tensors, self.values = list(tensors), list(values)
        self.saved: list[Tensor] = []

    def __enter__(self) -> None:
        with torch.no_grad():
            self.saved = [t.detach().clone() for t in self.tensors]
            for t, v in zip(self.tensors, self.values, strict=True):
                t.copy_(v)

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for t, v in zip(self.tensors, self.saved, strict=True):
                t.copy_(v)
