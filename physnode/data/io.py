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

Optional external inputs (:class:`~physnode.data.Inputs`; files without them load as before):

- dimensions ``input_obs`` (K, padded knots) and ``input_channel`` (C);
- ``input_time(trajectory, input_obs)``: knot times in the units of ``time``, NaN padding;
- ``input_value(trajectory, input_obs, input_channel)``: values at the knots, NaN padding;
- ``input_channel(input_channel)``, ``input_kind(input_channel)``, ``input_units(input_channel)``: names,
  interpolation kinds (``constant``, ``linear``, ``cubic``) and units of the channels (strings);
- boluses, when the inputs carry them: dimension ``bolus`` (M), ``bolus_time(trajectory, bolus)``,
  ``bolus_amount(trajectory, bolus)`` (NaN padding) and ``bolus_index(trajectory, bolus)`` (int64: the state
  component each adds to).

``.nc`` files are written with xarray's ``h5netcdf`` engine and open in plain
``xarray.open_dataset(path, engine="h5netcdf")``. ``.h5`` / ``.hdf5`` files are written with h5py with the same
variable names and attributes; each dataset's dimensions are named in its ``dimensions`` attribute. Metadata is
JSON parsed with :func:`json.loads`; nothing is unpickled or evaluated. Writes are atomic (a temporary file in
the destination folder, then :func:`os.replace`).
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write
from .inputs import Boluses, Inputs
from .trajectories import RESERVED_NAMES, Trajectories

__all__ = [
    "MAX_BYTES",
    "MAX_ELEMENTS",
    "MAX_JSON_CHARS",
    "MAX_JSON_DEPTH",
    "SCHEMA",
    "TrajectoryFileError",
    "from_xarray",
    "load",
    "parse_json",
    "save",
    "to_xarray",
]

SCHEMA = "physnode.trajectories/1"

#: Largest in-memory size (bytes) of the schema's variables that :func:`load` reads by default (2 GiB); the
#: sizes are computed from the declared shapes and item sizes before any data is read.
MAX_BYTES = 2 * 1024**3
#: Largest number of values ``N x T x D`` that :func:`load` reads by default.
MAX_ELEMENTS = 10**8
#: Longest JSON text of one attribute (a trajectory's metadata, the global ``physnode_attrs``), in characters.
MAX_JSON_CHARS = 16 * 1024**2
#: Deepest nesting of JSON arrays/objects in an attribute.
MAX_JSON_DEPTH = 64
_MAX_CHANNELS = 100_000
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
    if traj.inputs is not None:
        var.update(_input_arrays(traj.inputs, traj.time_units))
    attrs = {
        "featureType": "trajectory",
        "Conventions": "CF-1.8",
        "physnode_schema": SCHEMA,
        "physnode_attrs": json.dumps(traj.attrs, sort_keys=True, allow_nan=True),
        "title": str(traj.attrs.get("title", traj.attrs.get("dataset", "physnode trajectories"))),
    }
    return var, attrs


def _input_arrays(inputs: Inputs, time_units: str) -> dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]]:
    """The variables of the optional external inputs (and boluses)."""
    var: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]] = {
        "input_time": (
            ("trajectory", "input_obs"),
            inputs.times.detach().cpu().numpy(),
            {"units": time_units, "long_name": "knot times of the external inputs"},
        ),
        "input_value": (
            ("trajectory", "input_obs", "input_channel"),
            inputs.values.detach().cpu().numpy(),
            {"long_name": "external input values at the knots", "coordinates": "input_time"},
        ),
        "input_channel": (("input_channel",), np.array(inputs.names, dtype=object), {"long_name": "input name"}),
        "input_kind": (
            ("input_channel",),
            np.array(inputs.kinds, dtype=object),
            {"long_name": "interpolation of each input channel (constant, linear, cubic)"},
        ),
        "input_units": (("input_channel",), np.array(inputs.units, dtype=object), {"long_name": "input units"}),
    }
    b = inputs.boluses
    if b is not None:
        var["bolus_time"] = (
            ("trajectory", "bolus"),
            b.times.detach().cpu().numpy(),
            {"units": time_units, "long_name": "bolus times"},
        )
        var["bolus_amount"] = (
            ("trajectory", "bolus"),
            b.amounts.detach().cpu().numpy(),
            {"long_name": "bolus amounts"},
        )
        var["bolus_index"] = (
            ("trajectory", "bolus"),
            b.index.detach().cpu().numpy().astype(np.int64),
            {"long_name": "state component each bolus adds to"},
        )
    return var


