"""Every gradient method against the analytic gradient of dz/dt = αz, L = z(T)².

z(T) = z0 e^{αT}, so ∂L/∂z0 = 2 z0 e^{2αT} and ∂L/∂α = 2 T z0² e^{2αT}.
"""

from __future__ import annotations

import math

import pytest
import torch
from registries import ALL_GRADIENTS, solver_for
from torch import nn

import physnode

NAMES = ALL_GRADIENTS
Z0, ALPHA, T_END = 0.7, -0.4, 1.5


method_for = solver_for


def analytic() -> tuple[float, float]:
    e = math.exp(2 * ALPHA * T_END)
    return 2 * Z0 * e, 2 * T_END * Z0**2 * e


class Growth(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(ALPHA, dtype=torch.float64))

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.alpha * z


def _check(grad: str, z0: torch.Tensor, alpha: torch.Tensor, ys: torch.Tensor) -> None:
    loss = ys[-1, 0] ** 2
    g_z0, g_alpha = torch.autograd.grad(loss, [z0, alpha])
    dz0, dalpha = analytic()
    # Solves run at rtol 1e-9 (second-order methods: 1e-6, to keep the step count small); the gradient
    # error follows the global error, allowed 1000x the tolerance.
    tol = 1000 * _kwargs(grad)["rtol"]
    assert abs(float(g_z0) - dz0) <= tol * abs(dz0), f"{grad}: dL/dz0 = {float(g_z0)}, expected {dz0}"
    assert abs(float(g_alpha) - dalpha) <= tol * abs(dalpha), f"{grad}: dL/dα = {float(g_alpha)}, expected {dalpha}"


def _kwargs(grad: str) -> dict:
    method = method_for(grad)
    order = physnode.SOLVERS.build(method).order
    return dict(method=method, rtol=1e-9 if order >= 4 else 1e-6, atol=1e-11)


@pytest.mark.parametrize("grad", NAMES, ids=NAMES)
def test_alpha_as_module_parameter(grad: str) -> None:
    func = Growth()
    z0 = torch.tensor([Z0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.5, T_END], dtype=torch.float64)
    ys = physnode.odeint(func, z0, t, grad=grad, **_kwargs(grad))
    _check(grad, z0, func.alpha, ys)


@pytest.mark.parametrize("grad", NAMES, ids=NAMES)
def test_alpha_passed_as_params(grad: str) -> None:
    alpha = torch.tensor(ALPHA, dtype=torch.float64, requires_grad=True)
    z0 = torch.tensor([Z0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, T_END], dtype=torch.float64)
    ys = physnode.odeint(lambda t, z: alpha * z, z0, t, grad=grad, params=[alpha], **_kwargs(grad))
    _check(grad, z0, alpha, ys)
