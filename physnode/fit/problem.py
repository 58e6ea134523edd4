"""The prepared fitting problem: data on the solve grid, initial states, segments, and the residuals."""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..data.inputs import Inputs
from ..data.trajectories import Trajectories
from ..odeint import solve
from ..options import SolveOptions
from .initial import initial_states, initial_times
from .loss import gaussian_nll, masked_errors, time_weights
from .observe import Observation
from .shooting import MultipleShooting, SegmentLayout

__all__ = ["Evaluation", "FitProblem", "takes_inputs"]


def takes_inputs(model: object) -> bool:
    """Whether ``model`` can be called as ``model(t, y, u)`` (three positional arguments, or ``*args``)."""
    try:
        params = inspect.signature(model).parameters.values()  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


@dataclass
class Evaluation:
    """One evaluation on a set of trajectories.

    ``errors``/``mask``/``weight`` on the flattened segment layout ``(n, K·L, D)`` / ``(n, K·L)``; ``continuity``
    ``(n, K−1, S)`` or ``None``; ``stats`` the solve statistics (``nfe``).
    """

    errors: Tensor
    mask: Tensor
    weight: Tensor | None
    continuity: Tensor | None
    stats: object | None


class FitProblem:
    """Everything a fit evaluates, independent of the optimiser.

    Builds the solve grid (the data times, with each trajectory's ``initial_time`` prepended when it precedes
    the first observation), the time weights, the segment layout and the learnable tensors. Every solve uses
    ``options`` (:class:`~physnode.SolveOptions`), except that :meth:`evaluate` may name another gradient method.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Trajectories,
        obs: Observation,
        state_dim: int,
        *,
        options: SolveOptions,
        learn_initial_state: bool,
        time_weight,
        shooting: MultipleShooting,
        loss: str,
    ) -> None:
        self.model = model
        self.data = data
        self.obs = obs
        self.S = state_dim
        self.solve_options = options
        self.loss_name = loss
        self.shooting = shooting
        #: The data's external inputs, passed to every solve when the model takes them (``model(t, y, u)``).
        self.inputs: Inputs | None = data.inputs if data.inputs is not None and takes_inputs(model) else None
        N, _T, D = data.values.shape
        self.N, self.D = N, D
        dtype, device = data.values.dtype, data.device

        y0 = initial_states(data, state_dim, obs, learnable=learn_initial_state).to(device)
        t_init = initial_times(data).to(device=device, dtype=data.times.dtype)
        first = data.times[:, 0]
        scale = torch.clamp(first.abs(), min=1.0)
        same = (t_init - first).abs() <= 1e-12 * scale
        before = t_init < first
        if bool(same.all()):
            times, values, mask, lengths = data.times, data.values, data.mask, data.lengths
        elif bool(before.all()):
            times = torch.cat([t_init.unsqueeze(1), data.times], dim=1)
            values = torch.cat([torch.zeros_like(data.values[:, :1]), data.values], dim=1)
            mask = torch.cat([torch.zeros_like(data.mask[:, :1]), data.mask], dim=1)
            lengths = data.lengths + 1
        else:
            i = int(torch.nonzero(~(same | before))[0]) if bool((~(same | before)).any()) else 0
            raise ValueError(
                f"trajectory {i}: metadata 'initial_time' = {float(t_init[i]):.10g} must equal or precede the first "
                f"observation time {float(first[i]):.10g}, and either all trajectories start at their first "
                "observation or all before it. Fix the metadata or split the data."
            )
        self.times, self.values, self.mask, self.lengths = times, values, mask, lengths
        tm = data.time_mask
        valid_t = data.times[tm]
        self.t_lo, self.t_hi = float(valid_t.min()), float(valid_t.max())
        self.weight = time_weights(time_weight, times, self.t_lo, self.t_hi)

        self.layout = SegmentLayout(times, lengths, shooting.segments)
        L = self.layout
        self.seg_times = L.times.reshape(N * L.K, L.L)
        self.seg_values = L.gather(values, 0.0)  # (N, K, L, D)
        self.seg_mask = L.gather(mask, False) & L.keep.unsqueeze(0).unsqueeze(-1)
        self.seg_weight = None if self.weight is None else L.gather(self.weight, 0.0)
        self.seg_obs_times = L.gather(times, math.inf)  # for STEER cut-offs

        self.y0_fixed = y0
        self.y0_param = nn.Parameter(y0.clone()) if learn_initial_state else None
        self.seg_param: nn.Parameter | None = None
        self.log_sigma: nn.Parameter | None = None
        if L.K > 1 or loss == "gaussian_nll":
            with torch.no_grad():
                full = solve(model, y0, times, options=options, inputs=self.inputs).ys
            if L.K > 1:
                self.seg_param = nn.Parameter(L.starts(full).clone())
            if loss == "gaussian_nll":
                e = masked_errors(obs(full), values, mask)
                cnt = mask.sum(dim=(0, 1)).clamp_min(1)
                rms = (e.square().sum(dim=(0, 1)) / cnt).sqrt()
                floor = 1e-6 * values.abs().amax(dim=(0, 1)).clamp_min(1e-12)
                self.log_sigma = nn.Parameter(torch.log(torch.maximum(rms, floor)).to(dtype))

    # --------------------------------------------------------------------------------------------------------
    def learnables(self) -> dict[str, nn.Parameter]:
        """The fit's own learnable tensors (besides the model's): initial states, segment states, noise."""
        out = {}
        if self.y0_param is not None:
            out["initial_state"] = self.y0_param
        if self.seg_param is not None:
            out["segments"] = self.seg_param
        if self.log_sigma is not None:
            out["log_sigma"] = self.log_sigma
        return out

    def initial_state(self) -> Tensor:
        """``(N, S)`` current initial states."""
        return self.y0_fixed if self.y0_param is None else self.y0_param

    def observed_mask(self, idx: Tensor, t_end: float | None) -> Tensor:
        """``(n, K, L, D)`` entries scored for trajectories ``idx`` with observations up to ``t_end``."""
        m = self.seg_mask[idx]
        if t_end is not None:
            m = m & (self.seg_obs_times[idx] <= t_end).unsqueeze(-1)
        return m

    def count(self, idx: Tensor, t_end: float | None) -> int:
        """Number of scored observations of trajectories ``idx`` (all ranks together: every rank has all data)."""
        return int(self.observed_mask(idx, t_end).sum())

    def evaluate(self, idx: Tensor, t_end: float | None = None, grad: str | None = None) -> Evaluation:
        """Solve trajectories ``idx`` (segment layout) and compare with the data."""
        K, Lp = self.layout.K, self.layout.L
        n = idx.numel()
        y0 = self.initial_state()[idx]
        if K > 1:
            starts = torch.cat([y0.unsqueeze(1), self.seg_param[idx]], dim=1).reshape(n * K, self.S)
        else:
            starts = y0
        rows = (idx.unsqueeze(1) * K + torch.arange(K, device=idx.device)).reshape(-1)
        times = self.seg_times[rows]
        mask = self.observed_mask(idx, t_end)
        if t_end is not None and K == 1:
            # Stop the solve at the last grid point still scored by any trajectory of the batch.
            used = torch.nonzero(mask.any(dim=(0, 1, 3)))
            last = int(used.max()) + 1 if used.numel() else 1
            times = times[:, : max(last, 2)] if times.shape[1] >= 2 else times
            mask = mask[:, :, : times.shape[1]]
        opts = self.solve_options if grad is None else self.solve_options.replace(grad=grad)
        # Each trajectory's inputs, once per segment (rows: trajectory-major, as the starts).
        inputs = None if self.inputs is None else self.inputs[idx.repeat_interleave(K).to(self.inputs.times.device)]
        sol = solve(self.model, starts, times, options=opts, inputs=inputs)
        Lt = times.shape[1]
        pred = sol.ys.reshape(n, K, Lt, self.S)
        values = self.seg_values[idx][:, :, :Lt]
        errors = masked_errors(self.obs(pred), values, mask)
        weight = None if self.seg_weight is None else self.seg_weight[idx][:, :, :Lt].reshape(n, K * Lt)
        cont = None
        if K > 1:
            cont = pred[:, :-1, Lp - 1, :] - self.seg_param[idx]
        return Evaluation(errors.reshape(n, K * Lt, self.D), mask.reshape(n, K * Lt, self.D), weight, cont, sol.stats)

    def residuals(self, ev: Evaluation, n_obs: int, n_batch: int, *, normalised: bool = True) -> Tensor:
        """Residual vector ``r`` with ``Σ r²`` the MSE loss (``normalised``) or ``n_obs`` times it.

        Data part ``sqrt(w) e`` (over ``sqrt(n_obs)`` when normalised) on every entry (zeros where unobserved);
        continuity part ``sqrt(penalty / n_cont) c`` with ``n_cont = n_batch (K−1) S`` (times ``sqrt(n_obs)`` when
        not normalised). For ``gaussian_nll`` (unnormalised) the data part is whitened by the fitted noise.
        """
        e = ev.errors
        if ev.weight is not None:
            e = e * ev.weight.sqrt().unsqueeze(-1)
        if self.log_sigma is not None and not normalised:
            e = e * torch.exp(-self.log_sigma)
        scale = 1.0 / math.sqrt(max(n_obs, 1)) if normalised else 1.0
        parts = [(e * scale).reshape(-1)]
        if ev.continuity is not None and self.shooting.penalty > 0:
            n_cont = max(n_batch * (self.layout.K - 1) * self.S, 1)
            c_scale = math.sqrt(self.shooting.penalty / n_cont) * (1.0 if normalised else math.sqrt(max(n_obs, 1)))
            parts.append((ev.continuity * c_scale).reshape(-1))
        return torch.cat(parts)

    def loss(self, ev: Evaluation, n_obs: int, n_batch: int) -> Tensor:
        """The (share of the) loss: MSE via the residuals, or the Gaussian NLL plus the continuity penalty."""
        if self.loss_name == "mse":
            return self.residuals(ev, n_obs, n_batch).square().sum()
        value = gaussian_nll(ev.errors, ev.mask, self.log_sigma, ev.weight, max(n_obs, 1))
        if ev.continuity is not None and self.shooting.penalty > 0:
            n_cont = max(n_batch * (self.layout.K - 1) * self.S, 1)
            value = value + self.shooting.penalty * ev.continuity.square().sum() / n_cont
        return value