def _read_inputs(
    vars_: Mapping[str, _Var], get: Callable[[str, tuple[str, ...]], _Var], read: Callable, N: int, limits, source: str
) -> Inputs | None:
    """The optional external inputs of a file (``None`` when it has none), validated like :class:`Inputs`."""
    if "input_time" not in vars_:
        return None
    max_bytes, max_elements = limits
    time_v = get("input_time", ("trajectory", "input_obs"))
    value_v = get("input_value", ("trajectory", "input_obs", "input_channel"))
    names_v = get("input_channel", ("input_channel",))
    kinds_v = get("input_kind", ("input_channel",))
    units_v = get("input_units", ("input_channel",))
    K = time_v.shape[1] if len(time_v.shape) == 2 else -1
    C = names_v.shape[0] if len(names_v.shape) == 1 else -1
    if time_v.shape != (N, K) or value_v.shape != (N, K, C) or kinds_v.shape != (C,) or units_v.shape != (C,):
        raise _fail(
            source,
            f"external input variables have inconsistent shapes: input_time {time_v.shape}, input_value "
            f"{value_v.shape}, input_channel {names_v.shape}, input_kind {kinds_v.shape}, input_units "
            f"{units_v.shape}; expected (N, K), (N, K, C), (C,), (C,), (C,) with N = {N}.",
        )
    if time_v.kind != "f" or value_v.kind != "f":
        raise _fail(source, "input_time and input_value must be floating point.")
    for name, v in (("input_channel", names_v), ("input_kind", kinds_v), ("input_units", units_v)):
        if v.kind not in "OSU":
            raise _fail(source, f"variable {name!r} must hold strings, got dtype kind {v.kind!r}.")
    names = ["bolus_time", "bolus_amount", "bolus_index"] if "bolus_time" in vars_ else []
    total = time_v.nbytes + value_v.nbytes + sum(vars_[n].nbytes for n in names)
    if N * K * max(C, 1) > max_elements or total > max_bytes:
        raise _fail(source, f"the external inputs declare {N:,} x {K:,} x {C:,} values, beyond the limits.")
    boluses = None
    if names:
        bt_v = get("bolus_time", ("trajectory", "bolus"))
        ba_v = get("bolus_amount", ("trajectory", "bolus"))
        bi_v = get("bolus_index", ("trajectory", "bolus"))
        if not (bt_v.shape == ba_v.shape == bi_v.shape) or len(bt_v.shape) != 2 or bt_v.shape[0] != N:
            raise _fail(source, f"bolus variables must all have shape (trajectory, bolus) with N = {N}.")
        if bi_v.kind not in "iu":
            raise _fail(source, "bolus_index must hold integers (state components).")
        try:
            boluses = Boluses(
                torch.from_numpy(np.asarray(read("bolus_time", bt_v), dtype=np.float64)),
                torch.from_numpy(np.asarray(read("bolus_amount", ba_v), dtype=np.float64)),
                torch.from_numpy(np.asarray(read("bolus_index", bi_v), dtype=np.int64)),
            )
        except (ValueError, TypeError) as err:
            raise _fail(source, f"invalid boluses: {err}") from None
    text = [
        [_text(x, f"{name}[{k}]", source) for k, x in enumerate(read(name, v).tolist())]
        for name, v in (("input_channel", names_v), ("input_kind", kinds_v), ("input_units", units_v))
    ]
    try:
        inputs = Inputs(
            torch.from_numpy(np.ascontiguousarray(_fill_nan(read("input_time", time_v), time_v))),
            torch.from_numpy(np.ascontiguousarray(_fill_nan(read("input_value", value_v), value_v))),
            text[1],
            names=text[0],
            units=text[2],
            boluses=boluses,
        )
    except (ValueError, TypeError) as err:
        raise _fail(source, f"invalid external inputs: {err}") from None
    if boluses is not None:
        boluses.batched = True
    inputs.batched = True
    return inputs


