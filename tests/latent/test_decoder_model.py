"""A latent hybrid model with a partly known decoder: the known map inside the model's loss and forecasts,
gradients of its parameters, and save/load round trips (symbolic maps from the file, callables passed again)."""

from __future__ import annotations

import math

import pytest
import torch

from physnode.data import Trajectories
from physnode.datasets.pkpd import expert_physics
from physnode.latent import (
    Expert,
    LatentHybrid,
    SolveSettings,
    TreatmentSchedule,
    load_latent_hybrid,
    save_latent_hybrid,
)
from physnode.latent.decoder import Decoder, DecoderSpec
from physnode.physics import Param

F64 = torch.float64
SETTINGS = SolveSettings(method="midpoint", step_size=0.5)


def _data(B: int = 3, T: int = 5) -> tuple[Trajectories, TreatmentSchedule]:
    """Small irregular data: positive values (for a log-normal channel), 30 % missing, ragged lengths."""
    g = torch.Generator().manual_seed(0)
    times = torch.sort(0.2 + 3.8 * torch.rand(B, T, generator=g, dtype=F64), dim=1).values
    lengths = torch.tensor([T - (b % 2) for b in range(B)])
    for b in range(B):
        times[b, lengths[b] :] = math.nan
    values = 0.5 + torch.rand(B, T, 2, generator=g, dtype=F64)
    mask = torch.rand(B, T, 2, generator=g) > 0.3
    mask &= (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    mask[:, 0] = True
    values[~mask] = math.nan
    infusions = [[(0.5 + 0.3 * b, 1.7, 40.0), (2.0, 2.5, 30.0)] for b in range(B)]
    return Trajectories(times, values, mask, lengths), TreatmentSchedule.from_infusions(infusions)


def _expert() -> Expert:
    return Expert(expert_physics(), inputs=["u"], per_trajectory=["CL", "EC50"])


def _marker(z, p):
    return p["a"] * z["R"]


def _model(known=None, **spec) -> LatentHybrid:
    decoder = DecoderSpec(
        channels=["score", "marker"],
        known=known if known is not None else {"score": "R", "marker": "a*R"},
        residual=["score"],
        params={"a": Param(0.7)},
        likelihood={"score": "student_t", "marker": "lognormal"},
        **spec,
    )
    m = LatentHybrid(
        data_dim=2,
        input_dim=1,
        expert=_expert(),
        latent_dim=2,
        hidden=8,
        encoder_hidden=8,
        expert_scale=[50.0, 50.0, 1.0],
        fixed_initial={"A1": 0.0, "A2": 0.0},
        decoder=decoder,
    ).double()
    data, plan = _data()
    m.set_scales(data, plan)
    return m


def test_the_model_uses_the_known_map_in_forecasts_and_trains_its_parameters():
    m = _model()
    assert isinstance(m.decoder, Decoder)
    data, plan = _data()
    times = torch.linspace(0.5, 4.0, 6, dtype=F64)
    out = m.predict(data, plan, times, until=2.0, settings=SETTINGS)
    R = out["states"][..., 2]
    # At initialisation score is the known map R (the residual starts at zero) and marker = a R: the same products
    # computed twice, equal up to round-off.
    torch.testing.assert_close(out["mean"][..., 0], R, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["mean"][..., 1], 0.7 * R, rtol=1e-12, atol=1e-12)
    loss, parts = m.loss(data, plan, until=2.0, settings=SETTINGS, generator=torch.Generator().manual_seed(0))
    assert math.isfinite(parts["nll"])
    loss.backward()
    a = m.decoder.known.params.a.raw
    assert a.grad is not None and float(a.grad) != 0.0
    for name, p in m.named_parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all()), name


def test_gradient_of_a_known_parameter_through_the_model_matches_finite_differences():
    m = _model()
    data, plan = _data()

    def loss() -> torch.Tensor:
        # inference by the posterior mean (no sampling noise), the same solve each time
        m.inference = "point"
        return m.loss(data, plan, until=2.0, settings=SETTINGS)[0]

    raw = m.decoder.known.params.a.raw
    loss().backward()
    grad, fd = float(raw.grad), _central_difference(loss, raw)
    # Central differences in float64, h = 1e-6: truncation O(h²) and round-off O(eps/h) far below 1e-6 relative.
    assert abs(grad - fd) <= 1e-6 * max(1.0, abs(fd))


