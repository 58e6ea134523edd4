"""The pkpd zoo dataset: determinism, schema, hidden process, schedules from metadata."""

from __future__ import annotations

import pytest
import torch

from physnode.datasets import DATASETS, make
from physnode.latent import TreatmentSchedule


def test_pkpd_is_registered_and_documented_in_metadata():
    """(Determinism is checked by the reference-file tests: a fresh generation equals datasets/pkpd.nc.)"""
    assert "pkpd" in DATASETS
    a = make("pkpd", n_trajectories=2, n_times=4, t_span=(0.0, 3.0), seed=2)
    assert a.channels == ["score", "marker"] and a.time_units == "day"
    assert bool((a.times[a.time_mask] > 0).all())
    m = a.metadata[0]
    assert set(m["parameters"]) >= {"CL", "V1", "EC50"} and m["initial_state"][:2] == [0.0, 0.0]
    s = TreatmentSchedule.from_metadata(a)
    assert s.n_trajectories == 2 and float(s.levels.max()) > 0
    with pytest.raises(ValueError, match="observe must name"):
        make("pkpd", observe=["A1"])


def test_pkpd_biomarkers_carry_the_hidden_process():
    """Without noise, ``score - R`` is the hidden state M1, not zero: the expert states alone cannot explain it."""
    d = make("pkpd", n_trajectories=3, n_times=4, t_span=(0.0, 2.0), noise=0.0, missing=0.0, seed=1)
    m1 = torch.tensor([m["initial_state"][3] for m in d.metadata])
    assert float(m1.abs().max()) > 0.05
    assert bool(torch.isfinite(d.values[d.mask]).all())
