"""fit(): masked loss, observe variants, initial states, optimisers and argument errors on small problems."""

from __future__ import annotations

import math

import pytest
import torch
from fit_systems import Decay, decay_data

from physnode.data import Trajectories
from physnode.fit import fit
from physnode.fit.loss import masked_errors, mse


def test_masked_loss_ignores_masked_entries() -> None:
    pred = torch.tensor([[[1.0], [2.0], [3.0]]], dtype=torch.float64)
    values = torch.tensor([[[1.5], [float("nan")], [1e30]]], dtype=torch.float64)
    mask = torch.tensor([[[True], [False], [False]]])
    e = masked_errors(pred, values, mask)
    assert torch.equal(e, torch.tensor([[[-0.5], [0.0], [0.0]]], dtype=torch.float64))
    assert float(mse(e, None, 1)) == pytest.approx(0.25)


def test_masked_fit_equals_fit_on_observed_subset() -> None:
    # Garbage under the mask must not change the fit: compare with the data without those points.
    full = decay_data(noise=0.01)
    mask = full.mask.clone()
    mask[:, 5:9] = False
    values = full.values.clone()
    values[:, 5:9] = float("nan")
    masked = Trajectories(full.times, values, mask, metadata=full.metadata)
    keep = [i for i in range(full.n_times) if not 5 <= i < 9]
    sub = Trajectories(full.times[:, keep], full.values[:, keep], metadata=full.metadata)
    r1 = fit(Decay(), masked, optimizer="gauss-newton", epochs=20, progress=False)
    r2 = fit(Decay(), sub, optimizer="gauss-newton", epochs=20, progress=False)
    assert r1.params["k"] == pytest.approx(r2.params["k"], rel=1e-7)
    assert r1.params["k"] == pytest.approx(1.3, rel=2e-2)


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs", "gauss-newton"])
def test_optimizers_recover_decay_rate(optimizer: str) -> None:
    data = decay_data()
    epochs = {"adam": 60, "lbfgs": 5, "gauss-newton": 15}[optimizer]
    res = fit(
        Decay(),
        data,
        optimizer=optimizer,
        epochs=epochs,
        lr=0.05 if optimizer == "adam" else None,
        progress=False,
        grad="direct" if optimizer == "lbfgs" else "aca",
        rtol=1e-6,
    )
    tol = {"adam": 5e-2, "lbfgs": 1e-4, "gauss-newton": 1e-5}[optimizer]
    assert res.params["k"] == pytest.approx(1.3, rel=tol)
    assert res.optimizer == optimizer
    assert res.grad == ("direct" if optimizer != "adam" else "aca")
    assert res.history[0]["loss"] > res.loss
    assert all(h["nfe"] > 0 for h in res.history)
    assert res.to_json()["params"]["k"] == res.params["k"]


def test_callable_optimizer_and_grad_recorded() -> None:
    res = fit(
        Decay(), decay_data(), optimizer=lambda p: torch.optim.SGD(p, lr=0.5), epochs=3, grad="adjoint", progress=False
    )
    assert res.grad == "adjoint" and res.method == "dopri5" and res.optimizer == "callable"
    assert len(res.history) == 3


def test_observe_variants_agree() -> None:
    # State (y, 2y) observed as channel 0 by index, by callable and by model state name: identical fits.
    class Two(torch.nn.Module):
        state_names = ("a", "b")

        def __init__(self) -> None:
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

        def forward(self, t, y):
            return -self.k * y

    base = decay_data()
    y0 = [[m["initial_state"][0], 2 * m["initial_state"][0]] for m in base.metadata]
    data = Trajectories(base.times, base.values, metadata=[{"initial_state": v} for v in y0], channels=["a"])
    ks = []
    for observe in ([0], ["a"], lambda y: y[..., :1], None):
        ks.append(fit(Two(), data, observe=observe, optimizer="gauss-newton", epochs=10, progress=False).params["k"])
    assert ks[0] == pytest.approx(1.3, rel=1e-6)
    assert max(ks) - min(ks) < 1e-12


def test_learn_initial_state_corrects_a_wrong_guess() -> None:
    data = decay_data(noise=0.0)
    wrong = [{"initial_state": [1.1 * m["initial_state"][0]]} for m in data.metadata]
    guessed = Trajectories(data.times, data.values, metadata=wrong)
    res = fit(Decay(), guessed, learn_initial_state=True, optimizer="gauss-newton", epochs=30, progress=False)
    assert res.params["k"] == pytest.approx(1.3, rel=1e-5)
    assert torch.allclose(res.initial_states, data.metadata_tensor("initial_state"), rtol=1e-5)
    fixed = fit(Decay(), guessed, optimizer="gauss-newton", epochs=30, progress=False)
    assert abs(fixed.params["k"] - 1.3) > 1e-2  # with the wrong initial state held fixed the rate is biased