def _fail(source: str, message: str) -> TrajectoryFileError:
    return TrajectoryFileError(f"{source}: {message}")


def parse_json(text: Any, what: str, *, max_chars: int = MAX_JSON_CHARS, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse the JSON text of an attribute with bounded size and nesting depth (never ``eval``, never unpickle).

    Parameters
    ----------
    text
        The attribute value (``str``, or UTF-8 ``bytes``).
    what
        Names the attribute in error messages (e.g. ``"metadata[3]"``).
    max_chars, max_depth
        Limits on the length of the text and on the nesting depth of its arrays and objects.

    Raises
    ------
    ValueError
        Not text, not UTF-8, too long, nested too deep, or not valid JSON (the message says which).
    """
    if isinstance(text, (bytes, np.bytes_)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as err:
            raise ValueError(f"{what} is not UTF-8 text ({err}).") from None
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a JSON string, got {type(text).__name__}.")
    if len(text) > max_chars:
        raise ValueError(f"{what} is {len(text):,} characters of JSON, more than the limit of {max_chars:,}.")
    # Nesting depth outside string literals, measured before parsing (json.loads recurses once per level).
    skeleton = _JSON_STRING.sub("", text)
    if skeleton:
        codes = np.frombuffer(skeleton.encode("utf-8", "surrogatepass"), dtype=np.uint8)
        step = np.isin(codes, _OPEN).astype(np.int64) - np.isin(codes, _CLOSE).astype(np.int64)
        depth = int(np.cumsum(step).max(initial=0))
        if depth > max_depth:
            raise ValueError(
                f"{what} nests JSON arrays/objects {depth} levels deep, more than the limit of {max_depth}; "
                "metadata should be a flat object of numbers, strings and short lists."
            )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"{what} is not valid JSON ({err}).") from None


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = np.frombuffer(b"[{", dtype=np.uint8)
_CLOSE = np.frombuffer(b"]}", dtype=np.uint8)


@dataclass
class _Var:
    """A variable of a file, described before it is read: dims, declared shape and item size, lazy access."""

    dims: tuple[str, ...]
    shape: tuple[int, ...]
    itemsize: int
    kind: str
    read: Callable[[], np.ndarray]
    attr: Callable[[str], Any]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.itemsize


def _text(x: Any, what: str, source: str) -> str:
    """A string value of a file (bytes are decoded as UTF-8) without NUL characters."""
    if isinstance(x, (bytes, np.bytes_)):
        try:
            x = bytes(x).decode("utf-8")
        except UnicodeDecodeError:
            raise _fail(source, f"{what} is not UTF-8 text: {bytes(x)[:40]!r}.") from None
    if not isinstance(x, str):
        raise _fail(source, f"{what} must be a string, got {type(x).__name__}.")
    if "\x00" in x:
        raise _fail(source, f"{what} contains a NUL character: {x[:40]!r}.")
    return x


def _check_sizes(vars_: Mapping[str, _Var], names: list[str], N: int, T: int, D: int, limits, source: str) -> None:
    """Refuse files whose schema variables declare more than ``limits = (max_bytes, max_elements)``."""
    max_bytes, max_elements = limits
    elements = N * T * D
    total = sum(vars_[n].nbytes for n in names) + elements * 9  # + the stacked values (float64) and bool mask
    if elements > max_elements or total > max_bytes:
        raise _fail(
            source,
            f"the file declares {N:,} trajectories x {T:,} times x {D:,} channels = {elements:,} values "
            f"(about {total / 2**30:.3g} GiB in memory), beyond the limit of {max_elements:,} values and "
            f"{max_bytes / 2**30:.3g} GiB (physnode.data.io.MAX_ELEMENTS / MAX_BYTES). For a trusted file and enough "
            "memory, pass larger max_elements= / max_bytes= to Trajectories.load.",
        )


def _from_vars(vars_: Mapping[str, _Var], gattr: Callable[[str], Any], source: str, limits) -> Trajectories:
    """Validate the schema and sizes, then read only the schema's variables and build :class:`Trajectories`.

    Shared by netCDF, HDF5 and xarray input. Declared shapes and item sizes are checked against ``limits``
    (``max_bytes, max_elements``) before any array is read; variables the schema does not name are never read.
    """
    max_bytes, max_elements = limits
    feature = gattr("featureType")
    if isinstance(feature, (bytes, np.bytes_)):
        feature = bytes(feature).decode("utf-8", "replace")
    if not isinstance(feature, str) or feature != "trajectory":
        raise _fail(source, f"global attribute featureType is {feature!r}; expected 'trajectory'.")

    def get(name: str, dims: tuple[str, ...]) -> _Var:
        if name not in vars_:
            raise _fail(source, f"missing variable {name!r} required by the physnode trajectory schema.")
        v = vars_[name]
        if tuple(v.dims) != dims:
            raise _fail(source, f"variable {name!r} has dims {tuple(v.dims)}; expected {dims}.")
        if len(v.shape) != len(dims):
            raise _fail(source, f"variable {name!r} has {len(v.shape)} axes but names dims {tuple(v.dims)}.")
        return v

    def read(name: str, v: _Var) -> np.ndarray:
        try:
            return np.asarray(v.read())
        except MemoryError:
            raise _fail(source, f"not enough memory to read variable {name!r} of shape {v.shape}.") from None

    chan_v = get("channel", ("channel",))
    (D,) = chan_v.shape
    if D < 1 or D > min(max_elements, _MAX_CHANNELS) or chan_v.nbytes > max_bytes:
        raise _fail(source, f"the file declares {D:,} channels; expected between 1 and {_MAX_CHANNELS:,}.")
    if chan_v.kind not in "OSU":
        raise _fail(
            source, f"variable 'channel' must hold the channel names (strings), got dtype kind {chan_v.kind!r}."
        )
    channels = [_text(c, f"channel name {k}", source) for k, c in enumerate(read("channel", chan_v).tolist())]
    time_v = get("time", ("trajectory", "obs"))
    N, T = time_v.shape
    if time_v.kind != "f":
        raise _fail(source, f"variable 'time' must be floating point, got dtype kind {time_v.kind!r}.")
    for c in channels:
        if c in RESERVED_NAMES:
            raise _fail(source, f"channel name {c!r} is a variable of the schema; rename the channel.")
    col_vs = []
    for c in channels:
        v = get(c, ("trajectory", "obs"))
        if v.shape != (N, T):
            raise _fail(source, f"variable {c!r} has shape {v.shape}; expected (trajectory, obs) = {(N, T)}.")
        if v.kind != "f":
            raise _fail(source, f"channel variable {c!r} must be floating point, got dtype kind {v.kind!r}.")
        col_vs.append(v)
    if len({v.itemsize for v in col_vs}) != 1:
        raise _fail(source, f"channel variables have mixed dtypes (item sizes {sorted({v.itemsize for v in col_vs})}).")
    mask_v = get("mask", ("trajectory", "obs", "channel"))
    if mask_v.shape != (N, T, D):
        raise _fail(
            source,
            f"mask shape mismatch: 'mask' has shape {mask_v.shape} but the values have (trajectory, obs, channel) = "
            f"{(N, T, D)}.",
        )
    if mask_v.kind not in "iub":
        raise _fail(source, "variable 'mask' must hold only the flags 0 (missing) and 1 (observed).")
    ids_v = get("trajectory_id", ("trajectory",))
    meta_v = get("metadata", ("trajectory",))
    for name, v in (("trajectory_id", ids_v), ("metadata", meta_v)):
        if v.shape != (N,):
            raise _fail(source, f"variable {name!r} has shape {v.shape}; expected (trajectory,) = ({N},).")
    _check_sizes(vars_, ["time", *channels, "mask", "trajectory_id", "metadata"], N, T, D, limits, source)

    # Sizes are within the limits: read the schema's variables (and nothing else).
    time = read("time", time_v)
    cols = [_fill_nan(read(c, v), v) for c, v in zip(channels, col_vs, strict=True)]
    time = _fill_nan(time, time_v)
    mask = read("mask", mask_v)
    if not np.isin(mask, (0, 1)).all():
        raise _fail(source, "variable 'mask' must hold only the flags 0 (missing) and 1 (observed).")
    ids = [_text(s, f"trajectory_id[{i}]", source) for i, s in enumerate(read("trajectory_id", ids_v).tolist())]
    metadata = []
    for i, s in enumerate(read("metadata", meta_v).tolist()):
        try:
            m = parse_json(s, f"metadata[{i}]")
        except ValueError as err:
            raise _fail(source, str(err)) from None
        if not isinstance(m, dict):
            raise _fail(source, f"metadata[{i}] must be a JSON object, got {type(m).__name__}.")
        metadata.append(m)
    raw_attrs = gattr("physnode_attrs")
    try:
        gattrs = parse_json("{}" if raw_attrs is None else raw_attrs, "global attribute physnode_attrs")
    except ValueError as err:
        raise _fail(source, str(err)) from None
    if not isinstance(gattrs, dict):
        raise _fail(source, "global attribute physnode_attrs must be a JSON object.")
    units = [_units(vars_[c], f"units of channel {c!r}", source) for c in channels]
    time_units = _units(time_v, "units of 'time'", source)
    inputs = _read_inputs(vars_, get, read, N, limits, source)
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
            units=units,
            time_units=time_units,
            metadata=metadata,
            attrs=gattrs,
            ids=ids,
            inputs=inputs,
        )
    except (ValueError, TypeError) as err:
        raise _fail(source, f"invalid trajectory data: {err}") from None


def _units(v: _Var, what: str, source: str) -> str:
    """The ``units`` attribute of a variable (``"1"`` when absent), as checked text."""
    u = v.attr("units")
    return "1" if u is None else _text(u, what, source)


def _fill_nan(a: np.ndarray, v: _Var) -> np.ndarray:
    """Floating array with its ``_FillValue`` / ``missing_value`` entries (when not NaN already) set to NaN."""
    for key in ("_FillValue", "missing_value"):
        fv = v.attr(key)
        if fv is None:
            continue
        fv = np.asarray(fv).reshape(-1)
        if fv.size == 1 and fv.dtype.kind == "f" and not np.isnan(fv[0]):
            a = np.where(a == fv[0], np.nan, a)
    return a


# ---------------------------------------------------------------------------------------------- xarray
def to_xarray(traj: Trajectories):
    """The CF trajectory :class:`xarray.Dataset` of ``traj`` (NaN fill at padded times and missing values)."""
    import xarray as xr

    var, attrs = _arrays(traj)
    coords = {k: var[k] for k in ("time", "channel", "input_channel") if k in var}
    data = {k: v for k, v in var.items() if k not in coords}
    return xr.Dataset(data_vars=data, coords=coords, attrs=attrs)


def from_xarray(
    ds, *, source: str = "dataset", max_bytes: int = MAX_BYTES, max_elements: int = MAX_ELEMENTS
) -> Trajectories:
    """Validate an :class:`xarray.Dataset` in the physnode CF trajectory layout and build :class:`Trajectories`.

    Only the schema's variables are read (a lazily opened dataset loads nothing else), after their declared
    sizes are checked against ``max_bytes`` / ``max_elements`` (see :func:`load`).

    Raises
    ------
    TrajectoryFileError
        Missing variables, wrong dimensions, sizes beyond the limits, NaN or non-increasing times, mask/value
        mismatches, bad JSON.
    """
    import xarray as xr

    if not isinstance(ds, xr.Dataset):
        raise TypeError(f"from_xarray expects an xarray.Dataset, got {type(ds).__name__}.")

    def describe(v) -> _Var:
        return _Var(
            dims=tuple(map(str, v.dims)),
            shape=tuple(int(n) for n in v.shape),
            itemsize=max(int(v.dtype.itemsize), 1),
            kind=v.dtype.kind,
            read=lambda: np.asarray(v.values),
            attr=lambda key: v.attrs.get(key),
        )

    vars_ = {str(k): describe(v) for k, v in ds.variables.items()}
    return _from_vars(vars_, lambda key: ds.attrs.get(key), source, _limits(max_bytes, max_elements))


def _limits(max_bytes: int, max_elements: int) -> tuple[int, int]:
    for name, v in (("max_bytes", max_bytes), ("max_elements", max_elements)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}.")
    return max_bytes, max_elements


# ---------------------------------------------------------------------------------------------- files
def _as_path(path: object) -> Path:
    """``Path(path)`` for a ``str`` or ``os.PathLike``; anything else is refused with what was received."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike of a .nc or .h5 file, got {type(path).__name__}.")
    return Path(path)


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


