"""Fuzz catalogue of the gradient methods (``grad=``) and the SDE layer (``sdeint``, ``fit_sde``).

Two tables. ``BAD``: one bad input per row (an id, a callable, the exception type and a regex of its message),
each of which once gave a silently wrong gradient, a hang or a raw torch / torchsde traceback, and must now raise
an error that says what was received, what was expected and what to change. ``RIGHT``: inputs that must be
handled correctly, each compared with an independent reference (analytic, or ``grad="direct"`` on the same
discrete solve) at a tolerance whose reason is given in the row. Every case runs under a wall-clock limit
(``limit`` from ``tests/fuzz/conftest.py``), so a hang fails the case instead of blocking the run. Problems are
tiny (two-dimensional states, one to a few hundred steps); the whole file takes well under a minute.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import physnode
from physnode.errors import NonFiniteError
from physnode.gradients.aca import ACA
from physnode.gradients.adjoint import ContinuousAdjoint
from physnode.sde import ScalarDiffusion, fit_sde, sdeint
from physnode.solvers.rk import ExplicitRK
from physnode.solvers.tableau import Tableau

F64 = torch.float64
T01 = torch.tensor([0.0, 1.0], dtype=F64)
T5 = torch.linspace(0.0, 1.0, 5, dtype=F64)
OWN_BACKWARD = {
    "aca": "dopri5",
    "symplectic": "dopri5",
    "adjoint": "dopri5",
    "mali": "alf",
    "reversible_heun": "reversible_heun",
}


# ---------------------------------------------------------------------------------------------- helpers
class Rate(nn.Module):
    """``dy/dt = -k y`` with a learnable rate ``k``."""

    def __init__(self, k: float = 1.0) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=F64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.k * y


class Outside(nn.Module):
    """``dy/dt = -w y`` with ``w`` neither a parameter nor a buffer (as a global or closed-over tensor)."""

    def __init__(self, w: Tensor) -> None:
        super().__init__()
        self.__dict__["w"] = w

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.w * y


def y0(requires_grad: bool = False) -> Tensor:
    return torch.tensor([1.0, 0.5], dtype=F64, requires_grad=requires_grad)


def w_leaf(value: float = 2.0) -> Tensor:
    return torch.tensor(value, dtype=F64, requires_grad=True)


def backward_of(ys: Tensor) -> None:
    ys.sum().backward()


def decay_k_grad(grad: str, t: Tensor = T01, **kw: Any) -> float:
    """dL/dk of L = sum(y(t)) for dy/dt = -k y, k = 1, solved with ``method="alf"`` unless given."""
    k = torch.tensor(1.0, dtype=F64, requires_grad=True)
    kw.setdefault("method", "alf")
    ys = physnode.odeint(lambda t, y: -k * y, y0(), t, grad=grad, params=[k], **kw)
    ys.sum().backward()
    return k.grad.item()


def second_order(grad: str, method: str) -> None:
    """Differentiate a gradient computed by ``grad`` once more."""
    f = Rate()
    ys = physnode.odeint(f, y0(), T01, grad=grad, method=method)
    (g,) = torch.autograd.grad(ys.sum(), f.k, create_graph=True)
    g.backward()


def outside_tensor(grad: str) -> None:
    physnode.odeint(Outside(w_leaf()), y0(True), T01, grad=grad, method=OWN_BACKWARD[grad])


def const_diffusion(t: Tensor, y: Tensor) -> Tensor:
    return 0.1 * torch.ones_like(y)


def sde(**kw: Any) -> Tensor:
    """``sdeint`` of an OU process on a batch of three, with every argument overridable."""
    args: dict[str, Any] = {
        "drift": Rate(),
        "diffusion": ScalarDiffusion(0.1, dtype=F64),
        "y0": torch.ones(3, 2, dtype=F64),
        "t": T5,
        "dt": 0.125,
        "seed": 0,
    }
    args.update(kw)
    return sdeint(args.pop("drift"), args.pop("diffusion"), args.pop("y0"), args.pop("t"), **args)


def sde_double_backward() -> None:
    f = Rate()
    ys = sde(drift=f)
    torch.autograd.grad(ys.sum(), f.k, create_graph=True)


def ou_ensemble() -> Tensor:
    g = torch.Generator().manual_seed(0)
    return 1.0 + 0.1 * torch.randn(4, 5, 1, generator=g, dtype=F64).cumsum(1)


class SqrtRate(Rate):
    """``-sqrt(k) y``: NaN once an oversized optimiser step makes ``k`` negative."""

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.k.sqrt() * y


def fit(**kw: Any) -> Any:
    args: dict[str, Any] = {"drift": Rate(), "diffusion": ScalarDiffusion(0.2, dtype=F64), "dt": 0.125, "iterations": 2}
    args.update(kw)
    return fit_sde(args.pop("drift"), args.pop("diffusion"), T5, ou_ensemble(), **args)


# ---------------------------------------------------------------------------------------------- bad inputs
@dataclass(frozen=True)
class Bad:
    id: str
    call: Callable[[], object]
    exc: type[BaseException]
    match: str
    seconds: float = 20.0


BAD: list[Bad] = [
    # --- MALI / reversible reconstruction (once: dL/dk = 1e72 or NaN, no warning)
    Bad(
        "mali-eta0.9-adaptive",
        lambda: decay_k_grad("mali", rtol=1e-6, atol=1e-8, options={"eta": 0.9}),
        ValueError,
        r"eta=0\.9 .*1\.25 per step.*accepted steps between two observations.*use eta=1",
    ),
    Bad(
        "mali-eta0.25-long-span",
        lambda: decay_k_grad("mali", t=torch.tensor([0.0, 5.0], dtype=F64), rtol=1e-6, options={"eta": 0.25}),
        ValueError,
        r"1 - 2\*eta = 0\.5 and amplifies rounding errors by 2 per step",
    ),
    Bad(
        "mali-eta0.9-fixed-100-steps",
        lambda: decay_k_grad("mali", step_size=0.01, options={"adaptive": False, "eta": 0.9}),
        ValueError,
        r"takes 100 accepted steps .*add observation times",
    ),
    Bad(
        "reversible-heun-stiff-drift",
        lambda: backward_of(
            physnode.odeint(
                Rate(30.0),
                y0(True),
                T01,
                method="reversible_heun",
                grad="reversible_heun",
                step_size=0.01,
                options={"adaptive": False},
            )
        ),
        RuntimeError,
        r"reconstruction error of .* above the bound .*gradient would be wrong",
    ),
    Bad("mali-eta-half", lambda: decay_k_grad("mali", options={"eta": 0.5}), ValueError, r"1/2.*cannot be reversed"),
    # --- method / solver pairing
    Bad("mali-with-dopri5", lambda: decay_k_grad("mali", method="dopri5"), ValueError, r"pass method='alf'"),
    Bad(
        "reversible-heun-with-alf",
        lambda: decay_k_grad("reversible_heun"),
        ValueError,
        r"reverses the steps of method='reversible_heun' .*method='alf'",
    ),
    Bad("symplectic-with-alf", lambda: decay_k_grad("symplectic"), ValueError, r"explicit Runge–Kutta.*grad='aca'"),
    Bad(
        "symplectic-with-leapfrog",
        lambda: decay_k_grad("symplectic", method="leapfrog", step_size=0.1),
        ValueError,
        r"got method='leapfrog'.*grad='aca'",
    ),
    Bad(
        "adjoint-with-nag",
        lambda: decay_k_grad("adjoint", method="nag", step_size=0.1),
        ValueError,
        r"got method='nag'",
    ),
    # --- tensors the custom backward would miss (once: w.grad = None, direct gives -0.1353)
    *[
        Bad(
            f"{g}-outside-tensor",
            lambda g=g: outside_tensor(g),
            ValueError,
            rf"grad='{g}' .*uses 1 other tensor that requires grad \(tensor of shape \(\), torch.float64\)"
            r".*nn\.Parameter",
        )
        for g in OWN_BACKWARD
    ],
    Bad(
        "aca-closure-without-params",
        lambda: physnode.odeint(lambda t, y: -w_leaf() * y, y0(), T01, grad="aca"),
        ValueError,
        r"func uses 1 other tensor .*params=\[\.\.\.\]",
    ),
    # --- second order (once: "element 0 of tensors does not require grad")
    *[
        Bad(f"{g}-double-backward", lambda g=g, m=m: second_order(g, m), RuntimeError, r"only with grad='direct'")
        for g, m in OWN_BACKWARD.items()
        if g != "reversible_heun"
    ],
    # --- options and the grad object
    Bad("eta-for-dopri5", lambda: decay_k_grad("aca", method="dopri5", options={"eta": 0.9}), ValueError, r"'eta'"),
    Bad(
        "adjoint-rtol-for-aca",
        lambda: decay_k_grad("aca", method="dopri5", options={"adjoint_rtol": 1e-3}),
        ValueError,
        r"unknown option 'adjoint_rtol'",
    ),
    Bad(
        "adjoint-rtol-negative",
        lambda: decay_k_grad("adjoint", method="dopri5", options={"adjoint_rtol": -1.0}),
        ValueError,
        r"adjoint_rtol must be a non-negative finite number",
    ),
    Bad(
        "adjoint-atol-nan",
        lambda: decay_k_grad("adjoint", method="dopri5", options={"adjoint_atol": math.nan}),
        ValueError,
        r"adjoint_atol must be a non-negative finite number",
    ),
    Bad(
        "adjoint-both-tolerances-zero",
        lambda: ContinuousAdjoint(adjoint_rtol=0.0, adjoint_atol=0.0),
        ValueError,
        r"cannot both be zero",
    ),
    Bad("grad-class-not-instance", lambda: decay_k_grad(ACA, method="dopri5"), TypeError, r"GradientMethod instance"),
    Bad("grad-none", lambda: decay_k_grad(None, method="dopri5"), TypeError, r"grad must be a name"),
    Bad("grad-typo", lambda: decay_k_grad("adjiont", method="dopri5"), ValueError, r"Did you mean 'adjoint'"),
    Bad(
        "params-not-tensors",
        lambda: physnode.odeint(Rate(), y0(), T01, grad="aca", params=[1.0]),
        TypeError,
        r"params\[0\]",
    ),
    # --- sdeint
    Bad(
        "sde-outside-tensor-adjoint",
        lambda: sde(drift=Outside(w_leaf()), y0=torch.ones(3, 2, dtype=F64, requires_grad=True)),
        ValueError,
        r"drift uses 1 other tensor that requires grad",
    ),
    Bad("sde-double-backward", sde_double_backward, RuntimeError, r"double backward .*only with grad='direct'"),
    Bad("sde-t-requires-grad", lambda: sde(t=T5.clone().requires_grad_()), ValueError, r"t requires grad"),
    Bad("sde-dt-tiny", lambda: sde(dt=1e-7), ValueError, r"10000000 steps, more than max_steps = 100000"),
    Bad("sde-max-steps-bool", lambda: sde(max_steps=True), ValueError, r"max_steps must be a positive integer"),
    Bad(
        "sde-nan-diffusion",
        lambda: sde(diffusion=lambda t, y: torch.full_like(y, math.nan), grad="direct"),
        NonFiniteError,
        r"trajectory 0 is NaN or Inf at t = 0\.25",
    ),
    Bad("sde-method-unhashable", lambda: sde(method=["euler"]), ValueError, r"unknown method=\['euler'\]"),
    Bad(
        "sde-diagonal-shape",
        lambda: sde(diffusion=lambda t, y: torch.ones(3, 5, dtype=F64)),
        ValueError,
        r"returned shape \(3, 5\), but noise='diagonal' expects \(3, 2\)",
    ),
    Bad(
        "sde-scalar-shape",
        lambda: sde(diffusion=lambda t, y: torch.ones(3, 2, 2, dtype=F64), noise="scalar"),
        ValueError,
        r"noise='scalar' expects \(3, 2, 1\)",
    ),
    Bad(
        "sde-milstein-general",
        lambda: sde(diffusion=lambda t, y: torch.ones(3, 2, 4, dtype=F64), noise="general", method="milstein"),
        ValueError,
        r"method='milstein' does not support noise='general'",
    ),
    Bad("sde-adjoint-with-euler", lambda: sde(method="euler"), ValueError, r"needs method='reversible_heun'"),
    Bad("sde-off-lattice", lambda: sde(dt=0.1), ValueError, r"step lattice"),
    Bad("sde-diffusion-float", lambda: sde(diffusion=lambda t, y: 0.1), TypeError, r"must return a tensor, got float"),
    Bad(
        "sde-noise-mismatch",
        lambda: sde(diffusion=ScalarDiffusion(0.1, noise="scalar", dtype=F64)),
        ValueError,
        r"built for noise='scalar' but sdeint got noise='diagonal'",
    ),
    Bad("sde-grad-aca", lambda: sde(grad="aca"), ValueError, r"unknown grad='aca'"),
    Bad("sde-dt-with-grad", lambda: sde(dt=torch.tensor(0.125, requires_grad=True)), TypeError, r"dt must be"),
    # --- fit_sde (once: raw torch errors, or a NaN loss history)
    Bad("fit-params-float", lambda: fit(params=[1.0]), TypeError, r"params\[0\] must be a tensor, got float"),
    Bad("fit-params-no-grad", lambda: fit(params=[torch.ones(2, dtype=F64)]), ValueError, r"cannot be fitted"),
    Bad("fit-optimizer-str", lambda: fit(optimizer="adam"), TypeError, r"torch\.optim\.Optimizer"),
    Bad("fit-callback-int", lambda: fit(callback=3), TypeError, r"callback must be callable"),
    Bad(
        "fit-diverges",
        lambda: fit(drift=SqrtRate(0.5), lr=100.0, iterations=6),
        FloatingPointError,
        r"fit_sde diverged at iteration \d .*Lower lr",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_bad_input(case: Bad, limit: Callable) -> None:
    with limit(case.seconds), pytest.raises(case.exc, match=case.match):
        case.call()


def test_catalogue_ids_are_unique_and_regexes_compile() -> None:
    assert len({c.id for c in BAD}) == len(BAD) >= 30
    for c in BAD:
        re.compile(c.match)


# ---------------------------------------------------------------------------------------------- must be right
def _plain_vs_direct(grad: str) -> tuple[Tensor, Tensor]:
    kw = dict(method=OWN_BACKWARD[grad], rtol=1e-6, atol=1e-8)
    got = physnode.odeint(lambda t, y: -y, y0(), T01, grad=grad, **kw)
    ref = physnode.odeint(lambda t, y: -y, y0(), T01, grad="direct", **kw)
    assert not got.requires_grad
    return got, ref


def _declared_outside(grad: str) -> tuple[Tensor, Tensor]:
    w = w_leaf()
    ys = physnode.odeint(
        Outside(w), torch.ones(1, dtype=F64), T01, grad=grad, method="dopri5", params=[w], rtol=1e-10, atol=1e-12
    )
    ys[-1].sum().backward()
    return w.grad, torch.tensor(-math.exp(-2.0), dtype=F64)  # d/dw exp(-w t) at w = 2, t = 1


def _declared_non_leaf() -> tuple[Tensor, Tensor]:
    def run(grad: str, declare: bool) -> Tensor:
        raw = torch.tensor(0.7, dtype=F64, requires_grad=True)
        w = raw.exp()
        ys = physnode.odeint(Outside(w), y0(), T01, grad=grad, params=[w] if declare else None, rtol=1e-8)
        ys.sum().backward()
        return raw.grad

    return run("aca", True), run("direct", False)


def _sde_adjoint_vs_direct() -> tuple[Tensor, Tensor]:
    def run(grad: str) -> Tensor:
        f = Rate()
        ys = sde(drift=f, grad=grad)
        ys.square().sum().backward()
        return f.k.grad

    return run("adjoint_reversible_heun"), run("direct")


def _no_grad(grad: str) -> tuple[Tensor, Tensor]:
    with torch.no_grad():
        got = physnode.odeint(Rate(), y0(True), T01, grad=grad, method=OWN_BACKWARD[grad], rtol=1e-6)
    ref = physnode.odeint(Rate(), y0(), T01, grad="direct", method=OWN_BACKWARD[grad], rtol=1e-6)
    assert not got.requires_grad
    return got, ref.detach()


class _ZeroWeightStage(ExplicitRK):
    """A user tableau with ``b_2 = 0`` and ``a_32 != 0``: its symplectic partner has no row 2 (rescaled form)."""

    name = "zero-weight-stage"
    tableau = Tableau(
        name="zero-weight-stage", c=(0.0, 0.5, 1.0), a=((), (0.5,), (0.0, 1.0)), b=(0.5, 0.0, 0.5), order=1
    )


def _custom_tableau(grad: str) -> Tensor:
    torch.manual_seed(0)
    f = nn.Sequential(nn.Linear(2, 2), nn.Tanh()).to(F64)
    rhs = lambda t, y: f(y)  # noqa: E731
    start = y0(True)
    ys = physnode.odeint(
        rhs, start, T01, method=_ZeroWeightStage(), grad=grad, step_size=0.1, params=list(f.parameters())
    )
    return torch.cat([g.flatten() for g in torch.autograd.grad(ys.square().sum(), [start, *f.parameters()])])


@dataclass(frozen=True)
class Right:
    id: str
    call: Callable[[], tuple[Tensor | float, Tensor | float]]
    rtol: float
    why: str
    seconds: float = 30.0


RIGHT: list[Right] = [
    *[
        Right(
            f"{g}-plain-function-no-grad",
            lambda g=g: _plain_vs_direct(g),
            1e-12,
            "nothing requires grad: the same solve as direct, without a custom backward (same operations)",
        )
        for g in OWN_BACKWARD
    ],
    *[
        Right(
            f"{g}-under-no-grad",
            lambda g=g: _no_grad(g),
            1e-12,
            "torch.no_grad(): the plain solve, equal to direct's forward values",
        )
        for g in OWN_BACKWARD
    ],
    Right(
        "mali-eta1-equals-direct",
        lambda: (decay_k_grad("mali", rtol=1e-6, atol=1e-8), decay_k_grad("direct", rtol=1e-6, atol=1e-8)),
        1e-10,
        "exact gradient of the same ~3000-step solve; the inverse of eta = 1 adds ~1 ulp per step",
    ),
    Right(
        "mali-eta0.9-10-steps-equals-direct",
        lambda: tuple(
            decay_k_grad(g, step_size=0.1, options={"adaptive": False, "eta": 0.9}) for g in ("mali", "direct")
        ),
        1e-12,
        "10 inverse steps amplify rounding by 1.25**10 ~ 9 only",
    ),
    Right(
        "mali-eta0.9-restarts-at-observations",
        lambda: tuple(
            decay_k_grad(
                g, t=torch.linspace(0, 1, 11, dtype=F64), step_size=0.01, options={"adaptive": False, "eta": 0.9}
            )
            for g in ("mali", "direct")
        ),
        1e-12,
        "100 steps but 10 between observations, where the reconstruction restarts from the exact state",
    ),
    Right(
        "reversible-heun-adaptive-equals-direct",
        lambda: tuple(decay_k_grad(g, method="reversible_heun", rtol=1e-6) for g in ("reversible_heun", "direct")),
        1e-10,
        "exact gradient of the same adaptive solve; the inverse is as well conditioned as the step (det -1)",
    ),
    *[
        Right(
            f"{g}-declared-outside-tensor-analytic",
            lambda g=g: _declared_outside(g),
            1e-7,
            "params=[w] declares it; dopri5 at rtol 1e-10 is within 1e-7 of the exact -exp(-2) (adjoint: both solves)",
        )
        for g in ("aca", "symplectic", "adjoint")
    ],
    Right(
        "symplectic-user-tableau-zero-weight-stage",
        lambda: (_custom_tableau("symplectic"), _custom_tableau("direct")),
        1e-12,
        "exact gradient of the same 10-step solve; the b_i = 0 stage is propagated in rescaled form",
    ),
    Right(
        "aca-declared-non-leaf-equals-direct",
        _declared_non_leaf,
        1e-10,
        "params=[exp(raw)]: the walk stops at the declared tensor and raw's gradient flows through it exactly",
    ),
    Right(
        "sde-plain-default-grad-equals-direct",
        lambda: (
            sde(drift=lambda t, y: -y, diffusion=const_diffusion),
            sde(drift=lambda t, y: -y, diffusion=const_diffusion, grad="direct"),
        ),
        1e-12,
        "nothing requires grad: the same torchsde solve (same seed and steps) without the adjoint",
    ),
    Right(
        "sde-adjoint-equals-direct",
        _sde_adjoint_vs_direct,
        1e-8,
        "torchsde's reversible-Heun adjoint reproduces backprop through the same 8-step solve up to round-off",
    ),
]


@pytest.mark.parametrize("case", RIGHT, ids=[c.id for c in RIGHT])
def test_must_be_right(case: Right, limit: Callable) -> None:
    with limit(case.seconds):
        got, ref = case.call()
    got, ref = torch.as_tensor(got, dtype=F64), torch.as_tensor(ref, dtype=F64)
    torch.testing.assert_close(got, ref, rtol=case.rtol, atol=1e-300, msg=lambda m: f"{case.why}: {m}")
