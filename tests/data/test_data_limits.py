"""Reading untrusted trajectory files: declared sizes are checked before any data is read, only the schema's
variables are read, and JSON attributes have bounded size and depth."""

from __future__ import annotations

import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from physnode.data import Trajectories, TrajectoryFileError
from physnode.data.io import MAX_JSON_DEPTH, parse_json


def _small(path):
    t = torch.linspace(0.0, 1.0, 4, dtype=torch.float64)
    Trajectories(t, torch.ones(2, 4, 1, dtype=torch.float64), channels=["x"]).save(path)
    return path


@pytest.mark.parametrize("suffix", [".h5", ".nc"])
def test_a_compressed_extra_array_is_never_read(tmp_path, suffix):
    """A tiny file with a gzip dataset of 4e8 zeros (3.2 GB if read) loads without reading it."""
    path = _small(tmp_path / f"d{suffix}")
    if suffix == ".h5":
        with h5py.File(path, "a") as f:
            f.create_dataset("junk", shape=(4 * 10**8,), dtype="f8", chunks=(10**6,), compression="gzip")
    else:
        import h5netcdf

        with h5netcdf.File(path, "a") as f:
            f.dimensions["junk"] = 4 * 10**8
            f.create_variable("junk", ("junk",), dtype="f8", chunks=(10**6,), compression="gzip")
    assert path.stat().st_size < 100_000
    tracemalloc.start()
    try:
        traj = Trajectories.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert traj.n_trajectories == 2 and peak < 50 * 2**20


def test_declared_sizes_beyond_the_limit_are_refused_before_reading(tmp_path):
    path = _small(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        for name, dims, shape, dtype in (
            ("time", "trajectory obs", (2, 10**9), "f8"),
            ("x", "trajectory obs", (2, 10**9), "f8"),
            ("mask", "trajectory obs channel", (2, 10**9, 1), "i1"),
        ):
            attrs = dict(f[name].attrs)
            del f[name]
            ds = f.create_dataset(name, shape=shape, dtype=dtype, chunks=(1, 10**6, *shape[2:]), compression="gzip")
            ds.attrs.update(attrs)
            ds.attrs["dimensions"] = dims
    with pytest.raises(TrajectoryFileError, match=r"2,000,000,000 values .* beyond the limit of 100,000,000 values"):
        Trajectories.load(path)
    small = _small(tmp_path / "s.h5")
    with pytest.raises(TrajectoryFileError, match="beyond the limit of 7 values"):
        Trajectories.load(small, max_elements=7)
    assert Trajectories.load(small, max_elements=8).n_trajectories == 2


def test_json_attributes_are_bounded():
    assert parse_json('{"a": [[1]], "b": "[[[[[[["}', "m") == {"a": [[1]], "b": "[[[[[[["}
    deep = "[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(ValueError, match=f"nests JSON arrays/objects {MAX_JSON_DEPTH + 1} levels deep"):
        parse_json(deep, "metadata[0]")
    with pytest.raises(ValueError, match="more than the limit of 10"):
        parse_json('{"a": "0123456789"}', "m", max_chars=10)
    with pytest.raises(ValueError, match="not UTF-8"):
        parse_json(b"\xff{}", "m")
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_json("{'a': 1}", "m")


def test_nul_in_units_is_a_clear_error():
    t = torch.linspace(0.0, 1.0, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"units\[0\] \(channel 'y0'\) = 'm\\x00s' contains a NUL character"):
        Trajectories(t, torch.zeros(1, 3, 1, dtype=torch.float64), units=["m\x00s"])


def test_unnamed_extra_datasets_need_no_dimensions_attribute(tmp_path):
    """Variables the schema does not name are ignored entirely (formerly any dataset needed 'dimensions')."""
    path = _small(tmp_path / "d.h5")
    with h5py.File(path, "a") as f:
        f.create_dataset("notes", data=np.arange(3))
    assert Trajectories.load(path).n_trajectories == 2


@pytest.mark.parametrize("suffix", [".h5", ".nc"])
def test_corrupted_files_give_one_clear_error_and_no_stderr_noise(tmp_path, suffix):
    """Random byte flips: always a TrajectoryFileError, never another exception or an ignored one in a __del__."""
    import gc
    import random
    import sys

    base = _small(tmp_path / f"b{suffix}").read_bytes()
    rng = random.Random(0)
    ignored = []
    previous = sys.unraisablehook
    sys.unraisablehook = ignored.append
    try:
        for _ in range(30):
            data = bytearray(base)
            for _ in range(rng.choice([1, 4, 16])):
                data[rng.randrange(len(data))] = rng.randrange(256)
            path = tmp_path / f"m{suffix}"
            path.write_bytes(bytes(data))
            try:
                Trajectories.load(path)
            except TrajectoryFileError:
                pass
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert not ignored, [repr(u.exc_value) for u in ignored[:3]]