def _central_difference(loss, raw: torch.Tensor, h: float = 1e-6) -> float:
    """``(loss(raw + h) - loss(raw - h)) / 2h`` for a scalar parameter ``raw``, restored afterwards."""
    with torch.no_grad():
        base = raw.clone()
        raw.copy_(base + h)
        up = float(loss())
        raw.copy_(base - h)
        down = float(loss())
        raw.copy_(base)
    return (up - down) / (2 * h)


def test_save_load_round_trip_of_a_symbolic_decoder(tmp_path):
    m = _model()
    with torch.no_grad():
        m.decoder.known.params.a.set_(0.9)
        m.decoder.likelihood_of("score").log_sigma.fill_(-0.3)
    data, plan = _data()
    times = torch.linspace(0.5, 4.0, 5, dtype=F64)
    before = m.predict(data, plan, times, until=2.0, settings=SETTINGS)
    path = tmp_path / "lhm.pt"
    save_latent_hybrid(path, m)
    loaded = load_latent_hybrid(path, expert=_expert())
    assert isinstance(loaded.decoder, Decoder)
    assert loaded.decoder.roles() == m.decoder.roles()
    assert loaded.decoder.to_config() == m.decoder.to_config()
    assert loaded.config["decoder"]["params"]["a"]["value"] == pytest.approx(0.9, rel=1e-12)  # the fitted value
    after = loaded.predict(data, plan, times, until=2.0, settings=SETTINGS)
    # Same weights, same arithmetic: equal up to round-off.
    torch.testing.assert_close(after["mean"], before["mean"], rtol=1e-12, atol=1e-12)
    l0 = m.loss(data, plan, until=2.0, settings=SETTINGS, generator=torch.Generator().manual_seed(1))[0]
    l1 = loaded.loss(data, plan, until=2.0, settings=SETTINGS, generator=torch.Generator().manual_seed(1))[0]
    torch.testing.assert_close(l1, l0, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="has the default Gaussian decoder"):
        plain = LatentHybrid(data_dim=2, input_dim=1, expert=_expert(), hidden=8, encoder_hidden=8)
        save_latent_hybrid(tmp_path / "plain.pt", plain)
        load_latent_hybrid(tmp_path / "plain.pt", expert=_expert(), decoder=DecoderSpec(channels=["a", "b"]))


def test_save_load_of_a_callable_decoder_needs_the_spec_again(tmp_path):
    spec = {"known": {"score": "R", "marker": _marker}}
    m = _model(**spec)
    data, plan = _data()
    times = torch.linspace(0.5, 4.0, 5, dtype=F64)
    before = m.predict(data, plan, times, until=2.0, settings=SETTINGS)
    path = tmp_path / "lhm.pt"
    save_latent_hybrid(path, m)
    with pytest.raises(ValueError, match=r"channels \['marker'\] were Python callables .*decoder=DecoderSpec"):
        load_latent_hybrid(path, expert=_expert())
    again = DecoderSpec(
        channels=["score", "marker"],
        known={"score": "R", "marker": _marker},
        residual=["score"],
        params={"a": Param(0.7)},
        likelihood={"score": "student_t", "marker": "lognormal"},
    )
    loaded = load_latent_hybrid(path, expert=_expert(), decoder=again)
    after = loaded.predict(data, plan, times, until=2.0, settings=SETTINGS)
    torch.testing.assert_close(after["mean"], before["mean"], rtol=1e-12, atol=1e-12)  # same weights: round-off
    other = DecoderSpec(channels=["score", "marker"], known={"score": "R", "marker": _marker}, params={"a": 1.0})
    with pytest.raises(ValueError, match="differs from the saved one"):
        load_latent_hybrid(path, expert=_expert(), decoder=other)


def test_model_refuses_a_decoder_that_does_not_fit():
    kw = {"data_dim": 2, "input_dim": 1, "expert": _expert(), "latent_dim": 2, "hidden": 8, "encoder_hidden": 8}
    with pytest.raises(ValueError, match=r"the decoder has 3 channels \['a', 'b', 'c'\], but the model's data_dim = 2"):
        LatentHybrid(**kw, decoder=DecoderSpec(channels=["a", "b", "c"]))
    built = Decoder(["a", "b"], expert_states=["A1", "A2", "R"], latent_dim=1)
    with pytest.raises(ValueError, match="pass a DecoderSpec, which the model completes"):
        LatentHybrid(**kw, decoder=built)
    with pytest.raises(TypeError, match="decoder must be a physnode.latent.DecoderSpec"):
        LatentHybrid(**kw, decoder="gaussian")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the model has none"):
        LatentHybrid(data_dim=2, latent_dim=2, decoder=DecoderSpec(channels=["a", "b"], known={"a": "1"}))


