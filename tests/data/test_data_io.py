"""Save/load round trips (netCDF via h5netcdf, HDF5 via h5py), the CF layout, and every schema violation."""

from __future__ import annotations

import json
import math
import os

import h5py
import numpy as np
import pytest
import torch
import xarray as xr

from physnode.data import Trajectories, TrajectoryFileError, from_xarray


def _traj(dtype: torch.dtype = torch.float64) -> Trajectories:
    g = torch.Generator().manual_seed(7)
    N, T, D = 3, 8, 2
    times = torch.sort(torch.rand(N, T, generator=g, dtype=torch.float64), dim=1).values.to(dtype)
    times[1, 5:] = math.nan
    values = torch.randn(N, T, D, generator=g, dtype=torch.float64).to(dtype)
    mask = torch.rand(N, T, D, generator=g) > 0.25
    mask[1, 5:] = False
    return Trajectories(
        times,
        values,
        mask,
        channels=["x", "v"],
        units=["m", "m s-1"],
        time_units="s",
        metadata=[{"initial_state": [0.1, 1 / 3], "parameters": {"k": 2.5}}, {"note": "é"}, {}],
        attrs={"dataset": "demo", "options": {"noise": 0.01, "irregular": True}},
        ids=["a", "b", "c"],
    )


@pytest.mark.parametrize("suffix", [".nc", ".h5"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_round_trip_bitwise(tmp_path, suffix, dtype):
    tr = _traj(dtype)
    path = tmp_path / f"t{suffix}"
    tr.save(path)
    back = Trajectories.load(path)
    assert back.identical(tr)
    assert back.digest() == tr.digest()
    assert back.values.dtype == dtype
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "no temporary file may be left behind"


def test_plain_xarray_opens_cf_layout(tmp_path):
    tr = _traj()
    path = tmp_path / "t.nc"
    tr.save(path)
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert ds.attrs["featureType"] == "trajectory"
        assert ds["trajectory_id"].attrs["cf_role"] == "trajectory_id"
        assert ds["time"].dims == ("trajectory", "obs")
        assert ds["x"].attrs["units"] == "m" and ds["v"].attrs["units"] == "m s-1"
        assert ds["time"].attrs["units"] == "s"
        # padded times and missing values are NaN fill
        assert bool(np.isnan(ds["time"].values[1, 5:]).all())
        x = ds["x"].values
        assert np.array_equal(np.isnan(x), ~tr.mask[..., 0].numpy())
        assert json.loads(str(ds["metadata"].values[0]))["parameters"] == {"k": 2.5}
    assert from_xarray(tr.to_xarray()).identical(tr)


def test_failed_write_keeps_old_file(tmp_path):
    tr = _traj()
    path = tmp_path / "t.h5"
    tr.save(path)
    before = path.read_bytes()
    bad = _traj()
    bad.attrs = {"x": object()}  # not JSON-serialisable: fails while writing the temporary file
    with pytest.raises(TypeError):
        bad.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.h5"]


def test_unknown_suffix_and_missing_file(tmp_path):
    with pytest.raises(ValueError, match="unsupported file extension"):
        _traj().save(tmp_path / "t.pkl")
    with pytest.raises(FileNotFoundError, match="no trajectory file"):
        Trajectories.load(tmp_path / "none.nc")


# ---------------------------------------------------------------------------------- broken netCDF files
def _break_nc(tmp_path, edit) -> str:
    ds = _traj().to_xarray()
    ds = edit(ds)
    path = tmp_path / "broken.nc"
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def _nan_time(ds):
    t = ds["time"].values.copy()
    t[0, 3] = np.nan
    return ds.assign_coords(time=(("trajectory", "obs"), t, ds["time"].attrs))


def _swap_time(ds):
    t = ds["time"].values.copy()
    t[0, [2, 3]] = t[0, [3, 2]]
    return ds.assign_coords(time=(("trajectory", "obs"), t, ds["time"].attrs))


def _observed_nan(ds):
    x = ds["x"].values.copy()
    m = ds["mask"].values
    i, k = np.argwhere(m[..., 0] == 1)[0]
    x[i, k] = np.nan
    return ds.assign(x=(("trajectory", "obs"), x, ds["x"].attrs))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda ds: ds.drop_vars("mask"), "missing variable 'mask'"),
        (lambda ds: ds.drop_vars("v"), "missing variable 'v'"),
        (lambda ds: ds.drop_vars("trajectory_id"), "missing variable 'trajectory_id'"),
        (lambda ds: ds.assign(x=(("obs", "trajectory"), ds["x"].values.T)), r"'x' has dims \('obs', 'trajectory'\)"),
        (lambda ds: ds.assign(mask=(("trajectory", "obs"), ds["mask"].values[..., 0])), "'mask' has dims"),
        (_nan_time, "follows a NaN time"),
        (_swap_time, "strictly increasing"),
        (_observed_nan, "mask/value mismatch"),
        (lambda ds: ds.assign(metadata=("trajectory", ["{", "{}", "{}"])), "not valid JSON"),
        (lambda ds: ds.assign_attrs(featureType="timeSeries"), "featureType"),
    ],
    ids=[
        "no-mask",
        "no-channel",
        "no-id",
        "transposed",
        "mask-dims",
        "nan-time",
        "non-monotonic",
        "observed-nan",
        "bad-json",
        "feature-type",
    ],
)
def test_schema_violations_netcdf(tmp_path, edit, match):
    path = _break_nc(tmp_path, edit)
    with pytest.raises(TrajectoryFileError, match=match):
        Trajectories.load(path)


# ---------------------------------------------------------------------------------- broken HDF5 files
def _h5_mask_shape(f):
    m = f["mask"][()]
    dims = f["mask"].attrs["dimensions"]
    del f["mask"]
    f.create_dataset("mask", data=m[:, :-1])
    f["mask"].attrs["dimensions"] = dims


def _h5_nan_time(f):
    f["time"][0, 0] = np.nan


def _h5_no_dims(f):
    del f["time"].attrs["dimensions"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda f: f.__delitem__("time"), "missing variable 'time'"),
        (_h5_mask_shape, "mask shape mismatch"),
        (_h5_nan_time, "between 1 and T"),
        (_h5_no_dims, "no 'dimensions' attribute"),
    ],
    ids=["no-time", "mask-shape", "nan-first-time", "no-dims"],
)
def test_schema_violations_hdf5(tmp_path, edit, match):
    path = tmp_path / "broken.h5"
    _traj().save(path)
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(TrajectoryFileError, match=match):
        Trajectories.load(path)


@pytest.mark.parametrize("suffix", [".nc", ".h5"])
def test_truncated_and_garbage_files(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    _traj().save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(TrajectoryFileError, match="truncated, corrupt"):
        Trajectories.load(path)
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(TrajectoryFileError, match="truncated, corrupt"):
        Trajectories.load(path)
    assert os.path.getsize(path) == 4096
