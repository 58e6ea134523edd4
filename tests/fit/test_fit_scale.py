"""Checkpoint / resume after a hard kill, and data-parallel fitting over 2 gloo processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from physnode.fit import distributed
from physnode.fit.checkpoint import load_checkpoint, save_checkpoint

WORKER = str(Path(__file__).with_name("fit_worker.py"))


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, WORKER, *args], capture_output=True, text=True, env=env, timeout=300)
    if check and proc.returncode != 0:
        raise AssertionError(proc.stderr[-3000:])
    return proc


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    ref_out, out = tmp_path / "ref.json", tmp_path / "out.json"
    _run("checkpoint", str(tmp_path / "ref.pt"), str(ref_out), "8", "none", "fresh")
    ckpt = tmp_path / "run.pt"
    killed = _run("checkpoint", str(ckpt), str(out), "8", "3", "fresh", check=False)
    assert killed.returncode == 17 and not out.exists()
    assert load_checkpoint(ckpt)["epoch"] == 3
    _run("checkpoint", str(ckpt), str(out), "8", "none", "resume")
    ref, got = json.loads(ref_out.read_text()), json.loads(out.read_text())
    assert got["epochs"] == ref["epochs"] == 8
    assert got["k"] == pytest.approx(ref["k"], abs=1e-12, rel=0)


def test_checkpoint_is_plain_data(tmp_path: Path) -> None:
    p = tmp_path / "c.pt"
    save_checkpoint(p, {"epoch": 2, "x": torch.ones(2), "history": [{"loss": 1.0}]})
    state = torch.load(p, weights_only=True)
    assert state["epoch"] == 2 and state["history"][0]["loss"] == 1.0
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint written by physnode.fit") as info:
        load_checkpoint(tmp_path / "bad.pt")
    assert "weights_only" not in str(info.value)  # never torch's advice to unpickle


@pytest.mark.parametrize("optimizer", [pytest.param("adam", marks=pytest.mark.slow), "gauss-newton"])
def test_two_gloo_processes_match_one(tmp_path: Path, optimizer: str) -> None:
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    _run("distributed", str(one), optimizer)
    cmd = distributed.torchrun_command(2, [WORKER, "distributed", str(two), optimizer])
    env = dict(os.environ, OMP_NUM_THREADS="1", MASTER_ADDR="127.0.0.1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["world"] == 1 and b["world"] == 2
    assert b["k"] == pytest.approx(a["k"], abs=1e-10, rel=0)
    assert torch.allclose(torch.tensor(b["y0"]), torch.tensor(a["y0"]), atol=1e-10, rtol=0)
    assert b["loss"] == pytest.approx(a["loss"], rel=1e-10)
    assert b["se"] == pytest.approx(a["se"], rel=1e-8)


def test_torchrun_command_and_shard() -> None:
    cmd = distributed.torchrun_command(3, ["-m", "physnode", "fit", "three-body"])
    assert cmd[1:5] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3"]
    assert cmd[5:] == ["--module", "physnode", "fit", "three-body"]
    idx = torch.arange(7)
    parts = [distributed.shard(idx, r, 3) for r in range(3)]
    assert sorted(torch.cat(parts).tolist()) == list(range(7))
    with pytest.raises(ValueError, match="nproc"):
        distributed.torchrun_command(0, ["x.py"])
