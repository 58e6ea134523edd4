"""Stochastic differential equations through torchsde: :func:`sdeint`.

A thin, validated layer over :func:`torchsde.sdeint` / :func:`torchsde.sdeint_adjoint` that accepts physnode
models: a drift ``drift(t, y)`` and a diffusion ``diffusion(t, y)`` receive ``t`` of shape ``y.shape[:-1]``
(one time per trajectory), exactly like the right-hand sides of :func:`physnode.odeint`, whereas torchsde calls
them with a 0-d ``t``; the adapter here expands it.

The solvers and the Brownian motion are torchsde's: the reversible Heun method and the Brownian Interval of
Kidger et al. (2021), "Efficient and Accurate Gradients for Neural SDEs", whose adjoint reproduces direct
backpropagation through the same discrete solve (same Brownian sample, same steps) up to floating-point
round-off, in O(1) memory in the number of steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torchsde
from torch import Tensor, nn

from .._validate import check_times, check_y0
from ..errors import NonFiniteError
from ..gradients._guards import undeclared_leaves, undeclared_message
from ..solution import Status

__all__ = ["GRADS", "METHODS", "NOISES", "sdeint"]


@dataclass(frozen=True)
class _MethodInfo:
    """What torchsde needs to know about a method: its calculus, noise types and Lévy-area requirement."""

    sde_type: str
    noise_types: tuple[str, ...]
    levy_area: str = "none"


_ALL_NOISES = ("diagonal", "scalar", "general")

#: Supported ``method=`` names and the calculus in which each interprets the equation. For additive noise
#: (a diffusion that does not depend on ``y``) Itô and Stratonovich coincide; for state-dependent noise they
#: differ by the drift correction ``½ g ∂g/∂y``.
METHODS: dict[str, _MethodInfo] = {
    "reversible_heun": _MethodInfo("stratonovich", _ALL_NOISES),
    "midpoint": _MethodInfo("stratonovich", _ALL_NOISES),
    "heun": _MethodInfo("stratonovich", _ALL_NOISES),
    "euler": _MethodInfo("ito", _ALL_NOISES),
    "milstein": _MethodInfo("ito", ("diagonal", "scalar")),
    "srk": _MethodInfo("ito", ("diagonal", "scalar"), levy_area="space-time"),
}

#: Supported ``grad=`` names: direct backpropagation through the solver's operations, or the algebraically
#: reversible adjoint of the reversible Heun method (exact for the discrete solve, O(1) memory in the steps).
GRADS: tuple[str, ...] = ("adjoint_reversible_heun", "direct")

#: Default limit on the number of steps of one solve (as for :func:`physnode.odeint`).
DEFAULT_MAX_STEPS = 100_000

#: Supported ``noise=`` names and the shape ``diffusion(t, y)`` must return for ``y`` of shape ``(B, D)``:
#: ``"diagonal"`` ``(B, D)`` (one independent Brownian motion per channel, ``dy_i = g_i dW_i``), ``"scalar"``
#: ``(B, D, 1)`` (one Brownian motion shared by all channels), ``"general"`` ``(B, D, m)`` (``m`` Brownian
#: motions, ``dy = g dW``).
NOISES: tuple[str, ...] = _ALL_NOISES


def _unknown(kind: str, value: object, choices: Sequence[str]) -> ValueError:
    return ValueError(f"unknown {kind}={value!r}; choose one of {', '.join(map(repr, choices))}.")


class _TorchsdeAdapter(nn.Module):
    """The sde object torchsde expects (attributes ``noise_type``, ``sde_type``, methods ``f``, ``g``).

    torchsde calls ``f(t, y)`` and ``g(t, y)`` with a 0-d ``t`` and ``y`` of shape ``(B, D)``; physnode models
    expect ``t`` of shape ``(B,)`` (or a 0-d ``t`` and ``y`` of shape ``(D,)`` for an unbatched solve).
    """

    def __init__(self, drift: Callable, diffusion: Callable, noise_type: str, sde_type: str, unbatched: bool):
        super().__init__()
        # Registered as attributes (submodules when they are modules) so that .to() and parameters() see them.
        self.drift = drift
        self.diffusion = diffusion
        self.noise_type = noise_type
        self.sde_type = sde_type
        self.unbatched = unbatched

    def _call(self, fn: Callable, t: Tensor, y: Tensor) -> Tensor:
        t = torch.as_tensor(t, dtype=y.dtype, device=y.device)
        if self.unbatched:
            return fn(t.reshape(()), y[0]).unsqueeze(0)
        return fn(t.reshape(()).expand(y.shape[:-1]), y)

    def f(self, t: Tensor, y: Tensor) -> Tensor:
        return self._call(self.drift, t, y)

    def g(self, t: Tensor, y: Tensor) -> Tensor:
        return self._call(self.diffusion, t, y)


def _check_t(t: object, y0: Tensor) -> Tensor:
    tt = check_times(t, y0, min_times=2, forward_only="torchsde integrates forwards only")
    if tt.ndim == 2 and not bool((tt[:, 0] == tt[0, 0]).all()):
        b = int(torch.nonzero(tt[:, 0] != tt[0, 0])[0, 0])
        raise ValueError(
            f"per-trajectory times must share their initial time t[:, 0] (the time of y0); t[{b}, 0] = "
            f"{float(tt[b, 0]):.10g} but t[0, 0] = {float(tt[0, 0]):.10g}. Shift each trajectory's times or "
            "solve the groups with different initial times separately."
        )
    return tt


def _check_dt(dt: object, span: float) -> float:
    if isinstance(dt, Tensor):
        if dt.numel() != 1 or dt.requires_grad:
            raise TypeError("dt must be a positive Python float (a 0-d tensor without grad is accepted).")
        dt = float(dt)
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise ValueError(f"dt must be a positive finite step size (time units), got {dt!r}.")
    if dt > span:
        raise ValueError(
            f"dt = {dt:.10g} exceeds the time span t[..., -1] - t[..., 0] = {span:.10g}; choose dt <= the span "
            "(several steps per observation interval are usually needed)."
        )
    return float(dt)


def _check_max_steps(max_steps: object, span: float, dt: float) -> None:
    if max_steps is None:
        max_steps = DEFAULT_MAX_STEPS
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive integer, got {max_steps!r}.")
    n = math.ceil(span / dt - 1e-9)
    if n > max_steps:
        raise ValueError(
            f"dt = {dt:.6g} over the time span {span:.6g} takes {n} steps, more than max_steps = {max_steps}; "
            "choose a larger dt or pass a larger max_steps."
        )


def _check_finite(ys: Tensor, times: Tensor) -> None:
    """Raise :class:`~physnode.errors.NonFiniteError` when ``ys`` ``(B, T, D)`` holds NaN or Inf (one host
    sync per solve)."""
    bad = ~torch.isfinite(ys.detach()).all(dim=-1)
    if bool(bad.any()):
        b, j = (int(i) for i in torch.nonzero(bad)[0])
        time = float(times[b, j])
        raise NonFiniteError(
            f"the SDE solution of trajectory {b} is NaN or Inf at t = {time:.10g} (observation {j}): the drift "
            "or diffusion returned a non-finite value or the solve diverged. Check them at the states reached, "
            "or reduce dt (an explicit step diverges when dt is too large for a stiff drift).",
            trajectory=b,
            time=time,
            status=int(Status.NON_FINITE),
        )


def _check_seed(seed: object) -> int:
    if seed is None:
        # Draw from torch's generator so that torch.manual_seed makes unseeded solves reproducible too.
        return int(torch.randint(0, 2**31 - 1, ()).item())
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or None, got {seed!r}.")
    return seed


def _check_on_lattice(ts: Tensor, dt: float) -> None:
    """The reversible-Heun adjoint stops at every output time; torchsde's fixed-step loop lands on an output
    time only when it lies on the step lattice ``t0 + k dt``, otherwise the forward pass interpolates and the
    adjoint no longer retraces it."""
    n = (ts.double() - ts[0].double()) / dt
    off = (n - n.round()).abs()
    if bool((off > 1e-6).any()):
        i = int(torch.argmax(off))
        raise ValueError(
            f"grad='adjoint_reversible_heun' needs every observation time on the step lattice t0 + k*dt: "
            f"t = {float(ts[i]):.10g} is {float(n[i]):.6f} steps of dt = {dt:.10g} from t0 = {float(ts[0]):.10g}. "
            "Choose dt dividing every observation interval (powers of two such as 2**-6 make the lattice exact "
            "in floating point), or use grad='direct', which interpolates linearly at off-lattice times."
        )


def _collect_params(drift: Callable, diffusion: Callable, params: Sequence[Tensor] | None) -> tuple[Tensor, ...]:
    found: list[Tensor] = []
    for fn in (drift, diffusion):
        if isinstance(fn, nn.Module):
            found.extend(p for p in fn.parameters() if p.requires_grad and not any(p is q for q in found))
    if params is not None:
        if isinstance(params, Tensor):
            params = (params,)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"params[{i}] must be a tensor, got {type(p).__name__}.")
            if p.requires_grad and not any(p is q for q in found):
                found.append(p)
    return tuple(found)


def _check_declared(adapter: _TorchsdeAdapter, t0: Tensor, y0b: Tensor, found: tuple[Tensor, ...]) -> None:
    """Raise when drift or diffusion use a tensor that requires grad but is not among the adjoint's parameters
    (it would silently get no gradient): one evaluation of each with a graph and one bounded walk of it."""
    if not torch.is_grad_enabled():
        return
    for name, fn in (("drift", adapter.f), ("diffusion", adapter.g)):
        out = fn(t0, y0b.detach())
        if isinstance(out, Tensor) and out.requires_grad:
            leaves = undeclared_leaves([out], found)
            if leaves:
                raise ValueError(undeclared_message("adjoint_reversible_heun", leaves, where=name))


class _FirstOrderOnly(torch.autograd.Function):
    """Identity on the adjoint's output whose backward refuses ``create_graph=True``: torchsde's adjoint is first
    order and would otherwise fail inside torchsde ("Please report a bug to torchsde")."""

    @staticmethod
    def forward(ctx: Any, ys: Tensor) -> Tensor:
        return ys.view_as(ys)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "double backward (create_graph=True, for a gradient of a gradient) is supported only with "
                "grad='direct'; grad='adjoint_reversible_heun' computes first-order gradients in torchsde's own "
                "backward pass. Pass grad='direct' to sdeint for higher-order derivatives."
            )
        return grad


def _check_outputs(adapter: _TorchsdeAdapter, t0: Tensor, y0b: Tensor, user_shape: tuple[int, ...], noise: str):
    """Evaluate drift and diffusion once at the initial state and check shapes and dtypes (clear errors before
    torchsde's terser ones). Returns the number of Brownian channels ``m``."""
    with torch.no_grad():
        f = adapter.f(t0, y0b)
        g = adapter.g(t0, y0b)
    for name, out in (("drift", f), ("diffusion", g)):
        if not isinstance(out, Tensor):
            raise TypeError(f"{name}(t, y) must return a tensor, got {type(out).__name__}.")
        if out.dtype != y0b.dtype:
            raise TypeError(f"{name} returned {out.dtype} for y of dtype {y0b.dtype}; keep them equal.")
    batch_hint = "For a batch, drift and diffusion receive t of shape (B,) and y of shape (B, D)."
    if f.shape != y0b.shape:
        raise ValueError(
            f"drift(t, y) must return dy/dt with the shape of y, {user_shape}; got "
            f"{tuple(f.shape[1:] if adapter.unbatched else f.shape)}. {batch_hint}"
        )
    got = tuple(g.shape[1:]) if adapter.unbatched else tuple(g.shape)
    lead = ", ".join(map(str, user_shape))
    expected = {"diagonal": f"({lead})", "scalar": f"({lead}, 1)", "general": f"({lead}, m)"}
    ok = {
        "diagonal": g.shape == y0b.shape,
        "scalar": g.ndim == 3 and g.shape[:2] == y0b.shape and g.shape[2] == 1,
        "general": g.ndim == 3 and g.shape[:2] == y0b.shape and g.shape[2] >= 1,
    }[noise]
    if not ok:
        other = [k for k, v in expected.items() if k != noise]
        raise ValueError(
            f"diffusion(t, y) returned shape {got}, but noise={noise!r} expects {expected[noise]} "
            f"({', '.join(f'noise={k!r} expects {expected[k]}' for k in other)}). Pass the noise type matching "
            "the diffusion, or build the diffusion with that noise type."
        )
    return {"diagonal": y0b.shape[-1], "scalar": 1, "general": g.shape[-1]}[noise]


def sdeint(
    drift: Callable[[Tensor, Tensor], Tensor],
    diffusion: Callable[[Tensor, Tensor], Tensor],
    y0: Tensor,
    t: Tensor,
    *,
    method: str = "reversible_heun",
    grad: str = "adjoint_reversible_heun",
    dt: float,
    noise: str = "diagonal",
    seed: int | None = None,
    params: Sequence[Tensor] | None = None,
    max_steps: int | None = None,
) -> Tensor:
    """Solve the SDE ``dy = drift(t, y) dt + diffusion(t, y) ∘ dW`` with torchsde and return ``y`` at ``t``.

    Parameters
    ----------
    drift
        Drift ``drift(t, y) -> (B, D)``: any physnode right-hand side (an ``nn.Module`` or callable) with
        ``t`` of shape ``y.shape[:-1]`` (one time per trajectory; a 0-d ``t`` and ``y`` of shape ``(D,)`` for
        an unbatched ``y0``). Units of ``y`` per unit time.
    diffusion
        Diffusion ``diffusion(t, y)`` with the same calling convention, e.g. a
        :class:`~physnode.sde.ScalarDiffusion`, :class:`~physnode.sde.DiagonalDiffusion` or
        :class:`~physnode.sde.NeuralDiffusion`. Output shape by ``noise`` (for ``y`` of shape ``(B, D)``):
        ``(B, D)``, ``(B, D, 1)`` or ``(B, D, m)``. Units of ``y`` per square-root time.
    y0
        Initial state ``(D,)`` or batch ``(B, D)``; float32 or float64.
    t
        Observation times ``(T,)`` shared by the batch, or ``(B, T)`` per trajectory, strictly increasing,
        with a common initial time ``t[..., 0]`` (the time of ``y0``); ``T >= 2``. Per-trajectory times are
        solved on the union of all observation times and each trajectory's outputs are selected from it: the
        step lattice ``t0 + k dt`` and hence the number of drift and diffusion evaluations are those of a single
        solve up to the latest time of the batch (every trajectory is carried to ``max t``), and the outputs and,
        with the adjoint, the backward stops cost O(B · T_union · D) for T_union distinct times.
    method
        Solver name, see :data:`METHODS`: ``"reversible_heun"`` (default), ``"midpoint"``, ``"heun"``
        (Stratonovich); ``"euler"`` (Euler–Maruyama), ``"milstein"``, ``"srk"`` (Itô). The equation is read
        in the method's calculus; for additive noise both agree.
    grad
        ``"adjoint_reversible_heun"`` (default, needs ``method="reversible_heun"``): torchsde's reversible
        adjoint, which reconstructs the forward states backwards in time, O(1) memory in the number of steps,
        equal to direct backpropagation up to round-off. It needs every observation time on the step lattice
        ``t0 + k dt`` and must know every tensor to differentiate (module parameters are found; a plain callable
        that closes over tensors requiring grad needs ``params=``, and an undeclared tensor that requires grad
        raises ``ValueError`` naming it). When nothing requires grad it solves plainly, without the adjoint.
        First order only: ``create_graph=True`` raises. ``"direct"``: backpropagation through the solver's
        operations, O(steps) memory, any method, higher derivatives.
    dt
        Fixed step size (time units), ``0 < dt <= t[..., -1] - t[..., 0]``. The solve steps on the lattice
        ``t0 + k dt`` and, with ``grad="direct"``, interpolates linearly to observation times off the lattice
        (torchsde's behaviour).
    noise
        ``"diagonal"``, ``"scalar"`` or ``"general"``; see :data:`NOISES`. When ``diffusion`` has a ``noise``
        attribute (the physnode diffusions do) it must agree.
    seed
        Entropy of the :class:`torchsde.BrownianInterval`: the same seed, ``dt``, times and batch shape give
        the same Brownian sample path. ``None`` draws the seed from torch's global generator (so
        ``torch.manual_seed`` makes the solve reproducible).
    params
        Extra tensors to differentiate with the adjoint that ``drift`` or ``diffusion`` close over (not needed
        when there are none).
    max_steps
        Limit on the number of steps ``ceil((t[..., -1] - t[..., 0]) / dt)`` (default 100 000, as for
        :func:`physnode.odeint`); a smaller ``dt`` raises instead of running for hours.

    Returns
    -------
    Tensor
        ``(T, D)`` for ``y0`` of shape ``(D,)``, or ``(B, T, D)``; ``out[..., i, :]`` is the state at
        ``t[..., i]``.

    Raises
    ------
    TypeError, ValueError
        Bad shapes, dtypes, devices, times (or times that require grad), step size (or more than
        ``max_steps`` steps), seed, or unknown or incompatible ``method``, ``grad``, ``noise``; a diffusion
        whose output shape does not match ``noise``; a drift or diffusion using a tensor that requires grad
        that the adjoint does not know of.
    NonFiniteError
        The solution became NaN or Inf (the message names the first trajectory and observation time).
    """
    if not callable(drift):
        raise TypeError(f"drift must be callable as drift(t, y), got {type(drift).__name__}.")
    if not callable(diffusion):
        raise TypeError(f"diffusion must be callable as diffusion(t, y), got {type(diffusion).__name__}.")
    if not isinstance(method, str) or method not in METHODS:
        raise _unknown("method", method, list(METHODS))
    if grad not in GRADS:
        raise _unknown("grad", grad, GRADS)
    if noise not in NOISES:
        raise _unknown("noise", noise, NOISES)
    info = METHODS[method]
    if noise not in info.noise_types:
        raise ValueError(
            f"method={method!r} does not support noise={noise!r}; it supports "
            f"{', '.join(map(repr, info.noise_types))}. Use method='reversible_heun' or 'euler', which support "
            "every noise type."
        )
    if grad == "adjoint_reversible_heun" and method != "reversible_heun":
        raise ValueError(
            f"grad='adjoint_reversible_heun' needs method='reversible_heun', got method={method!r}; use "
            "grad='direct' with other methods."
        )
    own_noise = getattr(diffusion, "noise", None)
    if isinstance(own_noise, str) and own_noise != noise:
        raise ValueError(
            f"the diffusion was built for noise={own_noise!r} but sdeint got noise={noise!r}; pass "
            f"noise={own_noise!r} (or rebuild the diffusion with noise={noise!r})."
        )

    y0 = check_y0(y0)
    if isinstance(t, Tensor) and t.requires_grad:
        raise ValueError(
            f"t requires grad, but gradients with respect to observation times are not supported (grad={grad!r}); "
            "the times would be silently treated as constants. Pass t.detach()."
        )
    tt = _check_t(t, y0)
    span = float((tt[..., -1] - tt[..., 0]).max())
    dt = _check_dt(dt, span)
    _check_max_steps(max_steps, span, dt)
    entropy = _check_seed(seed)

    unbatched = y0.ndim == 1
    y0b = y0.unsqueeze(0) if unbatched else y0
    B = y0b.shape[0]
    if tt.ndim == 2:
        ts, inverse = torch.unique(tt, sorted=True, return_inverse=True)  # inverse: (B, T) indices into ts
    else:
        ts, inverse = tt, None
    if grad == "adjoint_reversible_heun":
        _check_on_lattice(ts, dt)

    adapter = _TorchsdeAdapter(drift, diffusion, noise, info.sde_type, unbatched)
    m = _check_outputs(adapter, ts[0], y0b, tuple(y0.shape), noise)
    bm = torchsde.BrownianInterval(
        t0=float(ts[0]),
        t1=float(ts[-1]),
        size=(B, m),
        dtype=y0.dtype,
        device=y0.device,
        entropy=entropy,
        dt=dt,
        levy_area_approximation=info.levy_area,
    )
    use_adjoint = False
    if grad != "direct":
        found = _collect_params(drift, diffusion, params)
        _check_declared(adapter, ts[0], y0b, found)
        # Without anything to differentiate the adjoint has nothing to do: the same solve, plainly.
        use_adjoint = torch.is_grad_enabled() and any(x.requires_grad for x in (y0b, *found))
    if not use_adjoint:
        ys = torchsde.sdeint(adapter, y0b, ts, bm=bm, method=method, dt=dt)
    else:
        ys = _FirstOrderOnly.apply(
            torchsde.sdeint_adjoint(
                adapter,
                y0b,
                ts,
                bm=bm,
                method=method,
                adjoint_method="adjoint_reversible_heun",
                dt=dt,
                adjoint_params=found,
            )
        )
    ys = ys.transpose(0, 1)  # (T_union, B, D) -> (B, T_union, D)
    if inverse is not None:
        ys = ys.gather(1, inverse.unsqueeze(-1).expand(-1, -1, ys.shape[-1]))
    _check_finite(ys, tt if tt.ndim == 2 else tt.expand(B, -1))
    return ys[0] if unbatched else ys
