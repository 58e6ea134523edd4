"""physnode.sde.sdeint and the diffusion terms: ODE limit, exact adjoint, OU moments, selection, errors."""

from __future__ import annotations

import math

import pytest
import torch
from systems import MLP, TimeDependent
from torch import nn

import physnode
from physnode.sde import METHODS, DiagonalDiffusion, LogPositive, NeuralDiffusion, ScalarDiffusion, sdeint

F64 = torch.float64

#: Convergence order of each method on an ODE (zero diffusion): measured error ratio on halving dt.
ODE_ORDER = {"reversible_heun": 2, "midpoint": 2, "heun": 2, "euler": 1, "milstein": 1, "srk": 3}
assert set(ODE_ORDER) == set(METHODS), "add every new method to ODE_ORDER"


def zero_diffusion(t, y):
    return torch.zeros_like(y)


def _max_abs(x: torch.Tensor) -> float:
    return float(x.detach().abs().max())


@pytest.mark.parametrize("method", list(METHODS), ids=list(METHODS))
def test_zero_diffusion_converges_to_odeint(method: str, device: torch.device) -> None:
    # Time-dependent forcing checks that drift receives t of shape (B,) with the right values.
    f = TimeDependent().to(device)
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.3]], dtype=F64, device=device)
    t = torch.linspace(0.0, 2.0, 5, dtype=F64, device=device)
    ref = physnode.odeint(f, y0, t, rtol=1e-12, atol=1e-12).detach()
    errs = []
    for k in (5, 6):
        ys = sdeint(f, zero_diffusion, y0, t, dt=2.0**-k, method=method, grad="direct", seed=0)
        assert ys.shape == (2, 5, 2)
        errs.append(_max_abs(ys - ref))
    p = ODE_ORDER[method]
    # Error of an order-p method on a smooth ODE: e(dt) ≈ C dt^p, so halving dt divides it by ≈ 2^p.
    assert errs[0] / errs[1] > 0.8 * 2**p, errs
    assert errs[1] < 3 * (2.0**-6) ** p, errs  # error constant C < 3 (measured 0.26 for the order-2 methods)


def test_zero_diffusion_unbatched_matches_odeint() -> None:
    f = TimeDependent()
    y0 = torch.tensor([1.0, 0.0], dtype=F64)
    t = torch.linspace(0.0, 2.0, 9, dtype=F64)
    ys = sdeint(f, zero_diffusion, y0, t, dt=2.0**-9, params=(), seed=0)
    ref = physnode.odeint(f, y0, t, rtol=1e-12, atol=1e-12)
    assert ys.shape == (9, 2)
    # Reversible Heun is second order on ODEs with error constant ≈ 0.26 here: 0.26 * 2**-18 ≈ 1e-6.
    assert _max_abs(ys - ref) < 3e-6


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "general"])
def test_reversible_heun_adjoint_equals_direct_backprop(noise: str) -> None:
    torch.manual_seed(1)
    drift = MLP(dim=3, hidden=12)
    # State-dependent noise on two of three channels: the adjoint must also differentiate g's Jacobian.
    net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    diffusion = NeuralDiffusion(net, components=[0, 2], noise=noise)
    y0 = torch.randn(4, 3, dtype=F64)
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=F64)
    params = [*drift.parameters(), *diffusion.parameters()]
    outs = {}
    for grad in ("direct", "adjoint_reversible_heun"):
        y0g = y0.clone().requires_grad_()
        ys = sdeint(drift, diffusion, y0g, t, dt=2.0**-6, noise=noise, grad=grad, seed=11)
        loss = (ys.square() * torch.arange(1, 4, dtype=F64)).sum()
        outs[grad] = (ys.detach(), torch.autograd.grad(loss, [y0g, *params]))
    (ys_d, g_d), (ys_a, g_a) = outs["direct"], outs["adjoint_reversible_heun"]
    # same Brownian sample, same steps, same forward operations: equal to round-off
    torch.testing.assert_close(ys_a, ys_d, rtol=1e-13, atol=1e-13 * float(ys_d.detach().abs().max()))
    for a, d in zip(g_a, g_d, strict=True):
        assert _max_abs(d) > 0
        assert _max_abs(a - d) <= 1e-10 * _max_abs(d)