def _h5_attr(obj, key: str) -> Any:
    """Attribute ``key`` of an h5py object (``None`` when absent); strings decoded later by the schema checks."""
    try:
        return obj.attrs[key] if key in obj.attrs else None
    except (OSError, TypeError, KeyError) as err:
        raise ValueError(f"attribute {key!r} cannot be read ({err})") from None


def _read_h5(path: Path, limits: tuple[int, int]) -> Trajectories:
    import h5py

    source = str(path)
    with h5py.File(path, "r") as f:
        vars_ = {}
        for name in f:
            obj = f.get(name, getlink=False)
            if not isinstance(obj, h5py.Dataset):
                continue
            dims = _h5_attr(obj, "dimensions")
            dims = _text(dims, f"the 'dimensions' attribute of {name!r}", source) if dims is not None else None
            if obj.shape is None:  # an empty (null) dataspace
                shape: tuple[int, ...] = ()
            else:
                shape = tuple(int(n) for n in obj.shape)

            def read(ds=obj) -> np.ndarray:
                if h5py.check_string_dtype(ds.dtype) is not None:
                    return np.asarray(ds[()], dtype=object)
                return np.asarray(ds[()])

            kind = "O" if h5py.check_string_dtype(obj.dtype) is not None else obj.dtype.kind
            vars_[name] = _Var(
                dims=tuple(dims.split()) if dims is not None else ("<no 'dimensions' attribute>",),
                shape=shape,
                itemsize=max(int(obj.dtype.itemsize), 1),
                kind=kind,
                read=read,
                attr=lambda key, ds=obj: _h5_attr(ds, key),
            )
        return _from_vars(vars_, lambda key: _h5_attr(f, key), source, limits)


