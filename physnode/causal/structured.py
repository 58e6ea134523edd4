"""``StructuredODE``: one small network per variable, evaluated as one batched computation.

Variable ``i`` has its own MLP ``f_i``; its input layer ``W_i`` (``H × n_in``) reads the whole state, and the
columns of ``W_i`` that read source variable ``j`` form the group ``W_i[:, j]`` (for a second-order model the
columns of both ``x_j`` and ``v_j``). The weighted adjacency is ``A[i, j] = ||W_i[:, j]||_2``: ``A[i, j] = 0``
exactly means that ``x_j`` does not enter the derivative of ``x_i`` (``j → i`` is absent). A group lasso on these
groups (applied as a proximal step, :mod:`physnode.causal.prox`) makes the adjacency sparse.

Optional skip paths read the same groups: ``linear=True`` adds ``Σ_c L[i, c] y_c`` and ``multiplicative=True``
adds ``x_i · Σ_c M[i, c] y_c`` (the form of generalised Lotka–Volterra and mass-action kinetics) to ``f_i``. Their
weights of source ``j`` belong to the group of ``j``, so ``A[i, j] = ||(W_i[:, j], L[i, j], M[i, j])||_2`` and the
group lasso removes a source from all paths at once; mechanisms that are linear or bilinear then extrapolate
(linearly / bilinearly) outside the training states, where a tanh network saturates.

All ``d`` networks are stored as stacked tensors and evaluated together (one matrix product, or one batched
``bmm``, per layer), so the cost is a handful of kernel launches whatever ``d``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["ACTIVATIONS", "StructuredODE", "find_structured"]

#: Names accepted by ``activation=``.
ACTIVATIONS = {"tanh": torch.tanh, "softplus": F.softplus, "silu": F.silu, "gelu": F.gelu, "sigmoid": torch.sigmoid}


def _check_mask(mask: Tensor | None, d: int, what: str) -> Tensor | None:
    if mask is None:
        return None
    m = torch.as_tensor(mask)
    if m.shape != (d, d):
        raise ValueError(
            f"{what} must be a (d, d) = ({d}, {d}) boolean matrix with [i, j] for the edge j -> i, got shape "
            f"{tuple(m.shape)}."
        )
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError(f"{what} must hold booleans (or 0/1), got values {torch.unique(m).tolist()[:5]}.")
        m = m.bool()
    return m


class StructuredODE(nn.Module):
    """Neural right-hand side with one MLP per variable and a group-sparse input layer.

    First order (``order=1``): the state is ``x (..., d)`` and ``dx_i/dt = f_i(x)``.
    Second order (``order=2``): the state is ``y = [x, v] (..., 2d)``, ``dx/dt = v`` and ``dv_i/dt = f_i(x, v)``;
    the group of source ``j`` holds the columns of both ``x_j`` and ``v_j``.

    Parameters
    ----------
    d
        Number of variables (positions for ``order=2``).
    order
        1 or 2.
    hidden
        Hidden widths of each variable's MLP, e.g. ``(16,)`` or ``(32, 32)``.
    activation
        One of :data:`ACTIVATIONS`.
    edges
        Optional ``(d, d)`` boolean matrix of *allowed* edges, ``edges[i, j]`` for ``j → i``; ``False`` entries are
        known to be absent: their groups are zero and stay zero.
    known
        Optional ``(d, d)`` boolean matrix of edges known to be present: never penalised by the proximal step.
    state_names
        Names of the state components (default ``x1 .. xd``, and ``v1 .. vd`` for ``order=2``).
    field_only
        Return only the learned field ``(..., d)`` (``dx/dt`` or, for ``order=2``, the acceleration) instead of
        the full state derivative; use this when the model is the correction of a
        :class:`~physnode.physics.Hybrid` (with ``on="velocities"`` for ``order=2``).
    dtype, device
        Of the parameters (default float64, CPU).
    generator
        Seeds the initial weights (uniform in ``±1/sqrt(fan_in)`` per layer, output layer scaled by ``out_scale``).
    out_scale
        Factor on the initial output weights (small values start near ``f = 0``).
    linear
        Add the linear skip path ``Σ_c L[i, c] y_c`` (weights ``L (d, n_in)``, initially zero) to ``f_i``.
    multiplicative
        Add the multiplicative path ``x_i · Σ_c M[i, c] y_c`` (weights ``M (d, n_in)``, initially zero) to ``f_i``.
    mlp
        Optional ``(d,)`` boolean: the variables whose ``f_i`` has an MLP term (default all). For a ``False`` entry
        the MLP's output row ``W_out[i]`` is zero and stays zero (no gradient reaches it), so ``f_i`` is its skip
        paths plus the constant ``b_out[i]``; e.g. to refit, without the residual lasso, a model whose MLPs that
        lasso switched off (``mlp=(W_out != 0).any(1)``).

    Attributes
    ----------
    W_in
        ``(d, H_1, n_in)`` stacked input layers, ``n_in = order · d``; ``W_in[i][:, c]`` reads state column ``c``.
    W_lin, W_mul
        ``(d, n_in)`` weights of the skip paths (``None`` when not enabled).
    source
        ``(n_in,)`` source variable of each input column (``c mod d``).
    """

    def __init__(
        self,
        d: int,
        *,
        order: int = 1,
        hidden: Sequence[int] = (16,),
        activation: str = "tanh",
        edges: Tensor | None = None,
        known: Tensor | None = None,
        state_names: Sequence[str] | None = None,
        field_only: bool = False,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str | None = None,
        generator: torch.Generator | None = None,
        out_scale: float = 1.0,
        linear: bool = False,
        multiplicative: bool = False,
        mlp: Tensor | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"d (number of variables) must be a positive integer, got {d!r}.")
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (dx/dt = f(x)) or 2 (d2x/dt2 = f(x, dx/dt)), got {order!r}.")
        hidden = tuple(hidden)
        if not hidden or not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty sequence of positive widths such as (16,), got {hidden!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}.")
        self.d, self.order, self.hidden, self.activation = d, order, hidden, activation
        self.field_only = bool(field_only)
        n_in = order * d
        names = list(state_names) if state_names is not None else self.default_names(d, order)
        if len(names) != n_in or len(set(names)) != n_in:
            raise ValueError(f"state_names must be {n_in} distinct names (order {order}, d = {d}), got {names!r}.")
        self.state_names = names
        kw = {"dtype": dtype, "device": device}

        def uniform(shape: tuple[int, ...], fan_in: int, scale: float = 1.0) -> nn.Parameter:
            u = torch.rand(shape, generator=generator, dtype=dtype).to(device)
            return nn.Parameter(scale * (2 * u - 1) / fan_in**0.5)

        self.W_in = uniform((d, hidden[0], n_in), n_in)
        self.b_in = uniform((d, hidden[0]), n_in)
        self.W_hidden = nn.ParameterList([uniform((d, h, hp), hp) for hp, h in itertools.pairwise(hidden)])
        self.b_hidden = nn.ParameterList([uniform((d, h), hp) for hp, h in itertools.pairwise(hidden)])
        self.W_out = uniform((d, hidden[-1]), hidden[-1], out_scale)
        self.b_out = uniform((d,), hidden[-1], out_scale)
        self.linear, self.multiplicative = bool(linear), bool(multiplicative)
        self.W_lin = nn.Parameter(torch.zeros(d, n_in, **kw)) if self.linear else None
        self.W_mul = nn.Parameter(torch.zeros(d, n_in, **kw)) if self.multiplicative else None
        self.register_buffer("source", torch.arange(n_in, device=device) % d, persistent=False)
        allowed = _check_mask(edges, d, "edges")
        self.register_buffer("allowed_edges", None if allowed is None else allowed.to(device))
        known_m = _check_mask(known, d, "known")
        if known_m is not None and allowed is not None and bool((known_m & ~allowed).any()):
            i, j = (known_m & ~allowed).nonzero()[0].tolist()
            raise ValueError(f"edge {j} -> {i} is marked both known (present) and not allowed (absent); fix one mask.")
        self.register_buffer("known_edges", None if known_m is None else known_m.to(device))
        if allowed is not None:
            self.register_buffer("input_mask", allowed[:, self.source.cpu()].unsqueeze(1).to(**kw))
            with torch.no_grad():
                self.W_in.mul_(self.input_mask)
        else:
            self.input_mask = None
        if mlp is None:
            self.output_mask = None
        else:
            keep = torch.as_tensor(mlp)
            if keep.shape != (d,) or not bool(((keep == 0) | (keep == 1)).all()):
                raise ValueError(
                    f"mlp must be a (d,) = ({d},) boolean vector, True where variable i keeps its MLP term, got "
                    f"shape {tuple(keep.shape)} and values {torch.unique(keep).tolist()[:5]}."
                )
            self.register_buffer("output_mask", keep.to(**kw).unsqueeze(1))  # (d, 1)
            with torch.no_grad():
                self.W_out.mul_(self.output_mask)
        self._act = ACTIVATIONS[activation]

    @staticmethod
    def default_names(d: int, order: int = 1) -> list[str]:
        """``["x1", ..., "xd"]`` (plus ``["v1", ..., "vd"]`` for ``order=2``)."""
        names = [f"x{i}" for i in range(1, d + 1)]
        return names + [f"v{i}" for i in range(1, d + 1)] if order == 2 else names

    @property
    def variable_names(self) -> list[str]:
        """The ``d`` variable names (positions for ``order=2``): the rows and columns of the adjacency."""
        return self.state_names[: self.d]

    def extra_repr(self) -> str:
        skips = "".join(f", {n}=True" for n in ("linear", "multiplicative") if getattr(self, n))
        return f"d={self.d}, order={self.order}, hidden={self.hidden}, activation={self.activation!r}{skips}"

    def group_parameters(self) -> list[Tensor]:
        """The parameters whose input columns form the groups: ``W_in`` ``(d, H_1, n_in)``, then ``W_lin`` and
        ``W_mul`` ``(d, n_in)`` when enabled."""
        return [p for p in (self.W_in, self.W_lin, self.W_mul) if p is not None]

    def _masked(self, p: Tensor) -> Tensor:
        if self.input_mask is None:
            return p
        return p * (self.input_mask if p.ndim == 3 else self.input_mask[:, 0])

    # ------------------------------------------------------------------------------------------------ forward
    def field(self, y: Tensor) -> Tensor:
        """The learned field ``f(y)``: ``(..., d)`` for a state ``y (..., order·d)``."""
        n_in = self.order * self.d
        if not isinstance(y, Tensor) or y.ndim == 0 or y.shape[-1] != n_in:
            got = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
            raise ValueError(
                f"StructuredODE(d={self.d}, order={self.order}) expects a state of shape (..., {n_in}) with "
                f"components {self.state_names}, got {got}."
            )
        lead = y.shape[:-1]
        z = y.reshape(-1, n_in)
        W = self.W_in if self.input_mask is None else self.W_in * self.input_mask
        d, H1 = self.d, self.hidden[0]
        # every variable's input layer in one matrix product: (B, n_in) @ (n_in, d·H1)
        h = self._act((z @ W.reshape(d * H1, n_in).T).reshape(-1, d, H1) + self.b_in)  # (B, d, H1)
        for Wk, bk in zip(self.W_hidden, self.b_hidden, strict=True):
            # one batched product over the d networks: (d, B, H_k) @ (d, H_k, H_k+1)
            h = self._act(torch.bmm(h.transpose(0, 1), Wk.transpose(1, 2)).transpose(0, 1) + bk)
        W_out = self.W_out if self.output_mask is None else self.W_out * self.output_mask
        out = (h * W_out).sum(-1) + self.b_out  # (B, d)
        if self.W_lin is not None:
            out = out + z @ self._masked(self.W_lin).T
        if self.W_mul is not None:
            out = out + z[:, : self.d] * (z @ self._masked(self.W_mul).T)
        return out.reshape(*lead, self.d)

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        """``dy/dt`` ``(..., order·d)`` (or the field ``(..., d)`` with ``field_only``); ``t`` is unused."""
        f = self.field(y)
        if self.order == 1 or self.field_only:
            return f
        return torch.cat([y[..., self.d :], f], dim=-1)

    # ------------------------------------------------------------------------------------------------ structure
    def group_norms(self) -> Tensor:
        """``(d, d)`` ``||(W_i[:, j], L[i, j], M[i, j])||_2`` with gradient (the group-lasso terms)."""
        W = self.W_in if self.input_mask is None else self.W_in * self.input_mask
        sq = W.square().sum(1)  # (d, n_in)
        for p in (self.W_lin, self.W_mul):
            if p is not None:
                sq = sq + self._masked(p).square()
        sq = sq.reshape(self.d, self.order, self.d).sum(1)  # columns are ordered [x_1..x_d, v_1..v_d]
        return sq.sqrt()

    def adjacency(self) -> Tensor:
        """Weighted adjacency ``A (d, d)``, ``A[i, j] = ||W_i[:, j]||_2`` for the edge ``j → i``; no gradient."""
        with torch.no_grad():
            return self.group_norms().detach().clone()


def find_structured(model: nn.Module) -> StructuredODE:
    """The :class:`StructuredODE` in ``model`` (itself, or the single one among its submodules).

    Raises
    ------
    TypeError
        ``model`` holds no StructuredODE, or several.
    """
    if isinstance(model, StructuredODE):
        return model
    found = [m for m in model.modules() if isinstance(m, StructuredODE)] if isinstance(model, nn.Module) else []
    if len(found) != 1:
        raise TypeError(
            f"expected a StructuredODE or a model holding exactly one (e.g. a Hybrid correction), got "
            f"{type(model).__name__} with {len(found)}. Build the model with physnode.causal.StructuredODE."
        )
    return found[0]