def test_adjoint_gradient_matches_finite_differences() -> None:
    # Independent check of the adjoint against central differences of the same discrete (seeded) solve.
    diffusion = ScalarDiffusion(0.4, dtype=F64)
    drift = TimeDependent()
    y0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=F64)

    def loss() -> torch.Tensor:
        return sdeint(drift, diffusion, y0, t, dt=2.0**-5, seed=5).square().sum()

    (g,) = torch.autograd.grad(loss(), [diffusion.scale.log_value])
    p = diffusion.scale.log_value
    h = 1e-6
    with torch.no_grad():
        p += h
        up = loss()
        p -= 2 * h
        down = loss()
        p += h
    fd = (up - down) / (2 * h)
    assert abs(float(g) - float(fd)) <= 1e-6 * abs(float(fd))


@pytest.mark.parametrize("method", ["reversible_heun", "euler", "srk"], ids=["reversible_heun", "euler", "srk"])
def test_ornstein_uhlenbeck_mean_and_variance(method: str, device: torch.device) -> None:
    # dX = -theta X dt + sigma dW, X0 = x0: mean x0 e^{-theta t}, variance sigma² (1 - e^{-2 theta t}) / (2 theta).
    theta, sigma, x0, N = 1.5, 0.7, 1.2, 4000
    t = torch.tensor([0.0, 0.25, 0.5, 1.0, 2.0], dtype=F64, device=device)
    y0 = torch.full((N, 1), x0, dtype=F64, device=device)
    ys = sdeint(
        lambda t, y: -theta * y,
        ScalarDiffusion(sigma, dtype=F64).to(device),
        y0,
        t,
        dt=2.0**-7,
        method=method,
        grad="direct",
        seed=2,
    ).detach()[..., 0]
    mean = x0 * torch.exp(-theta * t[1:])
    var = sigma**2 * (1 - torch.exp(-2 * theta * t[1:])) / (2 * theta)
    # Statistical tolerance: the sample mean has standard error sqrt(var / N) and the sample variance of a
    # Gaussian sqrt(2 / (N - 1)) var (2.2 % here). Allow 4.5 standard errors: for these 8 comparisons the chance
    # of a false failure is < 1e-4 (the seed is fixed anyway). The discretisation bias is far smaller: ≈ 0.6 %
    # of the variance for Euler–Maruyama (theta dt / 2), less for the others; the mean is exact to O(dt²).
    assert torch.equal(ys[:, 0], y0[:, 0])
    z_mean = (ys[:, 1:].mean(0) - mean) / (var / N).sqrt()
    z_var = (ys[:, 1:].var(0) - var) / (var * math.sqrt(2 / (N - 1)))
    assert z_mean.abs().max() < 4.5, z_mean
    assert z_var.abs().max() < 4.5, z_var


def test_noise_only_on_velocities_and_scalar_noise_shares_the_brownian_motion() -> None:
    # x' = 0, v' = 0 with noise sigma dW on v only: x stays at x0 and v(t) - v0 = sigma W(t), variance sigma² t.
    N, sigma = 3000, 0.5
    y0 = torch.zeros(N, 4, dtype=F64)
    t = torch.tensor([0.0, 1.0, 2.0], dtype=F64)
    diff = DiagonalDiffusion([sigma, 2 * sigma], components=[2, 3], noise="scalar", dtype=F64)
    ys = sdeint(zero_diffusion, diff, y0, t, dt=0.125, noise="scalar", seed=4, params=()).detach()
    assert torch.equal(ys[..., :2], torch.zeros_like(ys[..., :2]))
    # Scalar noise: both velocities are driven by the same W, so v_3 = 2 v_2 exactly.
    assert torch.allclose(ys[..., 3], 2 * ys[..., 2], rtol=0, atol=1e-12)
    var = ys[:, 1:, 2].var(0)
    # Sample variance of N Gaussians: relative standard error sqrt(2 / (N - 1)) ≈ 2.6 %; allow 4.5 of them.
    assert ((var / (sigma**2 * t[1:]) - 1).abs() < 4.5 * math.sqrt(2 / (N - 1))).all(), var


