"""The dataset cards (datasets/NAME.md, shown on the site) state the counts of their stored files.

(That each card is what ``python -m physnode.datasets.regenerate --cards`` writes is tested in
tests/data/test_datasets_reference.py.)
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from physnode.data import Trajectories
from physnode.datasets.regenerate import REFERENCE

FOLDER = Path(__file__).resolve().parents[2] / "datasets"
NAMES = sorted(REFERENCE)

# "... holds 4 trajectories with 32 to 52 times (per trajectory: 52, 32, 33, 35), 10 channels (x1, ...), 300 of
# 340 values observed." or "... holds 1 trajectory with 101 times, 9 channels (...), 909 of 909 values observed."
HOLDS = re.compile(
    r"holds (?P<n>\d+) trajector(?:y|ies) with (?:(?P<lo>\d+) to (?P<hi>\d+) times \(per trajectory: "
    r"(?P<lengths>[\d, ]+)\)|(?P<each>\d+) times?(?: each)?), (?P<d>\d+) channels? \((?P<channels>[^)]*)\), "
    r"(?P<observed>\d+) of (?P<total>\d+) values observed"
)


@pytest.mark.parametrize("name", NAMES)
def test_card_counts_match_the_file(name: str) -> None:
    text = (FOLDER / f"{name}.md").read_text(encoding="utf-8")
    traj = Trajectories.load(FOLDER / f"{name}.nc")
    match = HOLDS.search(text)
    assert match, f"datasets/{name}.md does not state what {name}.nc holds"
    lengths = [int(n) for n in traj.lengths.tolist()]
    assert int(match["n"]) == traj.n_trajectories
    if match["lengths"] is not None:
        assert [int(n) for n in match["lengths"].split(",")] == lengths
        assert (int(match["lo"]), int(match["hi"])) == (min(lengths), max(lengths))
    else:
        assert lengths == [int(match["each"])] * traj.n_trajectories
    assert int(match["d"]) == traj.n_channels
    assert match["channels"].split(", ") == list(traj.channels)
    valid = traj.mask & traj.time_mask.unsqueeze(-1)
    assert (int(match["observed"]), int(match["total"])) == (int(valid.sum()), sum(lengths) * traj.n_channels)
    # No count of the generator's defaults may be mistaken for the file's: those are introduced as such.
    assert "Generator defaults, i.e. what" in text


def test_three_body_card_states_the_file_not_the_generator_defaults() -> None:
    # The reported case: the card read "1 trajectories, 1999 times" for a file with 101 stored times.
    text = (FOLDER / "three_body.md").read_text(encoding="utf-8")
    assert "holds 1 trajectory with 101 times," in text
    assert "1 trajectories" not in text
    reference = text[text.index("## Reference file") :]
    assert "1999" not in reference
