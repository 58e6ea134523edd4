"""``physnode bench stiff --quick`` runs end to end and prints one row per solver and problem (no timing asserted)."""

from __future__ import annotations

import re

import pytest

from physnode import bench


def _rows(text: str) -> list[dict[str, str]]:
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (c.strip() for c in re.split(r"(?<!\\)\|", ln.strip("|"))), strict=True)) for ln in lines[2:]
    ]


def test_stiff_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["list"]) == 0
    assert "stiff" in capsys.readouterr().out


def test_quick_stiff_bench_table(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("scipy")
    assert bench.main(["stiff", "--quick", "--markdown", "--problems", "robertson"]) == 0
    rows = _rows(capsys.readouterr().out)
    assert {(r["library"], r["method"]) for r in rows} == {
        ("physnode", "kvaerno3"), ("physnode", "kvaerno4"), ("physnode", "kvaerno5"), ("physnode", "rodas4"),
        ("scipy", "Radau"), ("scipy", "BDF"), ("scipy", "LSODA"),
    }  # fmt: skip
    for r in rows:
        assert int(r["NFE"]) > 0 and int(r["LU"]) > 0, r
        # Every solver at rtol=1e-6 against the rtol=1e-10 reference: far below 1 when it solved the problem.
        assert float(r["error"]) < 1e-3, r


def test_unknown_problem_is_a_usage_error() -> None:
    with pytest.raises(SystemExit, match="--problems: unknown"):
        bench.main(["stiff", "--quick", "--problems", "brusselator"])
