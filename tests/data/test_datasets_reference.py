"""The reference files in datasets/: size, cards, and data digests against SHA256SUMS and a fresh generation."""

from __future__ import annotations

import functools

import pytest
import torch

from physnode.data import Trajectories
from physnode.datasets import DATASETS
from physnode.datasets.regenerate import REFERENCE, default_folder, read_sums
from physnode.datasets.regenerate import reference as _reference

FOLDER = default_folder()
SUMS = read_sums(FOLDER / "SHA256SUMS")


@functools.cache
def reference(name: str):
    """Fresh generation with the reference options (shared by the two checks below to keep the file fast)."""
    return _reference(name)


def test_every_dataset_has_reference_card_and_sum():
    assert set(REFERENCE) == set(DATASETS)
    for name in DATASETS:
        nc = FOLDER / f"{name}.nc"
        assert nc.is_file() and nc.stat().st_size <= 1_000_000
        card = (FOLDER / f"{name}.md").read_text()
        for section in ("## System", "## Parameters", "## Sampling", "## Regenerate"):
            assert section in card, (name, section)
        assert f"{name}.nc" in SUMS


@pytest.mark.parametrize("name", list(REFERENCE))
def test_reference_file_and_fresh_generation_match_sha256sums(name):
    """Exact check: the stored file's data digest and a fresh generation's digest both equal SHA256SUMS.

    The digest covers the solver output bit for bit, so any change of the solver's step sequence (controller,
    tableau, ordering of floating-point operations) changes it; the test below then tells whether the change is
    round-off (regenerate with ``python -m physnode.datasets.regenerate``) or a real change of the data.
    """
    stored = Trajectories.load(FOLDER / f"{name}.nc")
    assert stored.digest() == SUMS[f"{name}.nc"], "the reference file does not match SHA256SUMS"
    fresh = reference(name)
    diff = float((fresh.values - stored.values).abs().max()) if fresh.values.shape == stored.values.shape else None
    assert fresh.digest() == SUMS[f"{name}.nc"], (
        f"a fresh generation differs from the reference (max |value difference| = {diff}); if the change is "
        "intended (e.g. a solver change), run python -m physnode.datasets.regenerate"
    )
    assert fresh.identical(stored)


@pytest.mark.parametrize("name", list(REFERENCE))
def test_fresh_generation_within_solver_tolerance_of_reference(name):
    """Robust check: times, masks, metadata equal and values within 1e-8 (solve at rtol 1e-10)."""
    stored = Trajectories.load(FOLDER / f"{name}.nc")
    fresh = reference(name)
    assert fresh.channels == stored.channels and fresh.metadata == stored.metadata and fresh.attrs == stored.attrs
    assert torch.equal(fresh.times, stored.times) and torch.equal(fresh.mask, stored.mask)
    assert float((fresh.values - stored.values).abs().max()) < 1e-8
