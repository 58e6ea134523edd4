"""Fuzz catalogue of data files, the command line, ``fit`` / ``forecast`` and checkpoints.

Each row is one bad input: an id, a callable taking the test's ``tmp_path``, what must happen (an exception
type and a message regex for the Python API; an exit code and a regex of the one-line stderr for the command
line; ``None`` for inputs that must be handled correctly, e.g. a decompression bomb that must be skipped) and a
time limit. Files are tiny and built in ``tmp_path`` (malicious HDF5 / netCDF4 with h5py and h5netcdf); fits run
one or two epochs on a few points.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from physnode.cli import main as physnode_main
from physnode.data import Trajectories, TrajectoryFileError
from physnode.errors import SolverError
from physnode.fit import fit
from physnode.fit.checkpoint import CheckpointError, save_checkpoint
from physnode.forecast import forecast


# ---------------------------------------------------------------------------------------------- helpers
class Decay(nn.Module):
    """dy/dt = -k y with a plain learnable rate."""

    state_names = ("x",)

    def __init__(self, k: float = 0.5) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(k, dtype=torch.float64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.k * y


class Other(nn.Module):
    """Another model (other parameter names), for checkpoints of the wrong model."""

    state_names = ("x",)

    def __init__(self) -> None:
        super().__init__()
        self.rate = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.rate * y


def tiny(n: int = 2, T: int = 5, k: float = 1.3) -> Trajectories:
    """``x_i(t) = a_i exp(-k t)`` on [0, 1], channel ``x``, metadata initial states."""
    a = torch.linspace(1.0, 2.0, n, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, T, dtype=torch.float64)
    y = (a[:, None] * torch.exp(-k * t))[..., None]
    meta = [{"initial_state": [float(ai)], "parameters": {"k": k}} for ai in a]
    return Trajectories(t, y, channels=["x"], units=["m"], time_units="s", metadata=meta)


def h5(tmp: Path, edit: Callable[[h5py.File], None], name: str = "d.h5") -> Path:
    """A valid ``.h5`` trajectory file, then ``edit(file)`` on it."""
    path = tmp / name
    tiny().save(path)
    with h5py.File(path, "a") as f:
        edit(f)
    return path


def replace(f: h5py.File, name: str, data: Any, dims: str, **kw: Any) -> h5py.Dataset:
    """Replace dataset ``name`` by ``data`` (or a declared shape via ``shape=``) with a ``dimensions`` attribute."""
    attrs = dict(f[name].attrs) if name in f else {}
    if name in f:
        del f[name]
    ds = f.create_dataset(name, data=data, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v
    ds.attrs["dimensions"] = dims
    return ds


def huge_h5(tmp: Path) -> Path:
    """A consistent schema whose (unallocated, compressed) arrays declare 1e9 observation times."""

    def edit(f: h5py.File) -> None:
        T = 10**9
        for name in ("time", "x"):
            replace(f, name, None, "trajectory obs", shape=(2, T), dtype="f8", chunks=(1, 10**6), compression="gzip")
        replace(f, "mask", None, "trajectory obs channel", shape=(2, T, 1), dtype="i1", chunks=(1, 10**6, 1))

    return h5(tmp, edit)


def bomb_h5(tmp: Path) -> Path:
    """A ~20 KB file with an extra gzip dataset of 4e8 zeros (3.2 GB if read)."""

    def edit(f: h5py.File) -> None:
        ds = f.create_dataset("junk", shape=(4 * 10**8,), dtype="f8", chunks=(10**6,), compression="gzip")
        ds.attrs["dimensions"] = "junk"

    return h5(tmp, edit)


def nc(tmp: Path, edit: Callable[[Any], None], name: str = "d.nc") -> Path:
    """A valid ``.nc`` trajectory file, then ``edit(h5netcdf_file)`` on it."""
    import h5netcdf

    path = tmp / name
    tiny().save(path)
    with h5netcdf.File(path, "a") as f:
        edit(f)
    return path


def bomb_nc(tmp: Path) -> Path:
    def edit(f) -> None:
        f.dimensions["junk"] = 4 * 10**8
        f.create_variable("junk", ("junk",), dtype="f8", chunks=(10**6,), compression="gzip")

    return nc(tmp, edit)


def huge_nc(tmp: Path) -> Path:
    """A netCDF file whose schema is consistent but declares 2 x 1e9 observation times."""
    import h5netcdf

    path = tmp / "huge.nc"
    with h5netcdf.File(path, "w") as f:
        f.attrs["featureType"] = "trajectory"
        f.dimensions.update({"trajectory": 2, "obs": 10**9, "channel": 1})
        ch = f.create_variable("channel", ("channel",), dtype=h5py.string_dtype())
        ch[:] = np.array(["x"], dtype=object)
        for name in ("time", "x"):
            f.create_variable(name, ("trajectory", "obs"), dtype="f8", chunks=(1, 10**6), compression="gzip")
        f.create_variable("mask", ("trajectory", "obs", "channel"), dtype="i1", chunks=(1, 10**6, 1))
        for name in ("trajectory_id", "metadata"):
            v = f.create_variable(name, ("trajectory",), dtype=h5py.string_dtype())
            v[:] = np.array(["a", "b"] if name == "trajectory_id" else ["{}", "{}"], dtype=object)
    return path


def deep(n: int) -> str:
    """JSON text of ``n`` nested lists."""
    return "[" * n + "]" * n


def nested(n: int) -> list:
    """A Python list nested ``n`` levels deep."""
    x: list = []
    for _ in range(n):
        x = [x]
    return x


def load_ok_small(path_fn: Callable[[Path], Path]) -> Callable[[Path], Any]:
    """Loading must succeed and allocate little (the bomb is never read)."""

    def run(tmp: Path) -> None:
        path = path_fn(tmp)
        tracemalloc.start()
        try:
            traj = Trajectories.load(path)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert traj.n_trajectories == 2
        assert peak < 50 * 2**20, f"loading allocated {peak / 2**20:.0f} MiB"

    return run


def cli(*argv: str) -> Callable[[Path], int]:
    """``physnode ARGV`` in-process; ``{tmp}`` in an argument is the test's tmp_path."""
    return lambda tmp: physnode_main([a.replace("{tmp}", str(tmp)) for a in argv])


