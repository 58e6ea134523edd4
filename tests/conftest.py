"""Shared fixtures: devices, dtypes and deterministic seeding; the lists of everything the tests run through.

The one list of every solver, gradient method, physics model and dataset lives in ``tests/registries.py``
(``ALL_SOLVERS``, ``ADAPTIVE``, ``FIXED``, ``IMPLICIT``, ``RK``, ``ALL_GRADIENTS``, ``EXACT_GRADIENTS``,
``solver_for(grad)``, ``PHYSICS_MODELS``, ``DATASETS``), read from the package's registries; it is re-exported
here. Test modules import it from ``registries`` (``from conftest import ...`` is unreliable: pytest imports
every ``conftest.py`` under that one module name).
"""

from __future__ import annotations

import pytest
import torch
from registries import (  # noqa: F401 - re-exported: the one list (see the module docstring)
    ADAPTIVE,
    ALL_GRADIENTS,
    ALL_SOLVERS,
    DATASETS,
    EXACT_GRADIENTS,
    FIXED,
    IMPLICIT,
    PHYSICS_MODELS,
    RK,
    solver_for,
)

torch.set_num_threads(1)

#: Every available device; the CUDA parameter carries the ``cuda`` mark, so ``pytest -m cuda`` (``make test-gpu``)
#: runs every device-parametrised test on the GPU.
DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.cuda)] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> torch.device:
    """Every available device: CPU always, CUDA when present."""
    return torch.device(request.param)


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """Both supported floating-point dtypes."""
    return request.param


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
