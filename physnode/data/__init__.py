"""Trajectory data: irregular sampling, per-channel masks, external inputs, CF netCDF / HDF5 files and batching."""

from __future__ import annotations

from .batching import TrajectoryDataset, collate_trajectories
from .inputs import Boluses, Inputs
from .io import TrajectoryFileError, from_xarray, load, save, to_xarray
from .trajectories import Trajectories, solver_ready_times

__all__ = [
    "Boluses",
    "Inputs",
    "Trajectories",
    "TrajectoryDataset",
    "TrajectoryFileError",
    "collate_trajectories",
    "from_xarray",
    "load",
    "save",
    "solver_ready_times",
    "to_xarray",
]
