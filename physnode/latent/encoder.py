"""Amortised inference of a trajectory's initial state and parameters: a GRU run backwards over its observations."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["BackwardGRUEncoder"]

#: Bounds of the encoder's log-variances (a variance between e^-12 and e^4 in the unconstrained space).
LOGVAR_MIN, LOGVAR_MAX = -12.0, 4.0


class BackwardGRUEncoder(nn.Module):
    """``q(w | x_{1:T}) = N(mean, diag(exp(logvar)))`` from a GRU run from the last observation back to the first.

    At each observation time ``t_k`` (latest first) the GRU reads ``[x_k · m_k, m_k, u(t_k), (t_k − t_0) / τ]``:
    the standardised observations with unobserved channels zeroed, the mask, the standardised inputs and the
    scaled time. Rows without any observed channel (padding, or times after the conditioning window) leave the
    hidden state unchanged, so irregular, per-trajectory times and missing channels need no imputation. The final
    hidden state gives the mean and log-variance of ``w`` (the initial state and per-trajectory parameters in
    their unconstrained space).

    Parameters
    ----------
    data_dim, input_dim
        Observed channels ``D_x`` and input channels ``C``.
    out_dim
        Size of ``w``.
    hidden
        GRU width.
    """

    def __init__(self, data_dim: int, input_dim: int, out_dim: int, hidden: int = 32) -> None:
        super().__init__()
        self.data_dim, self.input_dim, self.out_dim, self.hidden = data_dim, input_dim, out_dim, hidden
        self.cell = nn.GRUCell(2 * data_dim + input_dim + 1, hidden)
        self.head = nn.Linear(hidden, 2 * out_dim)

    def forward(self, times: Tensor, values: Tensor, mask: Tensor, inputs: Tensor | None) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of ``w``.

        Parameters
        ----------
        times
            ``(B, T)`` scaled times ``(t − t_0) / τ``.
        values, mask
            ``(B, T, D_x)`` standardised observations and bool mask (false where not observed or not to be used).
        inputs
            ``(B, T, C)`` standardised inputs at the observation times (``None`` if ``C = 0``).

        Returns
        -------
        mean, logvar
            ``(B, out_dim)`` each.
        """
        B, T, _ = values.shape
        m = mask.to(values.dtype)
        parts = [values * m, m]
        if self.input_dim:
            if inputs is None:
                raise ValueError(f"the encoder expects inputs of shape (B, T, {self.input_dim}), got None.")
            parts.append(inputs.to(values.dtype))
        parts.append(times.unsqueeze(-1).to(values.dtype))
        x = torch.cat(parts, dim=-1)
        seen = mask.any(dim=-1, keepdim=True)  # (B, T, 1)
        h = values.new_zeros((B, self.hidden))
        for k in range(T - 1, -1, -1):
            h = torch.where(seen[:, k], self.cell(x[:, k], h), h)
        out = self.head(h)
        mean, logvar = out[:, : self.out_dim], out[:, self.out_dim :]
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)
