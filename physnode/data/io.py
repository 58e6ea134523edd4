"""Reading and writing :class:`~physnode.data.Trajectories` in the CF trajectory layout.

Schema (CF-1.8 discrete sampling geometry, *trajectory*, incomplete multidimensional array representation)

- dimensions ``trajectory`` (N), ``obs`` (T, padded), ``channel`` (D);
- ``time(trajectory, obs)``: float, ``units`` attribute, NaN (``_FillValue``) at padded entries;
- one variable per channel, named by the channel, ``(trajectory, obs)``, ``units`` attribute, NaN where missing;
- ``mask(trajectory, obs, channel)``: int8 flag variable (``flag_values = 0, 1``, ``flag_meanings =
  "missing observed"``);
- ``channel(channel)``: the channel names (strings), in order;
- ``trajectory_id(trajectory)``: strings with ``cf_role = "trajectory_id"``;
- ``metadata(trajectory)``: one JSON object (string) per trajectory;
- global attributes ``featureType = "trajectory"``, ``Conventions = "CF-1.8"``, ``physnode_schema``,
  ``physnode_attrs`` (JSON string of the global attributes).

``.nc`` files are written with xarray's ``h5netcdf`` engine and open in plain
``xarray.open_dataset(path, engine="h5netcdf")``. ``.h5`` / ``.hdf5`` files are written with h5py with the same
variable names and attributes; each dataset's dimensions are named in its ``dimensions`` attribute. Metadata is
JSON parsed with :func:`json.loads`; nothing is unpickled or evaluated. Writes are atomic (a temporary file in
the destination folder, then :func:`os.replace`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write
from .trajectories import Trajectories

__all__ = ["SCHEMA", "TrajectoryFileError", "from_xarray", "load", "save", "to_xarray"]

SCHEMA = "physnode.trajectories/1"
_NC_SUFFIXES = (".nc",)
_H5_SUFFIXES = (".h5", ".hdf5")


class TrajectoryFileError(ValueError):
    """A trajectory file or dataset does not follow the physnode schema, or cannot be read."""


# ---------------------------------------------------------------------------------------------- arrays
def _arrays(traj: Trajectories) -> tuple[dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]], dict]:
    """Variables ``name -> (dims, array, attrs)`` and global attributes of the schema."""
    tm = traj.time_mask.cpu().numpy()
    times = traj.times.detach().cpu().numpy().copy()
    times[~tm] = np.nan
    values = traj.values.detach().cpu().numpy().copy()
    mask = traj.mask.cpu().numpy()
    values[~mask] = np.nan
    var: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]] = {}
    var["time"] = (
        ("trajectory", "obs"),
        times,
        {"units": traj.time_units, "long_name": "observation time", "axis": "T"},
    )
    for j, (c, u) in enumerate(zip(traj.channels, traj.units, strict=True)):
        var[c] = (
            ("trajectory", "obs"),
            np.ascontiguousarray(values[:, :, j]),
            {"units": u, "long_name": c, "coordinates": "time"},
        )
    var["mask"] = (
        ("trajectory", "obs", "channel"),
        mask.astype(np.int8),
        {
            "long_name": "observation mask of each channel",
            "flag_values": np.array([0, 1], dtype=np.int8),
            "flag_meanings": "missing observed",
        },
    )
    var["channel"] = (("channel",), np.array(traj.channels, dtype=object), {"long_name": "channel name"})
    var["trajectory_id"] = (
        ("trajectory",),
        np.array(traj.ids, dtype=object),
        {"cf_role": "trajectory_id", "long_name": "trajectory identifier"},
    )
    var["metadata"] = (
        ("trajectory",),
        np.array([json.dumps(m, sort_keys=True, allow_nan=True) for m in traj.metadata], dtype=object),
        {"long_name": "per-trajectory metadata", "comment": "one JSON object per trajectory"},
    )
    attrs = {
        "featureType": "trajectory",
        "Conventions": "CF-1.8",
        "physnode_schema": SCHEMA,
        "physnode_attrs": json.dumps(traj.attrs, sort_keys=True, allow_nan=True),
        "title": str(traj.attrs.get("title", traj.attrs.get("dataset", "physnode trajectories"))),
    }
    return var, attrs


def _fail(source: str, message: str) -> TrajectoryFileError:
    return TrajectoryFileError(f"{source}: {message}")


def _from_arrays(var: Mapping[str, tuple[tuple[str, ...], np.ndarray, Mapping[str, Any]]], attrs: Mapping, source: str):
    """Validate the schema and build :class:`Trajectories` (shared by netCDF, HDF5 and xarray input)."""
    if attrs.get("featureType") != "trajectory":
        raise _fail(source, f"global attribute featureType is {attrs.get('featureType')!r}; expected 'trajectory'.")

    def get(name: str, dims: tuple[str, ...]) -> tuple[np.ndarray, Mapping[str, Any]]:
        if name not in var:
            raise _fail(source, f"missing variable {name!r} required by the physnode trajectory schema.")
        d, a, at = var[name]
        if tuple(d) != dims:
            raise _fail(source, f"variable {name!r} has dims {tuple(d)}; expected {dims}.")
        if a.ndim != len(dims):
            raise _fail(source, f"variable {name!r} has {a.ndim} axes but names dims {tuple(d)}.")
        return a, at

    chan, _ = get("channel", ("channel",))
    channels = [str(c) for c in chan.tolist()]
    time, time_attrs = get("time", ("trajectory", "obs"))
    if time.dtype.kind != "f":
        raise _fail(source, f"variable 'time' must be floating point, got {time.dtype}.")
    N, T = time.shape
    D = len(channels)
    cols = []
    for c in channels:
        a, _ = get(c, ("trajectory", "obs"))
        if a.shape != (N, T):
            raise _fail(source, f"variable {c!r} has shape {a.shape}; expected (trajectory, obs) = {(N, T)}.")
        if a.dtype.kind != "f":
            raise _fail(source, f"channel variable {c!r} must be floating point, got {a.dtype}.")
        cols.append(a)
    dtypes = {a.dtype for a in cols}
    if len(dtypes) != 1:
        raise _fail(source, f"channel variables have mixed dtypes {sorted(map(str, dtypes))}; expected one.")
    mask, _ = get("mask", ("trajectory", "obs", "channel"))
    if mask.shape != (N, T, D):
        raise _fail(
            source,
            f"mask shape mismatch: 'mask' has shape {mask.shape} but the values have (trajectory, obs, channel) = "
            f"{(N, T, D)}.",
        )
    if mask.dtype.kind not in "iub" or not np.isin(mask, (0, 1)).all():
        raise _fail(source, "variable 'mask' must hold only the flags 0 (missing) and 1 (observed).")
    ids, _ = get("trajectory_id", ("trajectory",))
    meta, _ = get("metadata", ("trajectory",))
    for name, a in (("trajectory_id", ids), ("metadata", meta)):
        if a.shape != (N,):
            raise _fail(source, f"variable {name!r} has shape {a.shape}; expected (trajectory,) = ({N},).")
    metadata = []
    for i, s in enumerate(meta.tolist()):
        try:
            m = json.loads(s)
        except (TypeError, ValueError) as err:
            raise _fail(source, f"metadata[{i}] is not valid JSON ({err}).") from None
        if not isinstance(m, dict):
            raise _fail(source, f"metadata[{i}] must be a JSON object, got {type(m).__name__}.")
        metadata.append(m)
    try:
        gattrs = json.loads(attrs.get("physnode_attrs", "{}"))
    except (TypeError, ValueError) as err:
        raise _fail(source, f"global attribute physnode_attrs is not valid JSON ({err}).") from None
    if not isinstance(gattrs, dict):
        raise _fail(source, "global attribute physnode_attrs must be a JSON object.")
    values = np.stack(cols, axis=-1)
    mask_b = mask.astype(bool)
    nan_v = np.isnan(values) & mask_b
    if nan_v.any():
        i, k, j = np.argwhere(nan_v)[0].tolist()
        raise _fail(
            source,
            f"mask/value mismatch: {channels[j]}[{i}, {k}] is NaN but mask[{i}, {k}, {j}] = 1 (observed).",
        )
    try:
        return Trajectories(
            torch.from_numpy(np.ascontiguousarray(time)),
            torch.from_numpy(values),
            torch.from_numpy(mask_b),
            channels=channels,
            units=[str(var[c][2].get("units", "1")) for c in channels],
            time_units=str(time_attrs.get("units", "1")),
            metadata=metadata,
            attrs=gattrs,
            ids=[str(s) for s in ids.tolist()],
        )
    except (ValueError, TypeError) as err:
        raise _fail(source, f"invalid trajectory data: {err}") from None


# ---------------------------------------------------------------------------------------------- xarray
def to_xarray(traj: Trajectories):
    """The CF trajectory :class:`xarray.Dataset` of ``traj`` (NaN fill at padded times and missing values)."""
    import xarray as xr

    var, attrs = _arrays(traj)
    coords = {k: var[k] for k in ("time", "channel")}
    data = {k: v for k, v in var.items() if k not in coords}
    return xr.Dataset(data_vars=data, coords=coords, attrs=attrs)


def from_xarray(ds, *, source: str = "dataset") -> Trajectories:
    """Validate an :class:`xarray.Dataset` in the physnode CF trajectory layout and build :class:`Trajectories`.

    Raises
    ------
    TrajectoryFileError
        Missing variables, wrong dimensions, NaN or non-increasing times, mask/value mismatches, bad JSON.
    """
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"from_xarray expects an xarray.Dataset, got {type(ds).__name__}.")
    var = {str(k): (tuple(map(str, v.dims)), np.asarray(v.values), dict(v.attrs)) for k, v in ds.variables.items()}
    return _from_arrays(var, dict(ds.attrs), source)


# ---------------------------------------------------------------------------------------------- files
def _suffix(path: Path) -> str:
    s = path.suffix.lower()
    if s not in _NC_SUFFIXES + _H5_SUFFIXES:
        raise ValueError(f"unsupported file extension {path.suffix!r} for {path}; use .nc (netCDF4) or .h5 (HDF5).")
    return s


def _atomic_write(path: Path, write) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"folder {folder} does not exist; create it before saving {path.name}.")
    atomic_write(path, write)


def _write_h5(traj: Trajectories, tmp: str) -> None:
    import h5py

    var, attrs = _arrays(traj)
    with h5py.File(tmp, "w", track_order=True) as f:
        for k, v in attrs.items():
            f.attrs[k] = v
        for name, (dims, a, at) in var.items():
            if a.dtype == object:
                ds = f.create_dataset(name, data=a.astype(str).tolist(), dtype=h5py.string_dtype(), track_times=False)
            else:
                ds = f.create_dataset(name, data=a, track_times=False)
            ds.attrs["dimensions"] = " ".join(dims)
            for k, v in at.items():
                ds.attrs[k] = v


def _read_h5(path: Path) -> Trajectories:
    import h5py

    source = str(path)
    var = {}
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        for name, ds in f.items():
            if not isinstance(ds, h5py.Dataset):
                continue
            dims = ds.attrs.get("dimensions")
            if dims is None:
                raise _fail(source, f"variable {name!r} has no 'dimensions' attribute naming its dims.")
            if isinstance(dims, bytes):
                dims = dims.decode()
            a = ds.asstr()[()] if h5py.check_string_dtype(ds.dtype) else ds[()]
            a = np.asarray(a, dtype=object) if h5py.check_string_dtype(ds.dtype) else np.asarray(a)
            at = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in ds.attrs.items() if k != "dimensions"}
            var[name] = (tuple(str(dims).split()), a, at)
    return _from_arrays(var, attrs, source)


def _read_nc(path: Path) -> Trajectories:
    import xarray as xr

    with xr.open_dataset(
        path, engine="h5netcdf", decode_times=False, decode_timedelta=False, mask_and_scale=True
    ) as ds:
        ds.load()
        return from_xarray(ds, source=str(path))


def save(traj: Trajectories, path: str | os.PathLike) -> None:
    """Write ``traj`` atomically: ``.nc`` through xarray's h5netcdf engine, ``.h5`` / ``.hdf5`` through h5py."""
    if not isinstance(traj, Trajectories):
        raise TypeError(f"save expects a Trajectories object, got {type(traj).__name__}.")
    path = Path(path)
    if _suffix(path) in _NC_SUFFIXES:
        ds = to_xarray(traj)
        _atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    else:
        _atomic_write(path, lambda tmp: _write_h5(traj, tmp))


def load(path: str | os.PathLike) -> Trajectories:
    """Read and validate a trajectory file written by :func:`save`.

    Raises
    ------
    FileNotFoundError
        No such file.
    TrajectoryFileError
        The file is truncated, corrupt, not HDF5/netCDF4, or does not follow the schema (the message says which
        variable or check failed).
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory file at {path}.")
    reader = _read_nc if suffix in _NC_SUFFIXES else _read_h5
    try:
        return reader(path)
    except TrajectoryFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as err:
        raise TrajectoryFileError(
            f"{path}: cannot read the file as {'netCDF4' if suffix == '.nc' else 'HDF5'} (truncated, corrupt or not "
            f"a physnode trajectory file): {type(err).__name__}: {err}"
        ) from None