def _open_h5netcdf(path: Path):
    """``h5netcdf.File(path, "r")``; on a corrupt file, a :class:`TrajectoryFileError` without the noise that the
    half-built ``File``'s ``__del__`` would print on stderr (an ignored ``AttributeError``)."""
    import h5netcdf

    previous = sys.unraisablehook

    def quiet(info) -> None:
        where = str(getattr(getattr(info, "object", None), "__module__", ""))
        if not (isinstance(info.exc_value, AttributeError) and where.startswith("h5netcdf")):
            previous(info)

    failure = None
    sys.unraisablehook = quiet
    try:
        try:
            return h5netcdf.File(path, "r")
        except Exception as err:  # h5py / h5netcdf raise OSError, KeyError, RuntimeError, ValueError, ...
            failure = f"{type(err).__name__}: {' '.join(str(err).split())}"
        gc.collect()  # the half-built File is released here, quietly
    finally:
        sys.unraisablehook = previous
    raise TrajectoryFileError(
        f"{path}: cannot read the file as netCDF4 (truncated, corrupt or not a physnode trajectory file): {failure}"
    )


def _read_nc(path: Path, limits: tuple[int, int]) -> Trajectories:
    """netCDF4 through h5netcdf, opened lazily: only the schema's variables are read, after the size checks."""
    source = str(path)
    with _open_h5netcdf(path) as f:
        vars_ = {}
        for name, v in f.variables.items():
            kind = "O" if v.dtype == object or v.dtype.kind in "SU" else v.dtype.kind
            vars_[str(name)] = _Var(
                dims=tuple(map(str, v.dimensions)),
                shape=tuple(int(n) for n in v.shape),
                itemsize=max(int(getattr(v.dtype, "itemsize", 8) or 8), 1),
                kind=kind,
                read=lambda v=v: np.asarray(v[...]),
                attr=lambda key, v=v: v.attrs.get(key),
            )
        return _from_vars(vars_, lambda key: f.attrs.get(key), source, limits)