@pytest.mark.parametrize("noise", ["diagonal", "scalar", "general"])
def test_diffusion_layouts(noise: str) -> None:
    y = torch.randn(5, 4, dtype=F64)
    t = torch.zeros(5, dtype=F64)
    sig = torch.tensor([0.3, 0.7], dtype=F64)
    g = DiagonalDiffusion(sig, components=[1, 3], noise=noise, dtype=F64)(t, y)
    if noise == "diagonal":
        expected = torch.zeros(5, 4, dtype=F64)
        expected[:, 1], expected[:, 3] = 0.3, 0.7
    elif noise == "scalar":
        expected = torch.zeros(5, 4, 1, dtype=F64)
        expected[:, 1, 0], expected[:, 3, 0] = 0.3, 0.7
    else:
        expected = torch.zeros(5, 4, 2, dtype=F64)
        expected[:, 1, 0], expected[:, 3, 1] = 0.3, 0.7
    assert torch.allclose(g, expected, rtol=1e-15, atol=0)
    # All components with ScalarDiffusion: sigma on every channel.
    g_all = ScalarDiffusion(0.3, noise=noise, dtype=F64)(t, y)
    assert torch.allclose(g_all.reshape(5, 4, -1).sum(-1), torch.full((5, 4), 0.3, dtype=F64))


def test_log_positive_scale_and_gradient() -> None:
    s = LogPositive(torch.tensor([0.5, 2.0], dtype=F64))
    assert torch.allclose(s(), torch.tensor([0.5, 2.0], dtype=F64))
    s().sum().backward()
    # d exp(u) / du = exp(u): the gradient with respect to the log-parameter is the value itself.
    assert torch.allclose(s.log_value.grad, torch.tensor([0.5, 2.0], dtype=F64))
    frozen = ScalarDiffusion(0.1, learnable=False)
    assert list(frozen.parameters()) == []


def test_per_trajectory_times_zero_diffusion_match_odeint() -> None:
    f = TimeDependent()
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.3], [-0.2, 0.4]], dtype=F64)
    t = torch.tensor([[0.0, 0.25, 1.0, 1.5], [0.0, 0.5, 0.75, 2.0], [0.0, 1.25, 1.75, 2.0]], dtype=F64)
    ys = sdeint(f, zero_diffusion, y0, t, dt=2.0**-9, params=(), seed=0).detach()
    ref = physnode.odeint(f, y0, t, rtol=1e-12, atol=1e-12).detach()
    assert ys.shape == (3, 4, 2)
    assert _max_abs(ys - ref) < 3e-6  # second-order error at dt = 2**-9 (see the unbatched test)
    # Each trajectory alone on its own grid: with zero diffusion the Brownian sample plays no role, and on the
    # dt lattice the union grid does not change the steps, so the values agree to round-off.
    for b in range(3):
        alone = sdeint(f, zero_diffusion, y0[b], t[b], dt=2.0**-9, params=(), seed=0).detach()
        assert torch.allclose(ys[b], alone, rtol=0, atol=1e-13)


@pytest.mark.parametrize("grad", ["direct", "adjoint_reversible_heun"])
def test_per_trajectory_times_select_from_the_same_brownian_path(grad: str) -> None:
    # With noise, the union grid selects the right entries: solving the batch on trajectory b's grid (same
    # batch, same seed, same final time, hence the same Brownian sample and the same lattice steps) gives row b.
    drift, diffusion = TimeDependent(), ScalarDiffusion(0.5, dtype=F64)
    y0 = torch.tensor([[1.0, 0.0], [0.5, -0.3], [-0.2, 0.4]], dtype=F64)
    t = torch.tensor([[0.0, 0.25, 1.0, 2.0], [0.0, 0.5, 0.75, 2.0], [0.0, 1.25, 1.75, 2.0]], dtype=F64)
    ys = sdeint(drift, diffusion, y0, t, dt=2.0**-4, grad=grad, seed=7).detach()
    for b in range(3):
        shared = sdeint(drift, diffusion, y0, t[b], dt=2.0**-4, grad=grad, seed=7).detach()
        assert torch.allclose(ys[b], shared[b], rtol=0, atol=1e-13)
    # The selection must pick different times for different trajectories (guards against a broadcast bug).
    assert not torch.allclose(ys[0, 1], ys[1, 1])


def test_seed_reproducibility() -> None:
    d = ScalarDiffusion(0.3)
    y0 = torch.zeros(3, 2)
    t = torch.linspace(0, 1, 3)
    a = sdeint(zero_diffusion, d, y0, t, dt=0.125, seed=1, params=()).detach()
    b = sdeint(zero_diffusion, d, y0, t, dt=0.125, seed=1, params=()).detach()
    c = sdeint(zero_diffusion, d, y0, t, dt=0.125, seed=2, params=()).detach()
    # Same seed: the same Brownian path, so equal up to float32 round-off; another seed moves the paths by O(0.3).
    scale = float(a.abs().max())
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6 * scale)
    assert float((a - c).abs().max()) > 1e-2 * scale
    torch.manual_seed(3)
    e = sdeint(zero_diffusion, d, y0, t, dt=0.125, params=()).detach()
    torch.manual_seed(3)
    f = sdeint(zero_diffusion, d, y0, t, dt=0.125, params=()).detach()
    torch.testing.assert_close(e, f, rtol=1e-6, atol=1e-6 * float(e.abs().max()))
    assert e.dtype == torch.float32