def cli_after(setup: Callable[[Path], Any], *argv: str) -> Callable[[Path], int]:
    def run(tmp: Path) -> int:
        setup(tmp)
        return cli(*argv)(tmp)

    return run


def write_config(tmp: Path, solver: str = "", fit_: str = 'epochs = 1\noptimizer = "adam"', extra: str = "") -> Path:
    tiny().save(tmp / "d.nc")
    text = f"""
[model]
kind = "ode"
state = ["x"]
rhs = {{ x = "-k*x" }}

[model.params]
k = {{ value = 0.5, positive = true }}

[data]
file = "d.nc"

[solver]
{solver}

[fit]
{fit_}

[output]
dir = "res"
{extra}
"""
    (tmp / "c.toml").write_text(text)
    return tmp / "c.toml"


def results_folder(tmp: Path, config: Any = "config.toml", link: str | None = None) -> Path:
    """A hand-made results folder whose ``summary.json`` names ``config``."""
    res = tmp / "res"
    res.mkdir()
    tiny().save(res / "data.nc")
    cfg = write_config(tmp)
    (res / "config.toml").write_text(cfg.read_text().replace('file = "d.nc"', 'file = "data.nc"'))
    if link is not None:
        (res / "evil.toml").symlink_to(link)
    summary = {"model": "config", "config": config, "params": {"k": 1.0}, "solver": {"method": "dopri5"}}
    (res / "summary.json").write_text(json.dumps(summary))
    return res


def fit_quick(data: Trajectories | None = None, model: nn.Module | None = None, **kw: Any) -> Any:
    opts = {"epochs": 1, "progress": False, "grad": "direct", "uncertainty": False, **kw}
    return fit(model or Decay(), tiny() if data is None else data, **opts)


def checkpoint_then(tmp: Path, **kw: Any) -> Any:
    """Write a 2-epoch Adam checkpoint, then resume with ``kw`` changed."""
    ck = tmp / "c.pt"
    fit_quick(epochs=2, checkpoint=ck)
    opts = {"epochs": 2, "checkpoint": ck, "resume": True, **kw}
    return fit_quick(**opts)


