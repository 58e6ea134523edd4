"""``physnode bench observations`` runs end to end in quick mode and prints its table (no timing asserted)."""

from __future__ import annotations

import pytest
from test_bench import as_float, parse_markdown

from physnode import bench
from physnode.bench import observations


def test_observations_quick_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["observations", "--quick", "--markdown", "--counts", "30", "--skip", "torchdiffeq"]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    assert list(rows[0]) == list(observations.COLUMNS)
    ours = {r["outputs"]: r for r in rows if r["library"] == "physnode"}
    assert set(ours) == {
        "land",
        "interpolate",
        "interpolate+step_grad",
        "interpolate+step_grad+integral",
        "torchode's configuration",
    }
    # Interpolation takes fewer steps than landing on 29 intervals at rtol 1e-5 (about 100 vs 170 NFE).
    assert int(ours["interpolate"]["NFE fwd"]) < int(ours["land"]["NFE fwd"])
    for r in ours.values():
        # rtol=atol=1e-5 against the 1e-12 reference: a loose but failing-when-wrong bound on states and gradient.
        assert as_float(r["err ys"]) < 1e-3 and as_float(r["err grad"]) < 1e-3
    torchode = [r for r in rows if r["library"] == "torchode"]
    assert len(torchode) == 1
    if torchode[0]["forward"] != "not installed":
        assert ours["interpolate"]["fwd / torchode"] not in ("", "-")
        # torchode's configuration takes torchode's steps (same embedded estimate and controller): the NFE of the
        # forward solve differ only by the starting evaluations (1041 vs 1040 at rtol 1e-7), not by a step.
        assert abs(int(ours["torchode's configuration"]["NFE fwd"]) - int(torchode[0]["NFE fwd"])) <= 6
    assert not any(r["library"] == "torchdiffeq" for r in rows)


def test_observations_bad_counts() -> None:
    with pytest.raises(SystemExit, match="--counts needs numbers of observations >= 2"):
        observations.run(["--quick", "--counts", "1"])
    with pytest.raises(SystemExit, match="comma-separated integers"):
        observations.run(["--quick", "--counts", "ten"])
