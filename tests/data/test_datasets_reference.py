"""The reference files in datasets/: size, cards, exact digests of the stored files, and a fresh generation.

The stored files are checked bit for bit (their data digest equals ``SHA256SUMS``). A fresh generation is a new
floating-point computation, whose last bits depend on the CPU, so it is compared with the stored file within
:data:`physnode.datasets.regenerate.FRESH_RTOL` (ten times the reference solver's rtol; see there why).
"""

from __future__ import annotations

import functools

import pytest

from physnode.data import Trajectories
from physnode.datasets import DATASETS
from physnode.datasets.regenerate import FRESH_RTOL, REFERENCE, card, default_folder, differences, main, read_sums
from physnode.datasets.regenerate import reference as _reference

FOLDER = default_folder()
SUMS = read_sums(FOLDER / "SHA256SUMS")


@functools.cache
def reference(name: str) -> Trajectories:
    """Fresh generation with the reference options (generated once per test session)."""
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
def test_stored_file_matches_sha256sums(name):
    """Exact check of a stored file: its data digest is the one recorded in SHA256SUMS."""
    stored = Trajectories.load(FOLDER / f"{name}.nc")
    assert stored.digest() == SUMS[f"{name}.nc"], (
        f"datasets/{name}.nc does not match SHA256SUMS: the file was changed without regenerating; run "
        "python -m physnode.datasets.regenerate"
    )


@pytest.mark.parametrize("name", list(REFERENCE))
def test_fresh_generation_matches_stored_file_within_round_off(name):
    """A fresh generation equals the stored file up to FRESH_RTOL (names, masks and lengths exactly)."""
    stored = Trajectories.load(FOLDER / f"{name}.nc")
    problems = differences(reference(name), stored)
    assert not problems, (
        f"a fresh generation of {name!r} differs from datasets/{name}.nc beyond round-off:\n  "
        + "\n  ".join(problems)
        + "\nIf the change is intended (a solver or generator change), run python -m physnode.datasets.regenerate"
    )


def _perturbed(traj: Trajectories, rel: float) -> Trajectories:
    """``traj`` with every value multiplied by ``1 + rel``."""
    return Trajectories(
        traj.times.clone(),
        traj.values * (1 + rel),
        mask=traj.mask.clone(),
        lengths=traj.lengths.clone(),
        channels=list(traj.channels),
        units=list(traj.units),
        time_units=traj.time_units,
        ids=list(traj.ids),
        metadata=traj.metadata,
        attrs=traj.attrs,
    )


def test_differences_tolerates_round_off_and_names_real_changes():
    """The comparison passes a last-bit change and reports a change above the tolerance with channel and size."""
    stored = Trajectories.load(FOLDER / "pendulum.nc")
    assert differences(_perturbed(stored, 4e-16), stored) == []
    problems = differences(_perturbed(stored, 100 * FRESH_RTOL), stored)
    assert problems and all("channel" in p and "max |difference|" in p for p in problems), problems
    shifted = _perturbed(stored, 0.0)
    shifted.mask[0, 0, 0] = ~shifted.mask[0, 0, 0]
    assert any(p.startswith("mask: 1 entries differ") for p in differences(shifted, stored))


def test_regenerate_check_passes_on_stored_files(capsys):
    """``python -m physnode.datasets.regenerate --check`` exits 0 and prints OK for a dataset."""
    assert main(["--check", "kepler"]) == 0
    assert "kepler: OK" in capsys.readouterr().out


@pytest.mark.parametrize("name", list(REFERENCE))
def test_stored_card_is_the_card_of_the_stored_file(name):
    """``datasets/NAME.md`` is what ``regenerate --cards`` writes from the stored file and its digest."""
    stored = Trajectories.load(FOLDER / f"{name}.nc")
    assert (FOLDER / f"{name}.md").read_text() == card(name, stored, SUMS[f"{name}.nc"])


def test_regenerate_cards_writes_only_cards(tmp_path, capsys):
    """``--cards`` rewrites NAME.md from the stored NAME.nc and leaves the data file and SHA256SUMS alone."""
    for f in ("kepler.nc", "SHA256SUMS"):
        (tmp_path / f).write_bytes((FOLDER / f).read_bytes())
    before = {f: (tmp_path / f).read_bytes() for f in ("kepler.nc", "SHA256SUMS")}
    assert main(["--out", str(tmp_path), "--cards", "kepler"]) == 0
    assert (tmp_path / "kepler.md").read_text() == (FOLDER / "kepler.md").read_text()
    assert {f: (tmp_path / f).read_bytes() for f in before} == before
    assert main(["--out", str(tmp_path), "--cards", "pendulum"]) == 1
    assert "pendulum.nc or its SHA256SUMS line is missing" in capsys.readouterr().out