def save(traj: Trajectories, path: str | os.PathLike) -> None:
    """Write ``traj`` atomically: ``.nc`` through xarray's h5netcdf engine, ``.h5`` / ``.hdf5`` through h5py."""
    if not isinstance(traj, Trajectories):
        raise TypeError(f"save expects a Trajectories object, got {type(traj).__name__}.")
    path = _as_path(path)
    if _suffix(path) in _NC_SUFFIXES:
        ds = to_xarray(traj)
        _atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="h5netcdf"))
    else:
        _atomic_write(path, lambda tmp: _write_h5(traj, tmp))


def load(path: str | os.PathLike, *, max_bytes: int = MAX_BYTES, max_elements: int = MAX_ELEMENTS) -> Trajectories:
    """Read and validate a trajectory file written by :func:`save`.

    The schema and the declared sizes (shape x item size, from the file's metadata) are checked before any data
    is read, and only the variables the schema names are read: a small file that declares a huge (e.g.
    compressed) array is refused rather than decompressed.

    Parameters
    ----------
    path
        A ``.nc`` (netCDF4) or ``.h5`` / ``.hdf5`` file.
    max_bytes
        Largest in-memory size of the schema's variables, in bytes (default :data:`MAX_BYTES`, 2 GiB).
    max_elements
        Largest number of values ``N x T x D`` (default :data:`MAX_ELEMENTS`, 1e8).

    Raises
    ------
    FileNotFoundError
        No such file.
    TrajectoryFileError
        The file is truncated, corrupt, not HDF5/netCDF4, declares sizes beyond the limits, or does not follow
        the schema (the message says which variable or check failed).
    """
    limits = _limits(max_bytes, max_elements)
    path = _as_path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no trajectory file at {path}.")
    reader = _read_nc if suffix in _NC_SUFFIXES else _read_h5
    try:
        return reader(path, limits)
    except TrajectoryFileError:
        raise
    except MemoryError:
        raise TrajectoryFileError(f"{path}: not enough memory to read the file.") from None
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError) as err:
        msg = " ".join(str(err).split())
        raise TrajectoryFileError(
            f"{path}: cannot read the file as {'netCDF4' if suffix == '.nc' else 'HDF5'} (truncated, corrupt or not "
            f"a physnode trajectory file): {type(err).__name__}: {msg}"
        ) from None
