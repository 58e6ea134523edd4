"""``physnode demo``: the orbit it solves is the ACA three-body orbit of the dataset zoo."""

from __future__ import annotations

import json

import matplotlib.image as mpimg

from physnode.cli import main


def test_demo_writes_the_orbit_and_summary(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--t-end", "0.5"]) == 0
    assert "solved 2 three-body trajectories" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["accepted_steps"]) == 2 and all(n > 10 for n in summary["accepted_steps"])
    image = mpimg.imread(out / "orbit.png")
    assert image.shape[0] > 100 and image.std() > 0.01  # a real, non-blank figure


def test_demo_rejects_a_negative_end_time(capsys):
    assert main(["demo", "--t-end", "-1"]) == 1
    assert "--t-end must be positive" in capsys.readouterr().err