def _volume_model() -> LatentHybrid:
    """Concentrations: marker = A1 / V1 with V1 per patient, score = A2 / V2 with the population V2."""
    expert = Expert(expert_physics(), inputs=["u"], per_trajectory=["V1", "EC50"])
    decoder = DecoderSpec(channels=["score", "marker"], known={"score": "A2/V2", "marker": "A1/V1"})
    m = LatentHybrid(
        data_dim=2,
        input_dim=1,
        expert=expert,
        latent_dim=2,
        hidden=8,
        encoder_hidden=8,
        expert_scale=[50.0, 50.0, 1.0],
        decoder=decoder,
    ).double()
    data, plan = _data()
    m.set_scales(data, plan)
    return m


def test_known_maps_read_the_experts_parameters_per_trajectory():
    m = _volume_model()
    data, plan = _data()
    times = torch.linspace(0.5, 4.0, 6, dtype=F64)
    out = m.predict(data, plan, times, until=2.0, settings=SETTINGS)
    V1 = out["theta"][:, m.expert.theta_names.index("V1")]
    assert float(V1.max() - V1.min()) > 0  # the patients' volumes differ (encoder offsets), so this is a real check
    A1, A2 = out["states"][..., 0], out["states"][..., 1]
    V2 = m.expert.param("V2")()
    # the same quotients computed twice: equal up to round-off
    torch.testing.assert_close(out["mean"][..., 1], A1 / V1[:, None], rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out["mean"][..., 0], A2 / V2, rtol=1e-12, atol=1e-12)


def test_gradient_of_a_population_volume_through_the_known_map_matches_finite_differences():
    m = _volume_model()
    m.inference = "point"
    data, plan = _data()
    # V1's population value (learnable; each patient's V1 is it plus an encoder offset) enters both the expert
    # equations and the known map of "marker"
    raw = m.expert.param("V1").raw

    def loss() -> torch.Tensor:
        return m.loss(data, plan, until=2.0, settings=SETTINGS)[0]

    loss().backward()
    grad, fd = float(raw.grad), _central_difference(loss, raw)
    # central differences in float64, h = 1e-6: truncation O(h²) and round-off O(eps/h) far below 1e-6 relative
    assert abs(grad - fd) <= 1e-6 * max(1.0, abs(fd)), (grad, fd)


def test_save_load_of_a_map_reading_expert_parameters(tmp_path):
    m = _volume_model()
    data, plan = _data()
    times = torch.linspace(0.5, 4.0, 5, dtype=F64)
    before = m.predict(data, plan, times, until=2.0, settings=SETTINGS)
    save_latent_hybrid(tmp_path / "lhm.pt", m)
    expert = Expert(expert_physics(), inputs=["u"], per_trajectory=["V1", "EC50"])
    after = load_latent_hybrid(tmp_path / "lhm.pt", expert=expert).predict(
        data, plan, times, until=2.0, settings=SETTINGS
    )
    torch.testing.assert_close(after["mean"], before["mean"], rtol=1e-12, atol=1e-12)  # same weights: round-off


def test_known_map_expert_parameters_fail_clearly():
    from physnode.latent.observation import KnownMap

    g = KnownMap({"C": "A1/V1"}, ["A1", "A2"], expert_params=["V1"])
    z = torch.ones(3, 4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"reads the expert parameters \['V1'\]: pass their values as expert="):
        g(z)
    with pytest.raises(ValueError, match="one row per trajectory"):
        g(z, torch.ones(5, 1, dtype=F64))
    torch.testing.assert_close(g(z, torch.full((3, 1), 2.0, dtype=F64)), torch.full((3, 4, 1), 0.5, dtype=F64))
    with pytest.raises(ValueError, match="named both as parameters of the known map"):
        KnownMap({"C": "A1/V1"}, ["A1", "A2"], {"V1": 2.0}, expert_params=["V1"])
    with pytest.raises(ValueError, match="V1"):  # without expert_params, V1 is an undeclared name
        KnownMap({"C": "A1/V1"}, ["A1", "A2"])