# --------------------------------------------------------------------------------------------- errors
Y0 = torch.zeros(2, 2)
T = torch.linspace(0, 1, 5)


def _drift(t, y):
    return -y


_W = torch.tensor(0.5, requires_grad=True)  # a closed-over tensor that is not declared with params=


def _call(**kw):
    args = {"drift": _drift, "diffusion": ScalarDiffusion(0.1), "y0": Y0, "t": T, "dt": 0.125, "params": ()}
    args.update(kw)
    return sdeint(args.pop("drift"), args.pop("diffusion"), args.pop("y0"), args.pop("t"), **args)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "rk4"}, ValueError, r"unknown method='rk4'; choose one of 'reversible_heun'"),
        ({"grad": "aca"}, ValueError, r"unknown grad='aca'"),
        ({"noise": "additive"}, ValueError, r"unknown noise='additive'"),
        ({"dt": 0.0}, ValueError, r"dt must be a positive finite step size"),
        ({"dt": -0.1}, ValueError, r"dt must be a positive finite step size"),
        ({"dt": float("nan")}, ValueError, r"dt must be a positive finite step size"),
        ({"dt": 2.0}, ValueError, r"dt = 2 exceeds the time span"),
        ({"y0": torch.zeros(2, 2, dtype=torch.int64)}, TypeError, r"y0 must be float32 or float64"),
        ({"y0": torch.zeros(1, 2, 2)}, ValueError, r"y0 must have shape \(D,\) or \(B, D\)"),
        ({"y0": [0.0, 1.0]}, TypeError, r"y0 must be a torch.Tensor"),
        ({"y0": torch.tensor([[0.0, float("nan")]])}, ValueError, r"y0 contains NaN"),
        ({"t": torch.tensor([0.0, 0.5, 0.5])}, ValueError, r"t must be strictly increasing.*t\[2\] = 0.5"),
        ({"t": torch.tensor([1.0, 0.0])}, ValueError, r"strictly increasing"),
        ({"t": torch.tensor([0.0])}, ValueError, r"t must have shape \(T,\) or \(B, T\) with T >= 2"),
        ({"t": torch.arange(3)}, TypeError, r"t must have a floating-point dtype"),
        ({"t": torch.zeros(3, 4).cumsum(-1) + torch.arange(4.0)}, ValueError, r"need y0 of shape \(B, D\) with B = 3"),
        ({"t": torch.tensor([[0.0, 1.0], [0.5, 1.0]])}, ValueError, r"share their initial time.*t\[1, 0\] = 0.5"),
        ({"seed": -1}, ValueError, r"seed must be a non-negative int"),
        ({"seed": 1.5}, ValueError, r"seed must be a non-negative int"),
        (
            {"method": "srk", "noise": "general", "diffusion": ScalarDiffusion(0.1, noise="general"), "grad": "direct"},
            ValueError,
            r"method='srk' does not support noise='general'",
        ),
        ({"method": "euler"}, ValueError, r"grad='adjoint_reversible_heun' needs method='reversible_heun'"),
        ({"dt": 0.1}, ValueError, r"on the step lattice.*0.25 is 2.500000 steps"),
        (
            {"params": None, "drift": lambda t, y: -_W * y},
            ValueError,
            r"drift uses 1 other tensor that requires grad \(tensor of shape \(\), torch.float32\).*params=",
        ),
        ({"noise": "scalar"}, ValueError, r"built for noise='diagonal' but sdeint got noise='scalar'"),
        (
            {"diffusion": lambda t, y: torch.ones_like(y).unsqueeze(-1)},
            ValueError,
            r"diffusion\(t, y\) returned shape \(2, 2, 1\), but noise='diagonal' expects \(2, 2\)",
        ),
        (
            {"diffusion": lambda t, y: torch.ones_like(y), "noise": "general"},
            ValueError,
            r"returned shape \(2, 2\), but noise='general' expects \(2, 2, m\)",
        ),
        (
            {"diffusion": lambda t, y: torch.ones(2, 2, 3), "noise": "scalar"},
            ValueError,
            r"noise='scalar' expects \(2, 2, 1\)",
        ),
        ({"drift": lambda t, y: y[..., :1]}, ValueError, r"drift\(t, y\) must return dy/dt with the shape of y"),
        ({"drift": lambda t, y: y.double()}, TypeError, r"drift returned torch.float64 for y of dtype torch.float32"),
        ({"drift": 3.0}, TypeError, r"drift must be callable"),
        ({"diffusion": ScalarDiffusion(0.1, components=[5])}, ValueError, r"components \[5\] are out of range"),
        ({"diffusion": DiagonalDiffusion([0.1, 0.2, 0.3])}, ValueError, r"3 amplitudes but the state has D = 2"),
        ({"diffusion": NeuralDiffusion(nn.Linear(2, 3))}, ValueError, r"net must return one amplitude per noisy"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_bad_inputs(kwargs, exc, match) -> None:
    with pytest.raises(exc, match=match):
        _call(**kwargs)


def test_bad_diffusion_construction() -> None:
    with pytest.raises(ValueError, match=r"a positive scale must be finite and > 0"):
        ScalarDiffusion(-0.1)
    with pytest.raises(ValueError, match=r"a positive scale must be finite and > 0"):
        DiagonalDiffusion([0.1, 0.0])
    with pytest.raises(ValueError, match=r"sigma has 2 amplitudes but components lists 3 channels"):
        DiagonalDiffusion([0.1, 0.2], components=[0, 1, 2])
    with pytest.raises(ValueError, match=r"components must not repeat"):
        ScalarDiffusion(0.1, components=[1, 1])
    with pytest.raises(ValueError, match=r"unknown noise='diag'"):
        ScalarDiffusion(0.1, noise="diag")
    with pytest.raises(TypeError, match=r"net must be an nn.Module"):
        NeuralDiffusion(lambda y: y)


def test_plain_functions_need_no_params_when_nothing_requires_grad() -> None:
    # The default grad='adjoint_reversible_heun' used to demand params=() for plain functions; without anything to
    # differentiate it now runs the same solve as grad='direct' (same seed, same steps: equal to 1e-12).
    y0, t = torch.ones(3, 2, dtype=torch.float64), torch.linspace(0, 1, 5, dtype=torch.float64)
    diffusion = lambda t, y: 0.1 * torch.ones_like(y)  # noqa: E731
    got = sdeint(_drift, diffusion, y0, t, dt=0.125, seed=0)
    ref = sdeint(_drift, diffusion, y0, t, dt=0.125, seed=0, grad="direct")
    torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-15)


