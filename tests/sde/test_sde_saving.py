"""Save/load of trained neural-SDE models (state dict + config, weights_only) and samples as netCDF."""

from __future__ import annotations

import pickle

import pytest
import torch
from sde_train_systems import irregular as make_irregular
from sde_train_systems import ou_paths
from torch import nn

from physnode.data import Trajectories
from physnode.sde import (
    CDEDiscriminator,
    LatentSDE,
    SDEGenerator,
    fit_sde_gan,
    load_model,
    sample_trajectories,
    save_model,
)

F64 = torch.float64


class Damping(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(0.5))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.k * y


def test_trained_generator_round_trips_with_its_config(tmp_path) -> None:
    grid, paths = ou_paths(12, 9, 0.125, seed=0, dtype=torch.float32)
    data = make_irregular(grid, paths, 0.7, seed=1)
    torch.manual_seed(0)
    gen = SDEGenerator(1, hidden_dim=1, noise_dim=2, width=8, drift_scale=2.0, physics=Damping())
    fit_sde_gan(
        gen, CDEDiscriminator(1, hidden_dim=3, width=4), data, dt=0.125, iterations=3, batch_size=6, progress=False
    )
    assert float(gen.drift.physics.k.detach()) != 0.5  # trained
    path = tmp_path / "gen.pt"
    save_model(path, gen)
    with pytest.raises(ValueError, match="pass physics="):
        load_model(path)
    back = load_model(path, physics=Damping())
    assert isinstance(back, SDEGenerator) and back.config == gen.config
    assert float(back.drift.physics.k.detach()) == float(gen.drift.physics.k.detach())
    a = gen.sample(grid, 5, dt=0.125, seed=3)
    b = back.sample(grid, 5, dt=0.125, seed=3)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


def test_latent_sde_and_discriminator_round_trip_in_float64(tmp_path) -> None:
    for model in (LatentSDE(2, latent_dim=3, context_dim=4, width=5).double(), CDEDiscriminator(2).double()):
        save_model(tmp_path / "m.pt", model)
        back = load_model(tmp_path / "m.pt")
        assert type(back) is type(model) and back.config == model.config
        for (n1, p1), (n2, p2) in zip(model.state_dict().items(), back.state_dict().items(), strict=True):
            assert n1 == n2 and p2.dtype == F64 and torch.allclose(p1, p2, rtol=0, atol=0)


def test_model_files_never_unpickle_objects(tmp_path) -> None:
    bad = tmp_path / "bad.pt"
    torch.save({"format": "physnode.sde.model/1", "class": "LatentSDE", "x": Damping()}, bad)
    with pytest.raises(ValueError, match="cannot be read"):
        load_model(bad)
    (tmp_path / "junk.pt").write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a model written by"):
        load_model(tmp_path / "junk.pt")
    with pytest.raises(TypeError, match="save_model saves"):
        save_model(tmp_path / "x.pt", nn.Linear(1, 1))  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["generator", "latent"])
def test_samples_save_as_netcdf_trajectories(tmp_path, kind: str) -> None:
    model = SDEGenerator(2, width=4) if kind == "generator" else LatentSDE(2, latent_dim=2, context_dim=3, width=4)
    t = torch.linspace(0, 1, 5)
    traj = sample_trajectories(model, t, 6, dt=0.125, seed=2, channels=["x", "v"], units=["m", "m/s"], time_units="s")
    assert traj.values.shape == (6, 5, 2) and bool(traj.mask.all())
    traj.save(tmp_path / "samples.nc")
    back = Trajectories.load(tmp_path / "samples.nc")
    assert back.channels == ["x", "v"] and back.attrs["generated_by"] == type(model).__name__
    assert back.attrs["config"] == model.config
    assert torch.allclose(back.values, traj.values) and torch.allclose(back.times, traj.times)