def bad_checkpoint(content: Callable[[Path], None]) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        content(tmp / "c.pt")
        return fit_quick(epochs=2, checkpoint=tmp / "c.pt", resume=True)

    return run


def edited_checkpoint(edit: Callable[[dict], None]) -> Callable[[Path], Any]:
    def run(tmp: Path) -> Any:
        ck = tmp / "c.pt"
        fit_quick(epochs=2, checkpoint=ck)
        state = torch.load(ck, weights_only=True)
        edit(state)
        state.pop("format", None)
        save_checkpoint(ck, state)
        return fit_quick(epochs=2, checkpoint=ck, resume=True)

    return run


def truncate(tmp: Path) -> None:
    ck = tmp / "c.pt"
    fit_quick(epochs=1, checkpoint=ck)
    data = ck.read_bytes()
    ck.write_bytes(data[: len(data) // 2])


def pickled(path: Path) -> None:
    torch.save({"format": "physnode.fit/2", "evil": Fraction(1, 3)}, path)


def no_cuda() -> bool:
    return not torch.cuda.is_available()


# ---------------------------------------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class Case:
    """One bad input and what must happen."""

    id: str
    run: Callable[[Path], Any]
    expect: type[BaseException] | int | None
    match: str = ""
    seconds: float = 20.0
    skip: str | None = None


LOAD = Trajectories.load
T5 = torch.linspace(0.0, 1.0, 5, dtype=torch.float64)
V = torch.zeros(1, 5, 1, dtype=torch.float64)
E = TrajectoryFileError

CASES: list[Case] = [
    # ---- data files: sizes
    Case("h5-gzip-bomb-extra-dataset-not-read", load_ok_small(bomb_h5), None),
    Case("nc-gzip-bomb-extra-variable-not-read", load_ok_small(bomb_nc), None),
    Case("h5-declares-1e9-times", lambda tmp: LOAD(huge_h5(tmp)), E, r"beyond the limit of 100,000,000 values"),
    Case("nc-declares-1e9-times", lambda tmp: LOAD(huge_nc(tmp)), E, r"beyond the limit"),
    Case("h5-over-max-elements-argument", lambda tmp: LOAD(h5(tmp, lambda f: None), max_elements=3), E, "limit of 3"),
    Case("load-max-bytes-zero", lambda tmp: LOAD(h5(tmp, lambda f: None), max_bytes=0), ValueError, "positive"),
    Case(
        "h5-declares-1e9-channels",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "channel", None, "channel", shape=(10**9,), dtype="S1"))),
        E,
        r"channels; expected between 1",
    ),
    Case(
        "h5-zero-channels",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "channel", None, "channel", shape=(0,), dtype="S1"))),
        E,
        r"declares 0 channels",
    ),
    # ---- data files: attributes and JSON
    Case(
        "h5-metadata-nested-3000-deep",
        lambda tmp: LOAD(
            h5(tmp, lambda f: replace(f, "metadata", [deep(3000)] * 2, "trajectory", dtype=h5py.string_dtype()))
        ),
        E,
        r"metadata\[0\] nests JSON arrays/objects 3000 levels deep",
    ),
    Case(
        "h5-global-attrs-nested-3000-deep",
        lambda tmp: LOAD(h5(tmp, lambda f: f.attrs.__setitem__("physnode_attrs", deep(3000)))),
        E,
        r"physnode_attrs nests JSON",
    ),
    Case(
        "h5-metadata-not-json",
        lambda tmp: LOAD(
            h5(tmp, lambda f: replace(f, "metadata", ["{oops", "{}"], "trajectory", dtype=h5py.string_dtype()))
        ),
        E,
        r"metadata\[0\] is not valid JSON",
    ),
    Case(
        "h5-metadata-json-list",
        lambda tmp: LOAD(
            h5(tmp, lambda f: replace(f, "metadata", ["[1]", "{}"], "trajectory", dtype=h5py.string_dtype()))
        ),
        E,
        r"must be a JSON object",
    ),
    Case(
        "h5-metadata-python-pickle-text",
        lambda tmp: LOAD(
            h5(tmp, lambda f: replace(f, "metadata", ["cos\nsystem\n", "{}"], "trajectory", dtype=h5py.string_dtype()))
        ),
        E,
        r"not valid JSON",
    ),
    Case(
        "h5-channel-name-not-utf8",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "channel", np.array([b"\xff\xfe"]), "channel"))),
        E,
        r"channel name 0 is not UTF-8",
    ),
    Case(
        "h5-units-with-nul",
        lambda tmp: LOAD(h5(tmp, lambda f: f["x"].attrs.__setitem__("units", np.void(b"m\x00s")))),
        E,
        r"units of channel 'x'",
    ),
    Case(
        "h5-featureType-wrong",
        lambda tmp: LOAD(h5(tmp, lambda f: f.attrs.__setitem__("featureType", "timeSeries"))),
        E,
        r"featureType is 'timeSeries'",
    ),
    Case(
        "h5-units-an-array",
        lambda tmp: LOAD(h5(tmp, lambda f: f["x"].attrs.__setitem__("units", np.array([1, 2])))),
        E,
        r"units of channel 'x' must be a string, got ndarray",
    ),
    Case(
        "h5-featureType-an-array",
        lambda tmp: LOAD(h5(tmp, lambda f: f.attrs.__setitem__("featureType", np.array([1, 2])))),
        E,
        r"featureType is array",
    ),
    # ---- data files: schema
    Case("h5-missing-time", lambda tmp: LOAD(h5(tmp, lambda f: f.__delitem__("time"))), E, r"missing variable 'time'"),
    Case(
        "h5-time-is-a-group",
        lambda tmp: LOAD(h5(tmp, lambda f: (f.__delitem__("time"), f.create_group("time")))),
        E,
        r"missing variable 'time'",
    ),
    Case(
        "h5-no-dimensions-attribute",
        lambda tmp: LOAD(h5(tmp, lambda f: f["x"].attrs.__delitem__("dimensions"))),
        E,
        r"variable 'x' has dims",
    ),
    Case(
        "h5-wrong-dims",
        lambda tmp: LOAD(h5(tmp, lambda f: f["time"].attrs.__setitem__("dimensions", "obs trajectory"))),
        E,
        r"expected \('trajectory', 'obs'\)",
    ),
    Case(
        "h5-mask-flag-2",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "mask", np.full((2, 5, 1), 2, "i1"), "trajectory obs channel"))),
        E,
        r"only the flags 0",
    ),
    Case(
        "h5-mask-shape-mismatch",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "mask", np.ones((2, 4, 1), "i1"), "trajectory obs channel"))),
        E,
        r"mask shape mismatch",
    ),
    Case(
        "h5-time-integers",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "time", np.zeros((2, 5), "i8"), "trajectory obs"))),
        E,
        r"'time' must be floating point",
    ),
    Case(
        "h5-channel-reserved-name",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "channel", ["time"], "channel", dtype=h5py.string_dtype()))),
        E,
        r"channel name 'time' is a variable of the schema",
    ),
    Case(
        "h5-times-decreasing",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "time", -np.ones((2, 5)).cumsum(1), "trajectory obs"))),
        E,
        r"strictly increasing",
    ),
    Case(
        "h5-observed-nan",
        lambda tmp: LOAD(h5(tmp, lambda f: replace(f, "x", np.full((2, 5), np.nan), "trajectory obs"))),
        E,
        r"mask/value mismatch",
    ),
    Case(
        "h5-random-bytes",
        lambda tmp: (tmp / "r.h5").write_bytes(os.urandom(4096)) and LOAD(tmp / "r.h5"),
        E,
        r"corrupt",
    ),
    Case("nc-empty-file", lambda tmp: (tmp / "e.nc").write_bytes(b"") or LOAD(tmp / "e.nc"), E, r"corrupt"),
    Case(
        "nc-truncated",
        lambda tmp: (
            (tiny().save(tmp / "t.nc"), (tmp / "t.nc").write_bytes((tmp / "t.nc").read_bytes()[:900]))
            and LOAD(tmp / "t.nc")
        ),
        E,
        r"truncated",
    ),
    Case("load-csv-suffix", lambda tmp: LOAD(tmp / "d.csv"), ValueError, r"unsupported file extension"),
    Case("load-missing-file", lambda tmp: LOAD(tmp / "none.nc"), FileNotFoundError, r"no trajectory file"),
    # ---- Trajectories(...)
    Case("traj-values-list", lambda tmp: Trajectories(T5, [[[0.0]]]), TypeError, r"values must be a torch.Tensor"),
    Case("traj-values-int", lambda tmp: Trajectories(T5, V.long()), TypeError, r"floating-point"),
    Case("traj-empty", lambda tmp: Trajectories(T5[:0], V[:, :0]), ValueError, r"N, T, D >= 1"),
    Case("traj-times-shape", lambda tmp: Trajectories(T5[:4], V), ValueError, r"times must have shape"),
    Case("traj-channel-count", lambda tmp: Trajectories(T5, V, channels=["a", "b"]), ValueError, r"2 channel names"),
    Case("traj-channel-space", lambda tmp: Trajectories(T5, V, channels=["a b"]), ValueError, r"not allowed"),
    Case("traj-channel-non-utf8", lambda tmp: Trajectories(T5, V, channels=["\udcff"]), ValueError, r"not allowed"),
    Case("traj-units-nul", lambda tmp: Trajectories(T5, V, units=["m\x00s"]), ValueError, r"NUL character"),
    Case("traj-time-units-nul", lambda tmp: Trajectories(T5, V, time_units="s\x00"), ValueError, r"NUL"),
    Case("traj-id-nul", lambda tmp: Trajectories(T5, V, ids=["a\x00"]), ValueError, r"ids\[0\].*NUL"),
    Case("traj-units-surrogate", lambda tmp: Trajectories(T5, V, units=["\udcff"]), ValueError, r"surrogate"),
    Case("traj-lengths-zero", lambda tmp: Trajectories(T5, V, lengths=[0]), ValueError, r"between 1 and T"),
    Case(
        "traj-metadata-nested-3000",
        lambda tmp: Trajectories(T5, V, metadata=[{"a": nested(3000)}]),
        ValueError,
        r"nested too deeply",
    ),
    Case("traj-metadata-tensor", lambda tmp: Trajectories(T5, V, metadata=[{"a": T5}]), TypeError, r"JSON"),
    Case("traj-mask-float", lambda tmp: Trajectories(T5, V, mask=V), TypeError, r"torch.bool"),
    # ---- fit(...)
    Case(
        "fit-all-masked",
        lambda tmp: fit_quick(
            Trajectories(T5, V, torch.zeros_like(V, dtype=torch.bool), metadata=[{"initial_state": [1.0]}])
        ),
        ValueError,
        r"every observation of the data is masked",
    ),
    Case(
        "fit-lr-1e6-solver-fails",
        lambda tmp: fit_quick(epochs=3, lr=1e6, optimizer="adam"),
        SolverError,
        r"during the fit, epoch \d of 3; learnable parameters now \{'k': 1\d{6}",
        seconds=40,
    ),
    Case("fit-unknown-optimizer", lambda tmp: fit_quick(optimizer="sgd"), ValueError, r"unknown optimizer 'sgd'"),
    Case("fit-data-is-a-tensor", lambda tmp: fit_quick(V), TypeError, r"physnode.data.Trajectories"),
    Case("fit-epochs-negative", lambda tmp: fit_quick(epochs=-1), ValueError, r"epochs must be a positive integer"),
    Case("fit-loss-list", lambda tmp: fit_quick(loss=["mse"]), TypeError, r"loss must be a name"),
    Case("fit-batch-size-zero", lambda tmp: fit_quick(batch_size=0), ValueError, r"batch_size"),
    Case("fit-observe-unknown-name", lambda tmp: fit_quick(observe=["nope"]), ValueError, r"nope"),
    Case("fit-fixed-step-no-step-size", lambda tmp: fit_quick(method="rk4"), ValueError, r"needs step_size"),
    Case(
        "fit-device-cuda-without-cuda",
        lambda tmp: fit_quick(device="cuda"),
        ValueError,
        r"CUDA is not available on this machine",
        skip=None if no_cuda() else "this machine has CUDA",
    ),
    Case(
        "fit-resume-a-tensor", lambda tmp: fit_quick(resume=torch.zeros(2)), TypeError, r"resume must be True or False"
    ),
    Case("fit-device-nonsense", lambda tmp: fit_quick(device="gpu0"), ValueError, r"not a torch device"),
    # ---- checkpoints
    Case(
        "ckpt-random-bytes",
        bad_checkpoint(lambda p: p.write_bytes(os.urandom(500))),
        CheckpointError,
        r"not a torch zip",
    ),
    Case("ckpt-empty-file", bad_checkpoint(lambda p: p.write_bytes(b"")), CheckpointError, r"truncated, corrupt"),
    Case(
        "ckpt-truncated",
        lambda tmp: (truncate(tmp), fit_quick(epochs=2, checkpoint=tmp / "c.pt", resume=True)),
        CheckpointError,
        r"truncated, corrupt",
    ),
    Case("ckpt-pickled-object", bad_checkpoint(pickled), CheckpointError, r"never unpickled"),
    Case(
        "ckpt-other-model",
        lambda tmp: (
            fit_quick(epochs=2, checkpoint=tmp / "c.pt", model=Other()),
            fit_quick(epochs=2, checkpoint=tmp / "c.pt", resume=True),
        ),
        CheckpointError,
        r"belongs to another model",
    ),
    Case("ckpt-missing-key", edited_checkpoint(lambda s: s.pop("model")), CheckpointError, r"lacks the entry 'model'"),
    Case(
        "ckpt-other-optimizer",
        lambda tmp: checkpoint_then(tmp, optimizer="lbfgs"),
        CheckpointError,
        r"optimizer 'adam'",
    ),
    Case("ckpt-other-data", lambda tmp: checkpoint_then(tmp, data=tiny(n=3)), CheckpointError, r"other data"),
    Case("ckpt-fewer-epochs", lambda tmp: checkpoint_then(tmp, epochs=1), CheckpointError, r"already done 2 epochs"),
    Case(
        "ckpt-tampered-epoch",
        edited_checkpoint(lambda s: s.__setitem__("epoch", 1)),
        CheckpointError,
        r"says 1 epochs are done",
    ),
    Case(
        "ckpt-old-format",
        lambda tmp: (
            torch.save({"format": "physnode.fit/1"}, tmp / "c.pt"),
            fit_quick(checkpoint=tmp / "c.pt", resume=True),
        ),
        CheckpointError,
        r"has format 'physnode.fit/1'",
    ),
    # ---- forecast(...)
    Case("forecast-t-list", lambda tmp: forecast(Decay(), tiny(), [0.0, 1.0]), TypeError, r"t must be a tensor"),
    Case(
        "forecast-no-initial-state",
        lambda tmp: forecast(Decay(), Trajectories(T5, V), T5),
        ValueError,
        r"no metadata 'initial_state'",
    ),
    Case("forecast-y0-3d", lambda tmp: forecast(Decay(), V, T5), ValueError, r"y0 must have shape"),
    Case("forecast-before-start", lambda tmp: forecast(Decay(), tiny(), T5 - 1), ValueError, r"must not start before"),
    # ---- command line: file access
    Case(
        "cli-forecast-config-absolute-path",
        lambda tmp: cli("forecast", str(results_folder(tmp, "/etc/passwd")), "--out", "{tmp}/p.nc")(tmp),
        1,
        r"points outside the results folder",
    ),
    Case(
        "cli-forecast-config-dotdot",
        lambda tmp: cli("forecast", str(results_folder(tmp, "../c.toml")), "--out", "{tmp}/p.nc")(tmp),
        1,
        r"points outside the results folder",
    ),
    Case(
        "cli-forecast-config-symlink-out",
        lambda tmp: cli("forecast", str(results_folder(tmp, "evil.toml", link="/etc/passwd")), "--out", "{tmp}/p.nc")(
            tmp
        ),
        1,
        r"symbolic link to /etc/passwd, outside",
    ),
    Case(
        "cli-forecast-config-not-a-string",
        lambda tmp: cli("forecast", str(results_folder(tmp, ["x"])), "--out", "{tmp}/p.nc")(tmp),
        1,
        r"'config' must be a file name",
    ),
    Case(
        "cli-forecast-data-symlink-out",
        lambda tmp: (
            (
                (results_folder(tmp) / "data.nc").unlink(),
                (tmp / "res" / "data.nc").symlink_to("/etc/passwd"),
            )
            and cli("forecast", "{tmp}/res", "--out", "{tmp}/p.nc")(tmp)
        ),
        1,
        r"'data.nc' is a symbolic link to /etc/passwd",
    ),
    Case(
        "cli-forecast-summary-not-json",
        lambda tmp: (
            (results_folder(tmp) / "summary.json").write_text("{'model': 1}")
            and cli("forecast", "{tmp}/res", "--out", "{tmp}/p.nc")(tmp)
        ),
        1,
        r"summary.json is not valid JSON",
    ),
    Case(
        "cli-forecast-params-nested-3000",
        lambda tmp: (
            (tmp / "x.json").write_text(deep(3000))
            and cli("forecast", "three-body", "--out", "p.nc", "--params", "x.json")(tmp)
        ),
        1,
        r"x.json nests JSON arrays/objects 3000 levels deep",
    ),
    Case(
        "cli-forecast-n-times-huge",
        cli("forecast", "three-body", "--out", "p.nc", "--n-times", "1000000000"),
        1,
        "--n-times",
    ),
    Case("cli-forecast-t-end-inf", cli("forecast", "three-body", "--out", "p.nc", "--t-end", "inf"), 1, r"finite"),
    Case("cli-forecast-no-out-folder", cli("forecast", "three-body", "--out", "no/dir/p.nc"), 1, r"does not exist"),
    # ---- command line: fit
    Case(
        "cli-fit-device-cuda-without-cuda",
        cli("fit", "three-body", "--device", "cuda", "--quiet"),
        1,
        r"^physnode fit: error: CUDA is not available on this machine; use --device cpu\.$",
        skip=None if no_cuda() else "this machine has CUDA",
    ),
    Case("cli-fit-n-obs-1e8", cli("fit", "three-body", "--n-obs", "100000000"), 1, r"more than the limit"),
    Case("cli-fit-n-obs-zero", cli("fit", "three-body", "--n-obs", "0"), 2, r"expected a positive integer"),
    Case("cli-fit-n-obs-text", cli("fit", "three-body", "--n-obs", "many"), 2, r"expected a positive integer"),
    Case("cli-fit-unknown-optimizer", cli("fit", "three-body", "--optimizer", "sgd"), 1, r"unknown --optimizer 'sgd'"),
    Case(
        "cli-fit-out-unwritable",
        cli("fit", "three-body", "--out", "/proc/physnode-x", "--epochs", "1"),
        1,
        "not writable",
    ),
    Case(
        "cli-fit-out-is-a-file",
        cli_after(lambda tmp: (tmp / "f").write_text(""), "fit", "three-body", "--out", "{tmp}/f"),
        1,
        r"is not a folder",
    ),
    Case("cli-fit-rk4-no-step-size", cli("fit", "three-body", "--method", "rk4"), 1, r"needs --step-size"),
    Case(
        "cli-config-step-size-adaptive",
        lambda tmp: cli("fit", str(write_config(tmp, 'method = "dopri5"\nstep_size = 0.1')))(tmp),
        1,
        r"step_size applies to fixed-step methods",
    ),
    Case(
        "cli-config-fixed-no-step-size",
        lambda tmp: cli("fit", str(write_config(tmp, 'method = "rk4"')))(tmp),
        1,
        r"method 'rk4' takes fixed steps and needs step_size",
    ),
    Case(
        "cli-config-step-size-negative",
        lambda tmp: cli("fit", str(write_config(tmp, 'method = "rk4"\nstep_size = -0.1')))(tmp),
        1,
        r"positive finite",
    ),
    Case(
        "cli-config-step-size-string",
        lambda tmp: cli("fit", str(write_config(tmp, 'method = "rk4"\nstep_size = "small"')))(tmp),
        1,
        r"\[solver\] step_size must be a positive float .*got 'small' \(str\)",
    ),
    Case(
        "cli-config-device-cuda",
        lambda tmp: cli("fit", str(write_config(tmp)), "--device", "cuda")(tmp),
        1,
        r"CUDA is not available",
        skip=None if no_cuda() else "this machine has CUDA",
    ),
    Case(
        "cli-config-output-unwritable",
        lambda tmp: cli("fit", str(write_config(tmp)), "--out", "/proc/physnode-y")(tmp),
        1,
        r"not writable",
    ),
    Case(
        "cli-config-all-masked",
        lambda tmp: (
            (
                Trajectories(T5, V, torch.zeros_like(V, dtype=torch.bool), channels=["x"]).save(tmp / "m.nc"),
                (tmp / "m.toml").write_text(write_config(tmp).read_text().replace("d.nc", "m.nc")),
            )
            and cli("fit", str(tmp / "m.toml"), "--quiet")(tmp)
        ),
        1,
        r"every observation of the data is masked",
    ),
    Case(
        "cli-config-nul-in-toml",
        lambda tmp: (
            (tmp / "n.toml").write_bytes(b'[model]\nkind = "o\x00de"\n') and cli("fit", str(tmp / "n.toml"))(tmp)
        ),
        1,
        r"not valid TOML",
    ),
    Case(
        "cli-config-not-utf8",
        lambda tmp: (tmp / "b.toml").write_bytes(b"\xff\xfe[model]") and cli("fit", str(tmp / "b.toml"))(tmp),
        1,
        r"not (valid TOML|a UTF-8)",
    ),
    # ---- command line: data, demo, dispatcher
    Case("cli-data-make-zero-times", cli("data", "make", "pendulum", "x.nc", "--n-times", "0"), 2, r"positive integer"),
    Case(
        "cli-data-make-huge",
        cli("data", "make", "pendulum", "x.nc", "--n-trajectories", "100000", "--n-times", "100000"),
        1,
        r"more than the limit",
    ),
    Case("cli-data-show-declares-1e9", lambda tmp: cli("data", "show", str(huge_h5(tmp)))(tmp), 1, r"beyond the limit"),
    Case(
        "cli-data-show-nested-metadata",
        lambda tmp: cli(
            "data",
            "show",
            str(h5(tmp, lambda f: replace(f, "metadata", [deep(3000)] * 2, "trajectory", dtype=h5py.string_dtype()))),
        )(tmp),
        1,
        r"levels deep",
    ),
    Case("cli-data-show-non-utf8-name", cli("data", "show", "\udcff.nc"), 1, r"no trajectory file"),
    Case("cli-demo-t-end-huge", cli("demo", "--t-end", "1e9"), 1, r"at most 100"),
    Case("cli-demo-t-end-nan", cli("demo", "--t-end", "nan"), 1, r"must be positive"),
    Case("cli-demo-out-unwritable", cli("demo", "--out", "/proc/physnode-z"), 1, r"not writable"),
    Case("cli-unknown-command", cli("frobnicate"), 2, r"invalid choice"),
    Case("cli-unknown-option", cli("fit", "three-body", "--bogus"), 2, r"unrecognized arguments: --bogus"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path: Path, capsys, monkeypatch, limit) -> None:
    if case.skip:
        pytest.skip(case.skip)
    monkeypatch.chdir(tmp_path)
    with limit(case.seconds):
        if case.expect is None:
            case.run(tmp_path)
        elif isinstance(case.expect, int):
            code = case.run(tmp_path)
            err = capsys.readouterr().err
            assert code == case.expect, err
            assert err.count("\n") == 1 and err.endswith("\n"), f"not one line: {err!r}"
            assert err.startswith("physnode") and "Traceback" not in err
            assert re.search(case.match, err.strip()), err
        else:
            with pytest.raises(case.expect, match=case.match) as info:
                case.run(tmp_path)
            assert "weights_only=False" not in str(info.value)


def test_catalogue_size() -> None:
    assert len(CASES) >= 55
    assert len({c.id for c in CASES}) == len(CASES)


def _subprocess(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "physnode.cli", *argv], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def test_real_process_error_is_one_line(tmp_path: Path) -> None:
    """Through a real interpreter: a huge --n-obs is one line on stderr, exit code 1, no traceback."""
    proc = _subprocess("fit", "three-body", "--n-obs", "100000000", cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "more than the limit" in proc.stderr


def test_real_process_traceback_after_the_sub_command(tmp_path: Path) -> None:
    """``--traceback`` after the sub-command reaches it: the full traceback instead of the one-line message."""
    proc = _subprocess("data", "show", "missing.nc", "--traceback", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "FileNotFoundError" in proc.stderr
