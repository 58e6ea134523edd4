"""Semi-amortised inference (refining each patient's encoding on its history) and the KL warm-up of training."""

from __future__ import annotations

import pytest
import torch
from test_latent_model import _data, _lhm

from physnode.latent import SolveSettings, fit_latent_hybrid
from physnode.latent.refine import history_objective, refine

F64 = torch.float64
SETTINGS = SolveSettings(method="midpoint", step_size=0.5)


def test_refine_lowers_each_patients_history_objective_and_leaves_the_model_alone():
    torch.manual_seed(0)
    data, s = _data(B=3, T=5)
    m = _lhm(inference="point")
    m.set_scales(data, s)
    weights = {k: v.clone() for k, v in m.state_dict().items()}
    post = m.encode(data, s, until=2.5)
    before = history_objective(m, post.mean.detach(), data, s, until=2.5, settings=SETTINGS).detach()
    out = refine(m, data, s, until=2.5, settings=SETTINGS, steps=4, lr=0.02)
    after = history_objective(m, out.mean, data, s, until=2.5, settings=SETTINGS).detach()
    # Each patient's objective depends on its own w only: every row goes down (Adam, small steps, smooth objective).
    assert bool((after < before).all()), (before, after)
    assert not torch.equal(out.mean, post.mean.detach())
    torch.testing.assert_close(out.logvar, post.logvar.detach(), rtol=0, atol=0)  # the encoder's, passed through
    for k, v in m.state_dict().items():
        assert torch.equal(v, weights[k]), k  # no weight moved
    assert all(p.requires_grad for p in m.encoder.parameters())  # and the weights are trainable again
    assert refine(m, data, s, until=2.5, steps=0).mean.equal(m.encode(data, s, until=2.5).mean)


def test_history_objective_ignores_observations_after_the_window():
    data, s = _data(B=3, T=6)
    m = _lhm()
    m.set_scales(data, s)
    w = m.encode(data, s, until=2.5).mean.detach()
    later = data.times > 2.5
    changed = data.to(dtype=F64)
    changed.values = torch.where(later.unsqueeze(-1), changed.values + 5.0, changed.values)
    a = history_objective(m, w, data, s, until=2.5, settings=SETTINGS)
    b = history_objective(m, w, changed, s, until=2.5, settings=SETTINGS)
    # The same solve over the same history: equal up to round-off; the whole record gives another value.
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(history_objective(m, w, changed, s, settings=SETTINGS), a)


def test_refine_and_warmup_errors():
    data, s = _data()
    m = _lhm()
    with pytest.raises(ValueError, match="steps must be a non-negative integer"):
        refine(m, data, s, steps=-1)
    with pytest.raises(ValueError, match="lr must be a positive number"):
        refine(m, data, s, lr=0.0)
    with pytest.raises(ValueError, match="kl_warmup must be a non-negative integer"):
        fit_latent_hybrid(m, data, s, iterations=1, kl_warmup=-2)


def test_kl_weight_scales_only_the_kl_term():
    data, s = _data()
    m = _lhm()
    m.set_scales(data, s)
    full, stats = m.loss(data, s, until=2.0, generator=torch.Generator().manual_seed(1))
    none, stats0 = m.loss(data, s, until=2.0, generator=torch.Generator().manual_seed(1), kl_weight=0.0)
    # The same sample (same generator seed): the ELBO without its KL term is the NLL; with it, NLL + KL.
    assert stats["kl"] > 0
    torch.testing.assert_close(float(none.detach()), stats0["nll"], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(float(full.detach()), stats["nll"] + stats["kl"], rtol=1e-12, atol=1e-12)
