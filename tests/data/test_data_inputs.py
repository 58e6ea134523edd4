"""External inputs carried by :class:`Trajectories`: construction, selection, batching, ``to``, splitting, digests
and the netCDF / HDF5 round trip (files without inputs still load)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from physnode.data import (
    Boluses,
    Inputs,
    Trajectories,
    TrajectoryDataset,
    TrajectoryFileError,
    collate_trajectories,
    load,
    save,
)

NAN = float("nan")


def _data(with_boluses: bool = True) -> Trajectories:
    g = torch.Generator().manual_seed(0)
    times = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.5, NAN], [0.1, 0.2, 0.3]], dtype=torch.float64)
    values = torch.randn(3, 3, 2, generator=g, dtype=torch.float64)
    boluses = None
    if with_boluses:
        boluses = Boluses(
            torch.tensor([[0.5, NAN], [0.1, 0.2], [NAN, NAN]], dtype=torch.float64),
            torch.tensor([[1.0, NAN], [2.0, 3.0], [NAN, NAN]], dtype=torch.float64),
            index=torch.tensor([[0, 0], [1, 0], [0, 0]]),
        )
    inputs = Inputs(
        torch.tensor([[0.0, 1.0, NAN], [0.0, 0.2, 0.4], [0.0, 1.0, 2.0]], dtype=torch.float64),
        torch.randn(3, 3, 2, generator=g, dtype=torch.float64),
        ["constant", "cubic"],
        names=["rate", "temperature"],
        units=["mg/h", "K"],
        boluses=boluses,
    )
    return Trajectories(times, values, channels=["a", "b"], time_units="h", inputs=inputs)


@pytest.mark.parametrize("suffix", [".nc", ".h5"])
@pytest.mark.parametrize("with_boluses", [True, False], ids=["boluses", "no-boluses"])
def test_round_trip_keeps_inputs(tmp_path, suffix: str, with_boluses: bool) -> None:
    traj = _data(with_boluses)
    path = tmp_path / f"data{suffix}"
    save(traj, path)
    back = load(path)
    assert back.identical(traj)
    assert back.digest() == traj.digest()
    assert back.inputs is not None
    assert back.inputs.names == ["rate", "temperature"] and back.inputs.kinds == ["constant", "cubic"]
    assert back.inputs.units == ["mg/h", "K"]
    assert (back.inputs.boluses is None) == (not with_boluses)


def test_files_without_inputs_still_load(tmp_path) -> None:
    traj = Trajectories(torch.zeros(2, 3, dtype=torch.float64) + torch.arange(3.0), torch.ones(2, 3, 1))
    save(traj, tmp_path / "plain.nc")
    back = load(tmp_path / "plain.nc")
    assert back.inputs is None and back.identical(traj)


def test_digest_changes_with_inputs_only_when_present() -> None:
    traj = _data()
    plain = Trajectories(traj.times, traj.values, traj.mask, traj.lengths, **{**traj._descr(), "inputs": None})
    assert plain.digest() != traj.digest()
    other = _data()
    other.inputs.values[1, 0, 0] += 1.0  # a different dose
    assert other.digest() != traj.digest() and not other.identical(traj)


def test_selection_batching_to_and_split_keep_inputs() -> None:
    traj = _data()
    sub = traj[[2, 0]]
    assert sub.inputs.times.shape == (2, 3)
    torch.testing.assert_close(sub.inputs.times[1, :2], traj.inputs.times[0, :2])
    torch.testing.assert_close(sub.inputs.boluses.amounts[1, :1], traj.inputs.boluses.amounts[0, :1])
    batch = next(iter(DataLoader(TrajectoryDataset(traj), batch_size=3, collate_fn=collate_trajectories)))
    assert batch.identical(traj)
    f32 = traj.to(dtype=torch.float32)
    assert f32.inputs.values.dtype == torch.float32 and f32.inputs.boluses.amounts.dtype == torch.float32
    observe, forecast = traj.split_by_time(0.25)
    assert observe.inputs.same(traj.inputs) and forecast.inputs.same(traj.inputs)
    assert traj.select_channels(["b"]).inputs.same(traj.inputs)


def test_shared_series_is_repeated_and_detached() -> None:
    values = torch.tensor([[1.0], [2.0]], dtype=torch.float64, requires_grad=True)
    shared = Inputs(torch.tensor([0.0, 1.0], dtype=torch.float64), values)
    traj = Trajectories(torch.arange(3.0, dtype=torch.float64), torch.zeros(4, 3, 1), inputs=shared)
    assert traj.inputs.batch == 4 and not traj.inputs.values.requires_grad


def test_bad_inputs_are_refused(tmp_path) -> None:
    traj = _data()
    with pytest.raises(ValueError, match="inputs hold 3 trajectories but the data has 2"):
        Trajectories(traj.times[:2], traj.values[:2], inputs=traj.inputs)
    with pytest.raises(TypeError, match="inputs must be a physnode.data.Inputs"):
        Trajectories(traj.times, traj.values, inputs={"rate": 1.0})
    # A file whose inputs are not sorted is refused with the reason.
    import xarray as xr

    ds = traj.to_xarray()
    bad = ds["input_time"].values.copy()
    bad[0, :2] = [1.0, 0.0]
    ds["input_time"] = (("trajectory", "input_obs"), bad)
    with pytest.raises(TrajectoryFileError, match="invalid external inputs: .*strictly increasing"):
        Trajectories.from_xarray(ds)
    assert isinstance(ds, xr.Dataset)
