"""Decoders of latent hybrid models: known / known + residual / neural channels, likelihoods against scipy.stats,
masks, gradients of the known maps' parameters, configs, and the errors."""

from __future__ import annotations

import math

import pytest
import torch
from scipy import stats

from physnode.latent.decoder import Decoder, DecoderSpec, ObservationScales
from physnode.latent.observation import LIKELIHOODS, Gaussian, KnownMap, LogNormal, StudentT, likelihood_from_spec
from physnode.physics import Param

F64 = torch.float64
STATES = ["A1", "A2", "R"]
CHANNELS = ["score", "marker", "conc"]


def _scales(loc=(0.3, -0.2, 1.5), scale=(1.7, 0.6, 2.0)) -> ObservationScales:
    return ObservationScales(
        torch.tensor([50.0, 50.0, 1.0], dtype=F64), torch.tensor(loc, dtype=F64), torch.tensor(scale, dtype=F64)
    )


def _states(B: int = 3, T: int = 4, Dm: int = 2, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z_e = torch.rand(B, T, 3, generator=g, dtype=F64) * torch.tensor([40.0, 30.0, 1.0], dtype=F64) + 0.1
    return torch.cat([z_e, torch.randn(B, T, Dm, generator=g, dtype=F64)], dim=-1)


def _mixed(**kw) -> Decoder:
    """score: known + residual (Gaussian), marker: known (Student-t), conc: neural (log-normal)."""
    spec = DecoderSpec(
        channels=CHANNELS,
        known={"score": "R", "marker": "a*R + b"},
        residual=["score"],
        params={"a": Param(0.5), "b": 0.1},
        likelihood={"marker": {"kind": "student_t", "df": 3.0}, "conc": "lognormal"},
        hidden=8,
        **kw,
    )
    return spec.build(STATES, latent_dim=2).double()


def test_known_channels_equal_the_hand_computed_map_and_the_residual_starts_at_zero():
    dec = _mixed()
    assert dec.roles() == {"score": "known+residual", "marker": "known", "conc": "neural"}
    z = _states()
    g = dec.observe(z, _scales())
    assert g.shape == (3, 4, 3)
    R = z[..., 2]
    # The residual's output layer starts at zero, so score is exactly the known map R; the compiled map evaluates
    # the same products as the hand-written one (equal up to round-off, 1e-14).
    torch.testing.assert_close(g[..., 0], R, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(g[..., 1], 0.5 * R + 0.1, rtol=1e-14, atol=1e-14)
    # The neural log-normal channel is loc * exp(net): positive, near loc at initialisation (small last layer).
    assert bool((g[..., 2] > 0).all())
    # A learnable parameter moves the known channel; the latent states do not enter a known channel without residual.
    with torch.no_grad():
        dec.known.params.a.set_(2.0)
    z2 = z.clone()
    z2[..., 3:] += 1.0
    g2 = dec.observe(z2, _scales())
    torch.testing.assert_close(g2[..., 1], 2.0 * R + 0.1, rtol=1e-14, atol=1e-14)
    assert not torch.allclose(g2[..., 2], g[..., 2])  # the neural channel reads z_m


def test_known_map_as_a_torch_callable_matches_the_expression():
    def conc(z, p):
        return z["A1"] / p["V1"]

    by_text = KnownMap({"conc": "A1/V1"}, STATES, {"V1": Param(10.0, positive=True)}).double()
    by_fn = KnownMap({"conc": conc}, STATES, {"V1": Param(10.0, positive=True)}).double()
    z_e = _states()[..., :3]
    # Same division, once compiled, once by hand: equal up to round-off.
    torch.testing.assert_close(by_fn(z_e), by_text(z_e), rtol=1e-14, atol=0.0)
    torch.testing.assert_close(by_text(z_e)[..., 0], z_e[..., 0] / 10.0, rtol=1e-14, atol=0.0)
    with pytest.raises(ValueError, match="code, not data"):
        by_fn.to_config()


def test_residual_learns_and_is_multiplicative_for_a_positive_likelihood():
    dec = Decoder(
        ["conc"],
        expert_states=STATES,
        latent_dim=1,
        known={"conc": "A1/V1"},
        residual=["conc"],
        params={"V1": 10.0},
        likelihood="lognormal",
        hidden=4,
    ).double()
    z = _states(Dm=1)
    sc = _scales(loc=(1.0,), scale=(1.0,))
    g0 = dec.observe(z, sc)
    torch.testing.assert_close(g0[..., 0], z[..., 0] / 10.0, rtol=1e-14, atol=0.0)  # exp(0) = 1: the known map
    x = g0.detach() * 1.5
    loss = dec.neg_log_likelihood(z, x, torch.ones_like(x, dtype=torch.bool), sc).sum()
    loss.backward()
    last = dec.net[-1]
    assert float(last.weight.grad.abs().sum()) > 0  # the residual receives gradient, so it can move off zero
    with torch.no_grad():
        last.bias.fill_(math.log(2.0))
    torch.testing.assert_close(dec.observe(z, sc)[..., 0], 2.0 * z[..., 0] / 10.0, rtol=1e-13, atol=0.0)


@pytest.mark.parametrize("kind", sorted(LIKELIHOODS), ids=sorted(LIKELIHOODS))
def test_likelihood_log_prob_equals_scipy(kind):
    n = 2
    lik = likelihood_from_spec({"kind": kind, "df": 3.5} if kind == "student_t" else kind, n).double()
    with torch.no_grad():
        for p in lik.parameters():
            if p.ndim and p.shape[0] == n and p is not getattr(lik, "df_raw", None):
                p.copy_(torch.tensor([0.2, -0.4], dtype=F64))
    g = torch.rand(4, 5, n, dtype=F64) + 0.5
    x = g * torch.exp(0.3 * torch.randn(4, 5, n, dtype=F64)) if kind == "lognormal" else g + torch.randn(4, 5, n)
    loc = torch.tensor([0.7, -1.0], dtype=F64)
    scale = torch.tensor([2.5, 0.4], dtype=F64)
    got = -lik.per_entry(g, x, loc, scale).detach().numpy()
    gn, xn, sn = g.numpy(), x.numpy(), scale.numpy()
    if kind == "gaussian":
        ref = stats.norm.logpdf(xn, loc=gn, scale=sn * lik.sigma().detach().numpy())
    elif kind == "student_t":
        assert isinstance(lik, StudentT)
        df = lik.df().detach().numpy()
        ref = stats.t.logpdf(xn, df, loc=gn, scale=sn * lik.log_sigma.detach().exp().numpy())
    else:
        assert isinstance(lik, LogNormal)
        ref = stats.lognorm.logpdf(xn, lik.log_s.detach().exp().numpy(), scale=gn)
    # The density of the standardised value x̃ = (x - loc) / scale is scale times that of x. Same formula written
    # two ways in float64: equal to 1e-12 relative.
    ref = ref + torch.log(scale).numpy()
    torch.testing.assert_close(torch.from_numpy(got), torch.from_numpy(ref), rtol=1e-12, atol=1e-12)


def test_student_t_df_fixed_or_learned():
    fixed = StudentT(2, df=4.0).double()
    # The raw value is stored in the default dtype (float32) at construction: 4.0 to float32 round-off.
    torch.testing.assert_close(fixed.df(), torch.full((2,), 4.0, dtype=F64), rtol=1e-6, atol=0.0)
    assert not fixed.df_raw.requires_grad
    learned = StudentT(2, df=4.0, learn_df=True).double()
    g = torch.zeros(1, 3, 2, dtype=F64)
    x = torch.tensor([[[0.1, 5.0], [-0.2, 0.3], [8.0, 0.0]]], dtype=F64)
    learned.nll(g, x, torch.ones_like(x, dtype=torch.bool), torch.zeros(2), torch.ones(2)).sum().backward()
    assert learned.df_raw.grad is not None and bool((learned.df_raw.grad != 0).all())


def test_masked_entries_contribute_nothing():
    dec = _mixed()
    z = _states()
    sc = _scales()
    g = dec.observe(z, sc).detach()
    x = g + 0.1 * torch.randn_like(g)
    x[..., 2] = g[..., 2] * 1.2  # positive for the log-normal channel
    mask = torch.rand(x.shape) > 0.4
    mask[0, 0] = True
    nll = dec.neg_log_likelihood(z, x, mask, sc)
    assert nll.shape == (3,)
    # Anything at unobserved entries (NaN, negative values in the log-normal channel) changes nothing, gradients
    # included.
    x2 = torch.where(mask, x, torch.tensor(math.nan, dtype=F64))
    x2[..., 2] = torch.where(mask[..., 2], x2[..., 2], -3.0)
    nll2 = dec.neg_log_likelihood(z, x2, mask, sc)
    torch.testing.assert_close(nll2, nll, rtol=0.0, atol=0.0)  # the same numbers are summed in the same order
    nll2.sum().backward()
    for name, p in dec.named_parameters():
        assert p.grad is None or bool(torch.isfinite(p.grad).all()), name
    # The sum runs over observed entries only: equal to the per-entry sum taken by hand.
    hand = torch.zeros(3, dtype=F64)
    for c, name in enumerate(CHANNELS):
        lik = dec.likelihood_of(name)
        assert lik.n == 1  # one channel per likelihood kind here
        per = lik.per_entry(g[..., c : c + 1], x[..., c : c + 1], sc.loc[c : c + 1], sc.scale[c : c + 1])[..., 0]
        hand += torch.where(mask[..., c], per.detach(), 0.0).sum(1)
    torch.testing.assert_close(nll.detach(), hand, rtol=1e-12, atol=1e-12)  # same terms, another summation order
    # Nothing observed: zero.
    torch.testing.assert_close(
        dec.neg_log_likelihood(z, x2, torch.zeros_like(mask), sc), torch.zeros(3, dtype=F64), rtol=0, atol=0
    )


def test_gradient_of_the_known_parameters_matches_finite_differences():
    dec = _mixed()
    z = _states()
    sc = _scales()
    x = dec.observe(z, sc).detach() * 1.1 + 0.05
    mask = torch.rand(x.shape) > 0.3
    raw = dec.known.params.a.raw
    dec.neg_log_likelihood(z, x, mask, sc).sum().backward()
    grad = float(raw.grad)
    h = 1e-6
    with torch.no_grad():
        base = raw.clone()
        raw.copy_(base + h)
        up = float(dec.neg_log_likelihood(z, x, mask, sc).sum())
        raw.copy_(base - h)
        down = float(dec.neg_log_likelihood(z, x, mask, sc).sum())
        raw.copy_(base)
    fd = (up - down) / (2 * h)
    assert grad != 0
    # Central differences in float64 with h = 1e-6: truncation O(h²) and round-off O(eps/h) well below 1e-6 relative.
    assert abs(grad - fd) <= 1e-6 * max(1.0, abs(fd))


def test_config_round_trip_rebuilds_the_same_decoder():
    dec = _mixed()
    with torch.no_grad():
        dec.known.params.a.set_(0.8)
    cfg = dec.to_config()
    assert cfg["known"] == {"score": "R", "marker": "R*a + b"}
    back = DecoderSpec.from_config(cfg).build(STATES, latent_dim=2).double()
    back.load_state_dict(dec.state_dict())
    z = _states()
    # Same weights, same compiled expressions: equal up to round-off.
    torch.testing.assert_close(back.observe(z, _scales()), dec.observe(z, _scales()), rtol=1e-14, atol=1e-14)
    assert back.roles() == dec.roles()
    assert back.to_config() == cfg


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"known": {"scor": "R"}}, ValueError, r"known names \['scor'\], which are not observed channels"),
        ({"known": {"score": "R"}, "residual": ["marker"]}, ValueError, r"residual names \['marker'\], which have no"),
        ({"known": {"score": "R*V1"}}, ValueError, "undeclared name 'V1'"),
        ({"known": {"score": "R*t"}}, ValueError, "uses the time 't'"),
        ({"known": {"score": "__import__('os')"}}, ValueError, "score"),
        ({"known": {"score": 3}}, TypeError, "must be a SymPy expression, text"),
        ({"likelihood": "poisson"}, ValueError, r"unknown likelihood 'poisson'; known: \['gaussian'"),
        ({"likelihood": {"conc": "lognormal", "cnc": "gaussian"}}, ValueError, r"likelihood names \['cnc'\]"),
        ({"likelihood": {"kind": "student_t", "df": 0.5}}, ValueError, "must be a number > 1"),
        ({"likelihood": {"kind": "gaussian", "df": 3}}, ValueError, "options \\['df'\\] it does not take"),
        ({"params": {"a": 1.0}}, ValueError, "without any known map"),
        ({"hidden": -1}, ValueError, "hidden must be an integer >= 0, got -1"),
    ],
    ids=[
        "channel",
        "residual",
        "undeclared",
        "time",
        "code",
        "type",
        "likelihood",
        "lik-channel",
        "df",
        "option",
        "params",
        "hidden",
    ],
)
def test_bad_specs_fail_clearly(kwargs, error, match):
    with pytest.raises(error, match=match):
        DecoderSpec(channels=CHANNELS, **kwargs).build(STATES, latent_dim=2)


