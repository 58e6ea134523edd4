"""SDE-GAN: LipSwish and clipping Lipschitz bounds, exact reversible-Heun adjoint, shapes, masks, training."""

from __future__ import annotations

import math

import pytest
import torch
from sde_train_systems import MU, ou_paths
from sde_train_systems import irregular as make_irregular
from torch import nn

from physnode.data import Trajectories
from physnode.sde import (
    CDEDiscriminator,
    LipSwish,
    SDEGenerator,
    clip_lipschitz_,
    fit_sde_gan,
    gradient_penalty,
    marginal_w1,
)
from physnode.sde._training import fill_forward, make_batch
from physnode.sde.gan import mlp

F64 = torch.float64


def test_lipswish_is_one_lipschitz_and_nearly_tight() -> None:
    f = LipSwish()
    g = torch.Generator().manual_seed(0)
    x = 6 * torch.randn(200_000, generator=g, dtype=F64)
    y = x + torch.randn(200_000, generator=g, dtype=F64) * torch.rand(200_000, generator=g, dtype=F64)
    ratio = (f(x) - f(y)).abs() / (x - y).abs()
    assert float(ratio.max()) <= 1.0
    # The slope itself on a fine grid: max 0.909 * 1.0998 ≈ 0.9998, so the scale 0.909 is (just) enough.
    z = torch.linspace(-10, 10, 400_001, dtype=F64, requires_grad=True)
    (d,) = torch.autograd.grad(f(z).sum(), z)
    assert 0.999 < float(d.max()) <= 1.0
    assert float(d.min()) > -0.1  # silu's minimum slope is about -0.0998, times 0.909


def test_clipped_mlp_is_one_lipschitz_in_l1_and_unclipped_is_not() -> None:
    torch.manual_seed(1)
    net = mlp(5, 7, width=16, depth=2, final_tanh=True).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(20)  # far outside the clipping box
    x = torch.randn(4000, 5, dtype=F64)
    y = x + 0.01 * torch.randn(4000, 5, dtype=F64)

    def ratio() -> float:
        with torch.no_grad():
            return float(((net(x) - net(y)).abs().sum(-1) / (x - y).abs().sum(-1)).max())

    assert ratio() > 1.0  # the check below can fail
    clip_lipschitz_(net)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            assert float(m.weight.detach().abs().sum(0).max()) <= 1.0 + 1e-12  # ||W||_{1->1}: max column sum
    assert ratio() <= 1.0


