"""Latent hybrid models: schedules, solve grids, encoder/decoder shapes and masks, per-trajectory parameters,
gradient exactness of the custom-backward methods, save/load, checkpoints and counterfactual forecasts."""

from __future__ import annotations

import math

import pytest
import torch
from registries import EXACT_GRADIENTS, solver_for, solvers_for
from torch import Tensor

from physnode.data import Trajectories
from physnode.datasets.pkpd import POPULATION, expert_physics, true_rhs
from physnode.latent import (
    BackwardGRUEncoder,
    Expert,
    GaussianDecoder,
    LatentHybrid,
    SolveSettings,
    TreatmentSchedule,
    fit_latent_hybrid,
    load_latent_hybrid,
    save_latent_hybrid,
)
from physnode.physics import Hybrid

F64 = torch.float64


def _data(B: int = 3, T: int = 5, seed: int = 0) -> tuple[Trajectories, TreatmentSchedule]:
    """Small irregular data (random values, 30 % missing, ragged lengths) and infusions."""
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(0.2 + 3.8 * torch.rand(B, T, generator=g, dtype=F64), dim=1).values
    lengths = torch.tensor([T - (b % 2) for b in range(B)])
    for b in range(B):
        times[b, lengths[b] :] = math.nan
    values = torch.randn(B, T, 2, generator=g, dtype=F64)
    mask = torch.rand(B, T, 2, generator=g) > 0.3
    mask &= (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    mask[:, 0] = True
    infusions = [[(0.5 + 0.3 * b, 1.7, 40.0), (2.0, 2.5, 30.0)] for b in range(B)]
    return Trajectories(times, values, mask, lengths), TreatmentSchedule.from_infusions(infusions)


def _lhm(per_trajectory=("CL", "EC50"), latent_dim: int = 2, inference: str = "variational") -> LatentHybrid:
    ex = Expert(expert_physics(), inputs=["u"], per_trajectory=list(per_trajectory))
    m = LatentHybrid(
        data_dim=2,
        input_dim=1,
        expert=ex,
        latent_dim=latent_dim,
        hidden=8,
        encoder_hidden=8,
        expert_scale=[50.0, 50.0, 1.0],
        fixed_initial={"A1": 0.0, "A2": 0.0},
        inference=inference,
    )
    return m.double()


def test_schedule_values_breakpoints_and_errors():
    s = TreatmentSchedule.from_infusions([[(1.0, 2.0, 50.0), (1.5, 3.0, 10.0)], []], dtype=F64)
    t = torch.tensor([[0.5, 1.0, 1.6, 2.0, 3.0], [0.5, 1.0, 1.6, 2.0, 3.0]], dtype=F64)
    assert s(t).squeeze(-1).tolist() == [[0.0, 50.0, 60.0, 10.0, 0.0], [0.0] * 5]
    assert s.breakpoints[0].tolist() == [1.0, 1.5, 2.0, 3.0] and torch.isinf(s.breakpoints[1]).all()
    assert s[[1]].n_trajectories == 1 and s.scaled(0.0)(t[:, 2]).abs().sum() == 0
    with pytest.raises(ValueError, match="start >= end"):
        TreatmentSchedule.from_infusions([[(2.0, 1.0, 5.0)]])


def test_schedule_as_inputs_has_the_same_values_and_breakpoints():
    s = TreatmentSchedule.from_infusions([[(1.0, 2.0, 50.0), (1.5, 3.0, 10.0)], [(0.0, 0.5, 7.0)], []], dtype=F64)
    u = s.to_inputs(0.0)
    assert u.times[0].tolist() == [0.0, 1.0, 1.5, 2.0, 3.0]
    assert u.times[1, :2].tolist() == [0.0, 0.5] and torch.isnan(u.times[1, 2:]).all()
    t = torch.tensor([0.0, 0.25, 0.5, 0.99, 1.0, 1.2, 1.5, 2.0, 2.7, 3.0, 8.0], dtype=F64)
    for tk in t:
        tt = tk.expand(3)
        assert u(tt).tolist() == s(tt).tolist(), float(tk)  # piecewise constant, right-continuous: the same levels
    with pytest.raises(TypeError, match="physnode.data.Inputs or a physnode.latent.TreatmentSchedule"):
        _lhm().solve(torch.zeros(3, 3, dtype=F64), t[1:4].expand(3, -1), torch.tensor([3, 3, 3]), lambda t: t, None)


def _pk_exact(infusions: list, times: Tensor, CL: float, V1: float, Q: float, V2: float, boluses: tuple = ()) -> Tensor:
    """``(A1, A2)`` of the two-compartment model at ``times`` from ``A = 0`` at ``t = 0``, exactly: the model is
    linear with a piecewise-constant input, so each piece is one matrix exponential of the augmented system;
    ``boluses`` ``(time, amount)`` add to ``A1`` (right-continuous)."""
    M = torch.tensor([[-(CL + Q) / V1, Q / V2, 0.0], [Q / V1, -Q / V2, 0.0], [0.0, 0.0, 0.0]], dtype=F64)
    cuts = sorted({0.0, *(float(x) for r in infusions for x in r[:2]), *(b[0] for b in boluses), *times.tolist()})
    out, a, t_prev = {}, torch.zeros(3, dtype=F64), 0.0
    for tc in cuts[1:]:
        rate = sum(r[2] for r in infusions if r[0] <= t_prev < r[1])
        Mi = M.clone()
        Mi[0, 2] = rate
        a = torch.linalg.matrix_exp(Mi * (tc - t_prev)) @ torch.cat([a[:2], torch.ones(1, dtype=F64)])
        a[0] += sum(amount for tb, amount in boluses if tb == tc)
        out[tc], t_prev = a[:2].clone(), tc
    return torch.stack([out[float(x)] for x in times])


@pytest.mark.parametrize(
    "settings",
    [SolveSettings(method="rk4", step_size=0.1), SolveSettings(method="dopri5")],
    ids=["rk4-fixed", "dopri5-adaptive"],
)
def test_solve_lands_on_infusion_breakpoints(settings):
    """The drug amounts of the LHM's solve match the exact piecewise matrix-exponential solution: a step straddling
    an infusion start or end would leave an O(h) error (about rate * h = 4 mg here)."""
    data, s = _data()
    m = _lhm(latent_dim=0)
    assert m.expert is not None
    values = {n: float(m.expert.param(n)().detach()) for n in ("CL", "V1")}
    z0 = torch.tensor([[0.0, 0.0, 1.0]] * data.n_trajectories, dtype=F64)
    with torch.no_grad():
        zs = m.solve(z0, data.times, data.lengths, s, m.theta_raw(torch.zeros(3, 2, dtype=F64)), settings=settings)
    rows = [[(0.5 + 0.3 * b, 1.7, 40.0), (2.0, 2.5, 30.0)] for b in range(data.n_trajectories)]
    for b in range(data.n_trajectories):
        n = int(data.lengths[b])
        ref = _pk_exact(rows[b], data.times[b, :n], values["CL"], values["V1"], 6.0, 20.0)
        # rk4 with h = 0.1 day (rates about 1/day): global error ~ h^4 ~ 1e-4 relative; dopri5 at rtol 1e-5.
        torch.testing.assert_close(zs[b, :n, :2], ref, rtol=0, atol=1e-3 * float(ref.abs().max()))
        assert float(zs[b, n:].abs().sum()) == 0.0  # padded entries are zero


def test_encoder_shapes_and_masked_entries_are_ignored():
    enc = BackwardGRUEncoder(data_dim=2, input_dim=1, out_dim=5, hidden=8).double()
    B, T = 4, 6
    t = torch.linspace(0, 1, T, dtype=F64).expand(B, -1)
    x = torch.randn(B, T, 2, dtype=F64)
    u = torch.randn(B, T, 1, dtype=F64)
    mask = torch.rand(B, T, 2) > 0.4
    mean, logvar = enc(t, x, mask, u)
    assert mean.shape == logvar.shape == (B, 5)
    x2 = torch.where(mask, x, x + 100.0)  # change only unobserved entries
    u2 = torch.where(mask.any(-1, keepdim=True), u, u - 7.0)  # and inputs at times without observations
    mean2, logvar2 = enc(t, x2, mask, u2)
    # Same arithmetic on the same observed numbers: equal up to round-off.
    torch.testing.assert_close(mean2, mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(logvar2, logvar, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(enc(t, x + 1.0, mask, u)[0], mean)


def test_decoder_masked_gaussian_nll_matches_hand_computation():
    dec = GaussianDecoder(state_dim=3, data_dim=2, hidden=4).double()
    with torch.no_grad():
        dec.log_sigma.copy_(torch.tensor([0.1, -0.3], dtype=F64))
    mean = torch.randn(2, 3, 2, dtype=F64)
    x = torch.randn(2, 3, 2, dtype=F64)
    mask = torch.tensor([[[1, 0], [1, 1], [0, 0]], [[0, 1], [1, 0], [1, 1]]], dtype=torch.bool)
    sigma = torch.exp(dec.log_sigma.detach())
    dist = torch.distributions.Normal(mean, sigma)
    ref = -(dist.log_prob(x) * mask).sum(dim=(1, 2))
    torch.testing.assert_close(dec.nll(mean, x, mask).detach(), ref, rtol=1e-12, atol=1e-12)
    assert dec(torch.randn(5, 7, 3, dtype=F64)).shape == (5, 7, 2)


def test_expert_per_trajectory_parameters_equal_per_patient_models():
    """Row b of a per-trajectory solve equals the model with its parameters set to patient b's values, for the
    compiled fast path (SymbolicODE) and the generic one (a Hybrid, parameters swapped in by functional_call)."""
    torch.manual_seed(1)
    B = 3
    z = torch.rand(B, 3, dtype=F64) * torch.tensor([40.0, 30.0, 1.0], dtype=F64)
    u = torch.rand(B, 1, dtype=F64) * 50
    t = torch.zeros(B, dtype=F64)
    values = torch.tensor([[3.0, 1.0], [5.0, 2.5], [4.0, 0.7]], dtype=F64)
    for wrap in (False, True):
        physics = expert_physics()
        if wrap:
            corr = torch.nn.Linear(4, 3).double()
            physics = Hybrid(physics, corr, on=[0, 1, 2])
        ex = Expert(physics, inputs=["u"], per_trajectory=["CL", "EC50"])
        assert ex._fast is (not wrap)
        raw = torch.stack([ex.param(n)._to_raw(values[:, i]) for i, n in enumerate(ex.theta_names)], dim=-1)
        torch.testing.assert_close(ex.constrained(raw), values, rtol=1e-12, atol=0)
        f = ex(t, z, u, raw)
        for b in range(B):
            ex.param("CL").set_(values[b, 0])
            ex.param("EC50").set_(values[b, 1])
            fb = ex(t[b : b + 1], z[b : b + 1], u[b : b + 1])
            # The same formulas on the same numbers, batched or not: equal up to round-off.
            torch.testing.assert_close(f[b : b + 1], fb, rtol=1e-12, atol=1e-12)


def test_expert_equations_match_the_true_system():
    """The textbook part of the pkpd dataset is the expert model (A1, A2, R components)."""
    ex = Expert(expert_physics(learnable=()), inputs=["u"])
    y = torch.rand(4, 5, dtype=F64) * torch.tensor([40.0, 30.0, 1.2, 0.3, 0.3], dtype=F64)
    u = torch.rand(4, dtype=F64) * 50
    p = {k: torch.full((4,), v[0], dtype=F64) for k, v in POPULATION.items()}
    ref = true_rhs(torch.zeros(4, dtype=F64), y, u, p)[:, :3]
    torch.testing.assert_close(ex(torch.zeros(4, dtype=F64), y[:, :3], u.unsqueeze(-1)), ref, rtol=1e-12, atol=1e-12)


def test_expert_errors():
    with pytest.raises(ValueError, match="not state variables"):
        Expert(expert_physics(), inputs=["dose"])
    with pytest.raises(ValueError, match="not a named parameter"):
        Expert(expert_physics(), inputs=["u"], per_trajectory=["Vmax"])
    with pytest.raises(ValueError, match="learnable scalar Param"):
        Expert(expert_physics(), inputs=["u"], per_trajectory=["Q"])
    with pytest.raises(ValueError, match="fixed_initial"):
        LatentHybrid(data_dim=2, input_dim=1, expert=Expert(expert_physics(), inputs=["u"]), fixed_initial={"B": 0})


def _gradient(grad: str, method: str) -> list:
    """Gradients of a decoded-state loss of one LHM solve w.r.t. the encoder output (initial state and per-trajectory
    parameters) and every weight, with a model built from the same seed."""
    torch.manual_seed(5)
    data, s = _data(B=2, T=3)
    m = _lhm()
    m.set_scales(data, s)
    post = m.encode(data, s, until=2.0)
    w = post.mean.detach().clone().requires_grad_(True)
    z0 = m.initial_state(w[:, : m.n_init])
    theta = m.theta_raw(w[:, m.n_init :])
    # Fixed steps (h = 0.1 day, landing on every observation and infusion start/end) keep the case small.
    options = (("adaptive", False),) if method in ("alf", "reversible_heun") else ()
    settings = SolveSettings(method=method, grad=grad, step_size=0.1, rtol=1e-3, atol=1e-4, options=options)
    zs = m.solve(z0, data.times, data.lengths, s, theta, settings=settings)
    loss = (m.decoder(m.scaled_state(zs)) ** 2).sum()
    params = [w, *[p for p in m.parameters() if p.requires_grad]]
    return list(torch.autograd.grad(loss, params, allow_unused=True))


@pytest.mark.parametrize("grad", EXACT_GRADIENTS, ids=EXACT_GRADIENTS)
def test_custom_backward_gradients_are_exact_on_the_lhm(grad):
    """Gradients w.r.t. the initial state, the per-trajectory parameters and every weight equal backprop through
    the same discrete solve, landing on the infusion breakpoints."""
    method = "rk4" if "rk4" in solvers_for(grad) else solver_for(grad)  # fixed steps: a small, fast case
    got, ref = _gradient(grad, method), _gradient("direct", method)
    assert any(r is not None and float(r.abs().max()) > 0 for r in ref)
    for g, r in zip(got, ref, strict=True):
        if r is None:
            assert g is None or float(g.abs().max()) == 0.0
            continue
        # Exact methods reproduce backprop through the same steps up to float64 round-off (1e-9 relative leaves room
        # for the different summation order of the reverse pass).
        torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-9 * float(r.abs().max()))


def test_loss_shapes_kl_and_point_inference():
    data, s = _data()
    for inference in ("variational", "point"):
        m = _lhm(inference=inference)
        loss, stats = m.loss(data, s, until=2.0, generator=torch.Generator().manual_seed(0))
        assert (loss.ndim == 0 and math.isfinite(stats["loss"]) and stats["kl"] >= 0) or inference == "point"
        loss.backward()
        assert m.encoder.head.weight.grad is not None and float(m.encoder.head.weight.grad.abs().sum()) > 0
    # KL of the prior against itself is zero.
    m = _lhm()
    loc, logstd = m._prior()
    from physnode.latent import Posterior

    post = Posterior(loc.expand(2, -1), (2 * logstd).expand(2, -1))
    torch.testing.assert_close(m.kl(post), torch.zeros(2, dtype=F64), rtol=0, atol=1e-12)


def test_save_load_round_trip(tmp_path):
    data, s = _data()
    m = _lhm()
    fit_latent_hybrid(m, data, s, until=2.0, iterations=1, batch_size=2, settings=SolveSettings(step_size=0.5))
    times = torch.linspace(0.5, 4.0, 5, dtype=F64)
    before = m.predict(data, s, times, until=2.0)
    path = tmp_path / "lhm.pt"
    save_latent_hybrid(path, m)
    ex = Expert(expert_physics(), inputs=["u"], per_trajectory=["CL", "EC50"])
    loaded = load_latent_hybrid(path, expert=ex)
    after = loaded.predict(data, s, times, until=2.0)
    for k in ("mean", "states", "theta"):
        # Same weights, same arithmetic: equal up to round-off.
        torch.testing.assert_close(after[k], before[k], rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="pass an equivalent expert"):
        load_latent_hybrid(path)
    with pytest.raises(ValueError, match="differs from the saved one"):
        load_latent_hybrid(path, expert=Expert(expert_physics(), inputs=["u"], per_trajectory=["CL"]))
    bad = tmp_path / "bad.pt"
    bad.write_text("not a model")
    with pytest.raises(ValueError, match="not a torch zip archive"):
        load_latent_hybrid(bad, expert=ex)


def test_checkpoint_resume_continues_the_same_run(tmp_path):
    data, s = _data(B=4)
    kw = {"until": 2.0, "batch_size": 2, "settings": SolveSettings(method="midpoint", step_size=0.5), "seed": 3}
    torch.manual_seed(0)
    straight = fit_latent_hybrid(_lhm(), data, s, iterations=4, **kw).model
    # A run interrupted after 2 iterations (its checkpoint), then resumed to 4.
    torch.manual_seed(0)
    half_path = tmp_path / "half.pt"
    fit_latent_hybrid(_lhm(), data, s, iterations=2, checkpoint=half_path, **kw)
    torch.manual_seed(0)
    resumed = fit_latent_hybrid(_lhm(), data, s, iterations=4, checkpoint=half_path, resume=True, **kw)
    assert len(resumed.history) == 4
    for (k, a), b in zip(straight.state_dict().items(), resumed.model.state_dict().values(), strict=True):
        # The same batches, noise and optimiser steps: equal up to round-off.
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=k)
    with pytest.raises(ValueError, match="another run"):
        other, so = _data(B=4, seed=9)
        fit_latent_hybrid(_lhm(), other, so, iterations=4, checkpoint=half_path, resume=True, **kw)


def test_counterfactual_plan_changes_the_forecast_only_through_the_treatment():
    data, s = _data()
    m = _lhm()
    m.set_scales(data, s)
    times = torch.linspace(0.5, 6.0, 9, dtype=F64)
    given = m.predict(data, s, times, until=2.0)
    none = m.predict(data, s, times, until=2.0, plan=s.scaled(0.0))
    assert float(none["states"][..., :2].abs().max()) == 0.0  # no drug ever given: amounts stay exactly 0
    assert float(given["states"][..., 0].max()) > 1.0
    torch.testing.assert_close(none["z0"], given["z0"], rtol=0, atol=0)  # the same encoding of the history


def test_physnode_inputs_drive_the_model_like_a_schedule():
    """A physnode.data.Inputs with the same infusions gives the same loss as the TreatmentSchedule."""
    from physnode.data.inputs import Inputs

    data, s = _data()
    rows = [[(0.5 + 0.3 * b, 1.7, 40.0), (2.0, 2.5, 30.0)] for b in range(data.n_trajectories)]
    u = Inputs.from_infusions(rows)
    m = _lhm(inference="point")
    a, _ = m.loss(data, s, until=2.0)
    m2 = _lhm(inference="point")
    m2.load_state_dict(m.state_dict())
    b, _ = m2.loss(data, u, until=2.0)
    # The same piecewise-constant series evaluated two ways: equal up to round-off.
    torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_boluses_jump_the_expert_state_and_are_differentiable():
    """Bolus doses into A1 (physnode.data.Inputs(boluses=)): the drug amounts match the exact solution with the
    jumps, and the gradient w.r.t. the amounts matches finite differences of the same discrete solve."""
    from physnode.data.inputs import Boluses, Inputs

    data, _ = _data()
    m = _lhm(latent_dim=0)
    assert m.expert is not None
    values = {n: float(m.expert.param(n)().detach()) for n in ("CL", "V1")}
    rows = [[(0.5 + 0.3 * b, 1.7, 40.0), (2.0, 2.5, 30.0)] for b in range(data.n_trajectories)]
    times, doses = [[1.0], [1.2], [3.0]], torch.tensor([[20.0], [10.0], [5.0]], dtype=F64, requires_grad=True)
    z0 = torch.tensor([[0.0, 0.0, 1.0]] * data.n_trajectories, dtype=F64)
    theta = m.theta_raw(torch.zeros(3, 2, dtype=F64)).detach()
    settings = SolveSettings(method="rk4", step_size=0.1)

    def amounts(d: Tensor) -> Tensor:
        u = Inputs.from_infusions(rows, boluses=Boluses(times, d, 0))
        return m.solve(z0, data.times, data.lengths, u, theta, settings=settings)[..., :2]

    zs = amounts(doses)
    for b in range(data.n_trajectories):
        n = int(data.lengths[b])
        bol = ((times[b][0], float(doses[b, 0].detach())),)
        ref = _pk_exact(rows[b], data.times[b, :n], values["CL"], values["V1"], 6.0, 20.0, bol)
        # rk4, h = 0.1 day: ~1e-4 relative (as above); a missed jump would be off by the dose (5-20 mg).
        torch.testing.assert_close(zs[b, :n], ref, rtol=0, atol=1e-3 * float(ref.abs().max()))
    (g,) = torch.autograd.grad(zs[..., 0].sum(), doses)
    eps = 1e-3
    fd = torch.stack(
        [
            (amounts(doses.detach() + eps * e.unsqueeze(-1))[..., 0].sum() - zs[..., 0].sum().detach()) / eps
            for e in torch.eye(3)
        ]
    )
    # The drug amounts are linear in the doses: forward differences are exact up to round-off.
    torch.testing.assert_close(g.squeeze(-1), fd, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="state component 7"):
        amounts_bad = Inputs.from_infusions(rows, boluses=Boluses(times, doses.detach(), 7))
        m.solve(z0, data.times, data.lengths, amounts_bad, theta, settings=settings)
