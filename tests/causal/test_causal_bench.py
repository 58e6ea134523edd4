"""``physnode bench causal``: the quick table, and (slow) the bars of the full benchmark on GLV."""

from __future__ import annotations

import contextlib
import functools
import io

import pytest

from physnode import bench
from physnode.bench import causal as causal_bench


def parse(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    return [dict(zip(head, [c.strip() for c in ln.strip("|").split("|")], strict=True)) for ln in lines[2:]]


def test_quick_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["causal", "--quick", "--markdown", "--systems", "glv-10"]) == 0
    out = capsys.readouterr().out
    rows = parse(out)
    assert [r["method"] for r in rows][:2] == ["structured+prox", "unregularised"]
    assert rows[2]["method"].startswith("lasso")
    for r in rows:
        assert 0.0 <= float(r["AUROC"]) <= 1.0 and int(r["SHD"]) >= 0 and float(r["int. err"]) >= 0
        assert float(r["val. err"]) >= 0
    assert rows[1]["vs unreg."] == "1.00×"
    # the choices made on the validation trajectories are reported
    assert "seed 0:" in out and "selected λ = " in out and "λ_r = " in out


def test_selection_takes_the_largest_weight_within_the_tolerance() -> None:
    # validation errors along increasing weights; the best is 1.0, the tolerance 10 %: 1.05 qualifies, 1.2 not
    assert causal_bench._select([3.0, 1.0, 1.05, 1.2]) == 2
    assert causal_bench._select([float("inf"), 2.0]) == 1  # a failed forecast never wins
    assert causal_bench._select([1.0, 1.0 + 2 * causal_bench.TOLERANCE]) == 0


def test_bad_seeds_are_explained() -> None:
    with pytest.raises(SystemExit, match=r"--seeds: expected comma-separated integers.*got 'a'"):
        bench.main(["causal", "--quick", "--seeds", "a"])


def test_unknown_system_is_explained() -> None:
    with pytest.raises(SystemExit, match="unknown"):
        bench.main(["causal", "--quick", "--systems", "glv-11"])


@functools.cache
def glv_rows() -> dict[str, dict[str, str]]:
    """The full benchmark on the 10-species GLV, seed 0 (about 5.5 CPU minutes: a collocation path of five λ with
    relaxed refits, three λ_r candidates each fitted to the trajectories by L-BFGS, the unregularised network's
    collocation and L-BFGS fit), run once for the slow tests."""
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert bench.main(["causal", "--markdown", "--systems", "glv-10", "--seeds", "0"]) == 0
    return {r["method"]: r for r in parse(buf.getvalue())}


@pytest.mark.slow
def test_glv_structure_beats_the_unregularised_network() -> None:
    rows = glv_rows()
    # measured AUROC 0.969 vs 0.717, SHD 5 vs 68 in the documented run (docs/benchmarks.md)
    assert float(rows["structured+prox"]["AUROC"]) >= float(rows["unregularised"]["AUROC"]) + 0.1, rows
    assert int(rows["structured+prox"]["SHD"]) < int(rows["unregularised"]["SHD"]), rows


@pytest.mark.slow
def test_glv_auroc_bar() -> None:
    """The issue's bar: AUROC >= 0.95 on the 10-species GLV at 1 % noise, with λ chosen on observational validation
    trajectories (0.969, 0.964 and 1.000 on seeds 0, 1, 2 in the documented runs)."""
    assert float(glv_rows()["structured+prox"]["AUROC"]) >= 0.95


@pytest.mark.slow
def test_glv_interventional_bar() -> None:
    """The issue's bar: forecast error under the unseen interventions at least 5x lower than the unregularised
    network's (same size, same data, same collocation and L-BFGS trajectory stages). Seed 0 measured 1.43e-5 against
    5.22e-4, 36.6x (docs/benchmarks.md, with the other seeds)."""
    rows = glv_rows()
    assert float(rows["structured+prox"]["vs unreg."].rstrip("×")) >= 5.0, rows
    # and the selected model forecasts the observational validation trajectories at least as well (9.25e-5 vs 1.57e-4)
    assert float(rows["structured+prox"]["val. err"]) <= float(rows["unregularised"]["val. err"]), rows