def test_learn_initial_state_from_first_observation() -> None:
    data = decay_data(noise=0.0)
    bare = Trajectories(data.times, data.values)  # no metadata: starts from the first observation
    res = fit(Decay(), bare, learn_initial_state=True, optimizer="gauss-newton", epochs=30, progress=False)
    assert res.params["k"] == pytest.approx(1.3, rel=1e-5)
    assert torch.allclose(res.initial_states, data.metadata_tensor("initial_state"), rtol=1e-5)


def test_time_weight_options() -> None:
    data = decay_data(noise=0.05)
    w_lin = fit(Decay(), data, time_weight="linear", optimizer="gauss-newton", epochs=15, progress=False)
    w_fun = fit(Decay(), data, time_weight=lambda t: 1.0 + t / 2.0, optimizer="gauss-newton", epochs=15, progress=False)
    plain = fit(Decay(), data, optimizer="gauss-newton", epochs=15, progress=False)
    # Data span [0, 2]: "linear" is w = 1 + t/2, so both agree, and differ from the unweighted fit.
    assert w_lin.params["k"] == pytest.approx(w_fun.params["k"], rel=1e-9)
    assert abs(w_lin.params["k"] - plain.params["k"]) > 1e-6


def test_steer_truncates_the_window_per_epoch() -> None:
    from physnode.fit.steer import sample_end_time

    data = decay_data()
    # A seed whose first end time cuts the data (t_end < 1.8 of the span [0, 2]).
    seed = next(s for s in range(100) if sample_end_time(0.5, 2.0, torch.Generator().manual_seed(s)) < 1.8)
    t_end = sample_end_time(0.5, 2.0, torch.Generator().manual_seed(seed))
    res = fit(Decay(), data, steer=0.5, optimizer="gauss-newton", epochs=3, progress=False, seed=seed)
    plain = fit(Decay(), data, optimizer="gauss-newton", epochs=3, progress=False)
    # Noise-free data: every truncated window has the same optimum, but the epoch losses differ.
    assert res.params["k"] == pytest.approx(1.3, rel=1e-2)
    assert res.history[0]["loss"] != pytest.approx(plain.history[0]["loss"], rel=1e-6)
    # The loss of epoch 1 is the loss on the observations up to the first sampled end time.
    keep = data.times[0] <= t_end
    cut = Trajectories(data.times[:, keep], data.values[:, keep], metadata=data.metadata)
    ref = fit(Decay(), cut, optimizer="gauss-newton", epochs=1, progress=False)
    assert res.history[0]["loss"] == pytest.approx(ref.history[0]["loss"], rel=1e-10)


def test_gaussian_nll_learns_noise_level() -> None:
    data = decay_data(n=4, T=60, noise=0.05, seed=1)
    res = fit(Decay(), data, loss="gaussian_nll", optimizer="lbfgs", epochs=8, grad="direct", progress=False)
    assert res.params["k"] == pytest.approx(1.3, rel=3e-2)
    assert res.noise["y0"] == pytest.approx(0.05, rel=0.2)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"data": "not data"}, TypeError, "Trajectories"),
        ({"observe": [0, 0]}, ValueError, "1 channels"),
        ({"observe": lambda y: torch.cat([y, y], -1)}, ValueError, "observe"),
        ({"loss": "mae"}, ValueError, "unknown loss"),
        ({"optimizer": "sgd"}, ValueError, "unknown optimizer"),
        ({"epochs": 0}, ValueError, "epochs"),
        ({"steer": 5.0}, ValueError, "steer"),
        ({"time_weight": "quadratic"}, ValueError, "time_weight"),
        ({"multiple_shooting": 0}, ValueError, "segments"),
        ({"loss": "gaussian_nll", "optimizer": "gauss-newton"}, ValueError, "loss='mse'"),
        ({"resume": True}, ValueError, "checkpoint"),
    ],
    ids=[
        "data",
        "observe-count",
        "observe-callable",
        "loss",
        "optimizer",
        "epochs",
        "steer",
        "time-weight",
        "shooting",
        "gn-nll",
        "resume",
    ],
)
def test_bad_input(kwargs: dict, exc: type, match: str) -> None:
    args = {"data": decay_data(), "epochs": 1, "progress": False}
    args.update(kwargs)
    data = args.pop("data")
    with pytest.raises(exc, match=match):
        fit(Decay(), data, **args)


def test_missing_initial_state_error() -> None:
    d = decay_data()
    with pytest.raises(ValueError, match="initial_state"):
        fit(Decay(), Trajectories(d.times, d.values), epochs=1, progress=False)


def test_device(device: torch.device) -> None:
    res = fit(Decay(), decay_data(), optimizer="gauss-newton", epochs=10, device=device, progress=False)
    assert res.params["k"] == pytest.approx(1.3, rel=1e-6)
    assert res.model.k.device.type == device.type
    assert math.isfinite(res.uncertainty["k"])