class _OutsideDrift(nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.__dict__["w"] = w  # not registered: neither a parameter nor a buffer

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.w * y


def test_adjoint_refuses_an_undeclared_tensor() -> None:
    # w used to get no gradient (direct: about -2) without a word.
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(3, 2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=r"drift uses 1 other tensor that requires grad .*nn.Parameter"):
        sdeint(_OutsideDrift(w), ScalarDiffusion(0.1, dtype=torch.float64), y0, T.double(), dt=0.125, seed=0)


def test_adjoint_double_backward_raises_clearly() -> None:
    # Used to fail inside torchsde with "Please report a bug to torchsde".
    drift = TimeDependent()
    y0 = torch.ones(3, 2, dtype=torch.float64)
    ys = sdeint(drift, ScalarDiffusion(0.1, dtype=torch.float64), y0, T.double(), dt=0.125, seed=0)
    with pytest.raises(RuntimeError, match=r"double backward .* only with grad='direct'"):
        torch.autograd.grad(ys.sum(), list(drift.parameters()), create_graph=True)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"t": T.clone().requires_grad_()}, ValueError, r"t requires grad.*Pass t.detach\(\)"),
        ({"dt": 1e-7}, ValueError, r"takes 10000000 steps, more than max_steps = 100000"),
        ({"max_steps": 0}, ValueError, r"max_steps must be a positive integer"),
        ({"method": ["euler"]}, ValueError, r"unknown method=\['euler'\]"),
        (
            {"diffusion": lambda t, y: torch.full_like(y, math.nan), "grad": "direct"},
            physnode.errors.NonFiniteError,
            r"trajectory 0 is NaN or Inf at t = 0.25",
        ),
    ],
    ids=["t-requires-grad", "dt-too-small", "max-steps-zero", "method-list", "nan-diffusion"],
)
def test_more_bad_inputs(kwargs, exc, match) -> None:
    # Before: t's grad silently ignored; a 10^7-step solve; an unhashable-type TypeError; NaN returned silently.
    with pytest.raises(exc, match=match):
        _call(**kwargs)