def _path(disc: CDEDiscriminator, t: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.cat([t.expand(v.shape[0], -1).unsqueeze(-1), v], dim=-1)


def discriminator_bound(disc: CDEDiscriminator, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """Upper bound on |D(X) − D(Y)| for a clipped discriminator (paths ``(B, T, 1 + D)`` with the time channel).

    With every linear layer clipped, ξ and f are 1-Lipschitz in ℓ¹, |f| ≤ 1 entrywise (tanh) and |m_j| ≤ 1. For
    one Heun step with increments Δ, Δ' (a = max ‖Δ‖_∞, ‖Δ'‖_∞, δ = ‖Δ − Δ'‖₁) the state error obeys
    e' ≤ (1 + a + a²/2) e + H (1 + a/2) δ, e₀ = ‖X₀ − Y₀‖₁, and |D(X) − D(Y)| ≤ e_T.
    """
    H = disc.hidden_dim
    e = (X[:, 0] - Y[:, 0]).abs().sum(-1)
    dX, dY = X.diff(dim=1), Y.diff(dim=1)
    for k in range(dX.shape[1]):
        a = torch.maximum(dX[:, k].abs().amax(-1), dY[:, k].abs().amax(-1))
        delta = (dX[:, k] - dY[:, k]).abs().sum(-1)
        e = (1 + a + a * a / 2) * e + H * (1 + a / 2) * delta
    return e


def test_clipped_discriminator_obeys_its_lipschitz_bound() -> None:
    torch.manual_seed(2)
    disc = CDEDiscriminator(2, hidden_dim=6, width=12).double()
    with torch.no_grad():
        for p in disc.parameters():
            p.mul_(10)
    t = torch.linspace(0, 1, 9, dtype=F64)
    v = torch.randn(300, 9, 2, dtype=F64).cumsum(1) * 0.3
    w = v + 0.05 * torch.randn_like(v)
    X, Y = _path(disc, t, v), _path(disc, t, w)
    with torch.no_grad():
        gap = (disc(t, v) - disc(t, w)).abs()
    assert bool((gap > discriminator_bound(disc, X, Y)).any())  # unclipped, large weights: the bound fails
    clip_lipschitz_(disc)
    with torch.no_grad():
        gap = (disc(t, v) - disc(t, w)).abs()
    bound = discriminator_bound(disc, X, Y)
    assert bool((gap <= bound).all()), float((gap / bound).max())
    assert float(gap.max()) > 0


class LinearDamping(nn.Module):
    """Known physics in the generator's drift: ``−k y`` with a learnable ``k``."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(0.7, dtype=F64))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.k * y


@pytest.mark.parametrize("initial", ["learned", "data"])
def test_reversible_heun_adjoint_equals_backprop_on_the_same_brownian_sample(initial: str) -> None:
    torch.manual_seed(3)
    gen = SDEGenerator(2, hidden_dim=1, noise_dim=3, width=8, initial=initial, physics=LinearDamping()).double()
    disc = CDEDiscriminator(2, hidden_dim=4, width=8).double()
    grid, paths = ou_paths(6, 17, 2.0**-3, seed=4)
    data = make_irregular(grid, paths.expand(-1, -1, 2).contiguous(), keep=0.6, seed=5)
    batch = make_batch(data)
    params = list(gen.parameters())
    out = {}
    for grad in ("direct", "adjoint_reversible_heun"):
        g = torch.Generator().manual_seed(0)
        y0 = gen.initial_state(6, y0=batch.values[:, 0] if initial == "data" else None, generator=g)
        ys = gen.solve(batch.grid, y0, dt=2.0**-5, seed=7, grad=grad)
        fake = batch.observe(batch.gather(ys[..., :2]))
        loss = disc(batch.times, fake, batch.valid).sum()
        out[grad] = (ys.detach(), torch.autograd.grad(loss, params, allow_unused=True))
    (ys_d, g_d), (ys_a, g_a) = out["direct"], out["adjoint_reversible_heun"]
    assert torch.allclose(ys_d, ys_a, rtol=0, atol=1e-14)  # same Brownian sample, same steps
    used = 0
    for a, d in zip(g_a, g_d, strict=True):
        if d is None:
            continue
        used += 1
        scale = float(d.abs().max())
        assert scale > 0
        assert float((a - d).abs().max()) <= 1e-10 * scale
    assert used == len(params)  # every parameter, the initial network and the physics included
    k = next(i for i, p in enumerate(params) if p is gen.drift.physics.k)
    assert g_a[k] is not None and float(g_a[k].abs()) > 0


def test_shapes_of_generator_and_discriminator() -> None:
    gen = SDEGenerator(3, hidden_dim=2, noise_dim=4, width=8)
    t = torch.linspace(0, 1, 5)
    y0 = gen.initial_state(7)
    assert y0.shape == (7, 5)
    ys = gen.solve(t, y0, dt=0.125)
    assert ys.shape == (7, 5, 5)
    assert gen.sample(t, 4, dt=0.125, seed=0).shape == (4, 5, 3)
    disc = CDEDiscriminator(3, hidden_dim=5)
    assert disc(t, ys[..., :3]).shape == (7,)
    cond = SDEGenerator(3, initial="data", width=8)
    assert cond.sample(t, dt=0.125, y0=torch.zeros(2, 3), seed=1).shape == (2, 5, 3)


def test_discriminator_ignores_padding_after_each_trajectorys_length() -> None:
    torch.manual_seed(4)
    disc = CDEDiscriminator(1, hidden_dim=4, width=8).double()
    t = torch.tensor([[0.0, 0.5, 1.0, 0.0], [0.0, 0.25, 0.5, 0.75]], dtype=F64)
    v = torch.randn(2, 4, 1, dtype=F64)
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    s = disc(t, v, valid)
    v2, t2 = v.clone(), t.clone()
    v2[0, 3], t2[0, 3] = 100.0, 7.0  # garbage in the padding
    s2 = disc(t2, v2, valid)
    assert torch.allclose(s, s2, rtol=0, atol=1e-14)
    assert not torch.allclose(disc(t2, v2), s)  # without valid=, the padding would count


def test_generated_paths_are_masked_and_filled_like_the_data() -> None:
    times = torch.tensor([[0.0, 0.5, 1.0], [0.0, 1.0, float("nan")]], dtype=F64)
    values = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], [[7.0, 8.0], [9.0, 10.0], [0.0, 0.0]]], dtype=F64)
    mask = torch.tensor([[[True, False], [False, False], [True, True]], [[True, True], [False, True], [False, False]]])
    data = Trajectories(times, values, mask)
    batch = make_batch(data)
    assert batch.grid.tolist() == [0.0, 0.5, 1.0]
    assert batch.index.tolist() == [[0, 1, 2], [0, 2, 2]]
    # Channel 1 of trajectory 0 is first seen at t = 1: it is filled backwards before, forwards after.
    assert batch.values[0, :, 1].tolist() == [6.0, 6.0, 6.0]
    assert batch.values[0, :, 0].tolist() == [1.0, 1.0, 5.0]
    assert batch.values[1, :, 0].tolist() == [7.0, 7.0, 7.0]
    model = torch.arange(12, dtype=F64).view(2, 3, 2)
    seen = batch.observe(model)
    assert torch.equal(seen[mask], model[mask])
    assert torch.equal(fill_forward(seen, mask), seen)


def test_gradient_penalty_is_differentiable_twice() -> None:
    disc = CDEDiscriminator(1, hidden_dim=3, width=4).double()
    t = torch.linspace(0, 1, 4, dtype=F64)
    real, fake = torch.randn(5, 4, 1, dtype=F64), torch.randn(5, 4, 1, dtype=F64)
    gp = gradient_penalty(disc, t, real, fake, generator=torch.Generator().manual_seed(0))
    grads = torch.autograd.grad(gp, list(disc.parameters()), allow_unused=True)
    assert math.isfinite(float(gp.detach())) and any(g is not None and float(g.abs().max()) > 0 for g in grads)


def test_bad_arguments_are_explained() -> None:
    gen, disc = SDEGenerator(1, width=4), CDEDiscriminator(1, hidden_dim=2, width=4)
    grid, paths = ou_paths(4, 5, 0.25, seed=0)
    data = make_irregular(grid, paths, 0.7, seed=1)
    with pytest.raises(ValueError, match="lipschitz='spectral'"):
        fit_sde_gan(gen, disc, data, dt=0.25, lipschitz="spectral")
    with pytest.raises(ValueError, match="data_dim = 2 channels but the data has 1"):
        fit_sde_gan(SDEGenerator(2), CDEDiscriminator(2), data, dt=0.25)
    with pytest.raises(TypeError, match="Trajectories"):
        fit_sde_gan(gen, disc, paths, dt=0.25)
    with pytest.raises(TypeError, match="physics must be an nn.Module"):
        SDEGenerator(1, physics=lambda t, y: -y)
    with pytest.raises(ValueError, match="initial must be 'learned' or 'data'"):
        SDEGenerator(1, initial="random")
    late = Trajectories(torch.tensor([[0.0, 0.5], [0.25, 0.5]]), torch.ones(2, 2, 1))
    with pytest.raises(ValueError, match="common first time"):
        fit_sde_gan(SDEGenerator(1, initial="data"), disc, late, dt=0.25, iterations=1, progress=False)
    with pytest.raises(ValueError, match="resume=True needs checkpoint"):
        fit_sde_gan(gen, disc, data, dt=0.25, resume=True)


def _tiny_gan(seed: int = 0) -> tuple[SDEGenerator, CDEDiscriminator]:
    torch.manual_seed(seed)
    return SDEGenerator(1, width=8, drift_scale=2.0).double(), CDEDiscriminator(1, hidden_dim=4, width=8).double()


class _Stop(Exception):
    pass


def _kill_at(n: int):
    """A callback that interrupts a run at iteration ``n`` (before that iteration's checkpoint is written)."""

    def cb(it: int, entry: dict) -> None:
        if it == n:
            raise _Stop

    return cb


def test_checkpoint_resume_equals_an_uninterrupted_run(tmp_path) -> None:
    grid, paths = ou_paths(16, 9, 0.125, seed=0)
    data = make_irregular(grid, paths, 0.6, seed=1)
    kw = {"dt": 0.125, "iterations": 4, "batch_size": 6, "progress": False, "seed": 3, "average_from": 2}
    g1, d1 = _tiny_gan()
    full = fit_sde_gan(g1, d1, data, **kw)
    g2, d2 = _tiny_gan()
    ck = tmp_path / "gan.pt"
    with pytest.raises(_Stop):
        fit_sde_gan(g2, d2, data, **kw, checkpoint={"path": ck, "every": 1}, callback=_kill_at(3))
    g3, d3 = _tiny_gan(seed=9)  # other initial weights: everything must come from the checkpoint
    resumed = fit_sde_gan(g3, d3, data, **kw, checkpoint=ck, resume=True)
    for a, b in zip([*g1.parameters(), *d1.parameters()], [*g3.parameters(), *d3.parameters()], strict=True):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    assert [h["iteration"] for h in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[3]["wasserstein"] == pytest.approx(full.history[3]["wasserstein"], rel=1e-10)
    with pytest.raises(ValueError, match="belongs to another run: its epochs is 4, not 6"):
        fit_sde_gan(g3, d3, data, **{**kw, "iterations": 6}, checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="its lipschitz is 'clip', not 'gradient_penalty'"):
        fit_sde_gan(g3, d3, data, **kw, lipschitz="gradient_penalty", checkpoint=ck, resume=True)
    with pytest.raises(ValueError, match="other data"):
        fit_sde_gan(g3, d3, data[:8], **kw, checkpoint=ck, resume=True)


@pytest.mark.slow
def test_training_reduces_the_marginal_wasserstein_distance() -> None:
    # OU data (theta = 2, mu = 1, sigma = 0.5), 50% of a dt = 1/8 grid on [0, 2] kept per trajectory.
    grid, paths = ou_paths(256, 17, 0.125, seed=0, dtype=torch.float32)
    data = make_irregular(grid, paths, 0.5, seed=1)
    torch.manual_seed(0)
    gen, disc = SDEGenerator(1, width=16, drift_scale=2.0), CDEDiscriminator(1, hidden_dim=8, width=16)

    def w1() -> float:
        with torch.no_grad():
            return float(marginal_w1(gen.sample(grid, 512, dt=0.125, seed=11), paths).mean())

    before = w1()
    fit_sde_gan(
        gen,
        disc,
        data,
        dt=0.125,
        iterations=200,
        batch_size=64,
        lr_generator=5e-4,
        lr_discriminator=2e-3,
        average_from=60,
        progress=False,
    )
    after = w1()
    # Measured 0.40 -> 0.22 (mean over 17 times); adversarial training oscillates (the last weights ranged over
    # 0.20-0.42 between iterations 100 and 200), the averaged generator is steadier. W1 sampling noise with 256 vs
    # 512 paths is about 0.03.
    assert after < 0.75 * before, (before, after)
    with torch.no_grad():
        end = gen.sample(grid, 512, dt=0.125, seed=12)[:, -1, 0]
    assert abs(float(end.mean()) - MU) < 0.35  # measured 1.14; an untrained generator ends near 0.5