def test_bad_inputs_fail_clearly():
    with pytest.raises(ValueError, match="must be distinct"):
        Decoder(["a", "a"], expert_states=STATES, latent_dim=1)
    with pytest.raises(ValueError, match="non-empty list"):
        Decoder("score", expert_states=STATES, latent_dim=1)
    with pytest.raises(ValueError, match="the model has none"):
        Decoder(["score"], expert_states=[], latent_dim=1, known={"score": "1"})
    dec = _mixed()
    with pytest.raises(ValueError, match=r"3 expert \+ 2 latent components, got shape \(3, 4, 4\)"):
        dec.observe(_states()[..., :4], _scales())
    bad = KnownMap({"score": lambda z, p: z["R"][..., :1]}, STATES).double()
    with pytest.raises(ValueError, match="it must return a tensor of the batch shape"):
        bad(_states()[..., :3])
    lik = Gaussian(1)
    assert "channels=1" in repr(lik)
    ln = LogNormal(1).double()
    x = torch.tensor([[[1.0], [-0.5]]], dtype=F64)
    with pytest.raises(ValueError, match=r"needs positive observations; x\[0, 1, 0\] = -0.5"):
        ln.nll(torch.ones_like(x), x, torch.ones_like(x, dtype=torch.bool), torch.zeros(1), torch.ones(1))


