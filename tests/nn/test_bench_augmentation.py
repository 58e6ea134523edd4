"""``physnode bench augmentation``: the tasks, the quick table, and (slow) the accuracy bars of the full run."""

from __future__ import annotations

import re

import pytest
import torch

from physnode import bench
from physnode.bench import augmentation


def table_rows(text: str) -> list[dict[str, str]]:
    """Rows of the markdown table in ``text`` keyed by the header."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(lines) >= 3, f"no markdown table in:\n{text}"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln.strip("|"))]
        assert len(cells) == len(header), ln
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


@pytest.mark.parametrize("task", list(augmentation.TASKS))
def test_task_radii_and_balance(task: str) -> None:
    dim = augmentation.TASKS[task]
    x, y = augmentation.make_task(dim, 401, torch.Generator().manual_seed(0), torch.float64)
    assert x.shape == (401, dim) and y.shape == (401,)
    r = x.norm(dim=-1)
    assert int((y == 0).sum()) == 200
    assert bool((r[y == 0] < augmentation.R1).all())
    assert bool(((r[y == 1] > augmentation.R2) & (r[y == 1] < augmentation.R3)).all())


def test_listed() -> None:
    assert "augmentation" in bench.BENCHMARKS


def test_quick_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["augmentation", "--quick", "--markdown", "--clock", "cpu"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert list(rows[0]) == list(augmentation.COLUMNS)
    ours = {(r["task"], r["model"]): r for r in rows if r["library"] == "physnode"}
    assert set(ours) == {(t, m) for t in augmentation.TASKS for m in augmentation.MODELS}
    for r in ours.values():
        acc = float(r["test acc"].rstrip("%"))
        assert 0.0 <= acc <= 100.0, r
        assert int(r["NFE test"]) > 0 and int(r["params"]) > 0, r
    dims = {m: int(ours[("spheres", m)]["state dim"]) for m in augmentation.MODELS}
    assert dims == {
        "plain": 3,
        "galerkin": 3,
        "zero-augment": 5,
        "input-augment": 5,
        "second-order": 6,
        "data-controlled": 3,
    }
    peers = [r for r in rows if r["library"] == "torchdyn"]
    assert {r["model"] for r in peers} == set(augmentation.TORCHDYN_MODELS)
    for r in peers:  # measured, or "not installed"; never an error
        assert r["test acc"] == "not installed" or r["test acc"].endswith("%"), r


def test_skip_and_bad_options(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--quick", "--markdown", "--tasks", "annuli", "--models", "plain", "--skip", "torchdyn"]
    assert augmentation.run(argv) == 0
    rows = table_rows(capsys.readouterr().out)
    assert [(r["model"], r["library"]) for r in rows] == [("plain", "physnode")]
    with pytest.raises(SystemExit, match=r"--models: unknown \['anode'\]; choose from plain"):
        augmentation.run(["--quick", "--models", "anode"])
    with pytest.raises(SystemExit, match="--epochs must be a positive integer"):
        augmentation.run(["--quick", "--epochs", "0"])


@pytest.mark.slow
def test_full_budget_meets_the_bars(capsys: pytest.CaptureFixture[str]) -> None:
    """At the default budget augmented and data-controlled models pass 99% on both tasks; the plain one does not."""
    models = "plain,zero-augment,data-controlled"
    assert augmentation.run(["--markdown", "--models", models, "--skip", "torchdyn", "--clock", "cpu"]) == 0
    rows = table_rows(capsys.readouterr().out)
    acc = {(r["task"], r["model"]): float(r["test acc"].rstrip("%")) for r in rows}
    for task in augmentation.TASKS:
        assert acc[(task, "zero-augment")] >= 99.0 and acc[(task, "data-controlled")] >= 99.0, acc
        assert acc[(task, "plain")] < 97.0, acc