def test_decoder_runs_on_every_device(device):
    """The same decoder on each available device (CPU always, CUDA when present) gives the CPU's numbers."""
    dec = _mixed()
    z = _states()
    sc = _scales()
    x = dec.observe(z, sc).detach() * 1.1
    mask = torch.rand(x.shape) > 0.3
    ref = dec.neg_log_likelihood(z, x, mask, sc).detach()
    moved = dec.to(device)
    sc_dev = ObservationScales(*(s.to(device) for s in sc))
    got = moved.neg_log_likelihood(z.to(device), x.to(device), mask.to(device), sc_dev).detach().cpu()
    # Same float64 arithmetic, other kernels on a GPU: equal to 1e-10 relative.
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)


def test_student_t_is_robust_to_outliers_where_the_gaussian_is_not():
    """Fit a known map x = a R to data with 10 % gross outliers: the Student-t estimate of a stays near the truth,
    the Gaussian one is dragged towards the outliers."""
    g = torch.Generator().manual_seed(3)
    R = 0.5 + torch.rand(1, 200, generator=g, dtype=F64)
    x = 0.5 * R + 0.02 * torch.randn(1, 200, generator=g, dtype=F64)
    x[:, ::10] += 3.0  # every tenth sample an assay failure
    z = torch.cat([torch.zeros(1, 200, 2, dtype=F64), R.unsqueeze(-1)], dim=-1)
    sc = ObservationScales(torch.ones(3, dtype=F64), torch.zeros(1, dtype=F64), torch.ones(1, dtype=F64))
    mask = torch.ones(1, 200, 1, dtype=torch.bool)
    estimates = {}
    for kind in ("gaussian", "student_t"):
        dec = Decoder(
            ["x"], expert_states=STATES, latent_dim=0, known={"x": "a*R"}, params={"a": Param(1.0)}, likelihood=kind
        ).double()
        opt = torch.optim.Adam(dec.parameters(), lr=0.1)
        for _ in range(120):
            opt.zero_grad()
            dec.neg_log_likelihood(z, x.unsqueeze(-1), mask, sc).sum().backward()
            opt.step()
        estimates[kind] = float(dec.known.params.a().detach())
    # Measured: Student-t 0.499, Gaussian 0.79 (dragged by the outliers). Bars: well inside both.
    assert abs(estimates["student_t"] - 0.5) < 0.02
    assert abs(estimates["gaussian"] - 0.5) > 0.1


def test_gaussian_decoder_nll_ignores_nan_at_unobserved_entries():
    """NaN at masked entries changes neither the value nor the gradient (a ``where`` after the arithmetic would
    still let ``0 · NaN`` into the gradient)."""
    from physnode.latent.decoder import GaussianDecoder

    gen = torch.Generator().manual_seed(0)
    dec = GaussianDecoder(3, 2, hidden=0).double()
    z = torch.randn(2, 4, 3, generator=gen, dtype=torch.float64)
    values = torch.randn(2, 4, 2, generator=gen, dtype=torch.float64)
    mask = torch.rand(2, 4, 2, generator=gen) > 0.4
    out = []
    for fill in (0.0, float("nan")):
        nll = dec.nll(dec(z), torch.where(mask, values, torch.full_like(values, fill)), mask)
        out.append((nll, torch.autograd.grad(nll.sum(), list(dec.parameters()))))
    (clean, g_clean), (dirty, g_dirty) = out
    # the same arithmetic on the observed entries: equal to round-off
    torch.testing.assert_close(dirty, clean, rtol=1e-12, atol=1e-12)
    for a, b in zip(g_dirty, g_clean, strict=True):
        assert bool(torch.isfinite(a).all())
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
