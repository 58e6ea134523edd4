"""The benchmark package runs end to end in quick mode and prints the expected tables (no timing asserted)."""

from __future__ import annotations

import json
import math
import re
from typing import ClassVar

import pytest
import torch

import physnode
from physnode import bench
from physnode.bench import _common, gradients, memory, solvers
from physnode.gradients.base import GradientMethod


def parse_markdown(text: str) -> list[dict[str, str]]:
    """Rows of the first markdown table in ``text`` as dicts keyed by the header."""
    lines = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(lines) >= 2, f"no markdown table in:\n{text}"
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    assert set(lines[1].strip("|").split("|")) == {"---"}
    rows = []
    for ln in lines[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", ln.strip("|"))]
        assert len(cells) == len(header), ln
        rows.append(dict(zip(header, cells, strict=True)))
    return rows


def as_float(cell: str) -> float:
    return float(cell)


def test_list_names_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("solvers", "gradients", "memory", "physics-rhs"):
        assert name in out


def test_unknown_benchmark_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    from physnode.cli import main as cli_main

    assert cli_main(["bench", "solverz"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("physnode bench: error: unknown benchmark 'solverz'")


def test_python_m_physnode_bench_follows_the_cli_convention() -> None:
    """``python -m physnode.bench`` reports errors like ``physnode bench``: one line, exit status 2."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "physnode.bench", "solverz"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "unknown benchmark 'solverz'" in proc.stderr


def test_help_of_a_benchmark_exits_cleanly(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        bench.main(["solvers", "--help"])
    assert exc.value.code == 0
    assert "--repeats" in capsys.readouterr().out


def test_bad_option_value_is_explained() -> None:
    with pytest.raises(SystemExit, match="--threads must be >= 1"):
        bench.main(["solvers", "--quick", "--threads", "0"])


def test_table_markdown_and_text_render_the_same_cells() -> None:
    t = _common.Table("T", ["a", "b c"])
    t.add(a="1", b_c="x|y")
    t.add_row({"a": "2"})
    rows = parse_markdown(t.render(markdown=True))
    assert rows == [{"a": "1", "b c": "x\\|y"}, {"a": "2", "b c": "-"}]
    text = t.render()
    assert "x|y" in text and text.splitlines()[0] == "T"
    with pytest.raises(ValueError, match="unknown column"):
        t.add(nope=1)


def test_time_median_returns_the_median_and_the_last_result() -> None:
    calls = []
    secs, res = _common.time_median(lambda: calls.append(1) or len(calls), 3, torch.device("cpu"), warmup=2)
    assert len(calls) == 5 and res == 5 and secs >= 0


def test_solvers_quick_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["solvers", "--quick", "--markdown", "--batch", "4"]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    assert list(rows[0]) == list(solvers.COLUMNS)
    problems = {r["problem"] for r in rows}
    assert len(problems) == 3
    for problem in problems:
        for method in solvers.METHODS:
            libs = {r["library"]: r for r in rows if r["problem"] == problem and r["method"] == method}
            assert set(libs) == set(solvers.PEERS)
            # physnode at rtol=1e-6 must be close to the dopri8 reference at 1e-12.
            err = as_float(libs["physnode"]["final err"])
            assert math.isfinite(err) and err < 1e-3, libs["physnode"]
            assert int(libs["physnode"]["NFE"]) > 0 and int(libs["physnode"]["steps"]) > 0
    assert all(
        r["time"] == "no tsit5 in torchdiffeq" for r in rows if r["library"] == "torchdiffeq" and r["method"] == "tsit5"
    )


def test_missing_peer_prints_not_installed(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    real = solvers.optional_import
    monkeypatch.setattr(solvers, "optional_import", lambda name: None if name == "torchode" else real(name))
    assert solvers.run(["--quick", "--markdown", "--batch", "2", "--methods", "dopri5", "--clock", "cpu"]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    torchode_rows = [r for r in rows if r["library"] == "torchode"]
    assert torchode_rows and all(r["time"] == "not installed" for r in torchode_rows)
    assert all(r["time"] != "not installed" for r in rows if r["library"] == "physnode")


def test_gradients_quick_table(capsys: pytest.CaptureFixture[str]) -> None:
    skip = "TorchDiffEqPack,torchsde"  # the slowest peers; every physnode method still runs
    assert bench.main(["gradients", "--quick", "--markdown", "--skip", skip]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    assert list(rows[0]) == list(gradients.COLUMNS)
    ours = {r["compares to"]: r for r in rows if r["library"] == "physnode"}
    assert set(ours) == set(physnode.GRADIENTS.names())
    # direct at rtol=atol=1e-5 vs the reference at 1e-12: a loose but failing-when-wrong bound.
    assert as_float(ours["direct"]["err masses"]) < 1e-3 and as_float(ours["direct"]["err y0"]) < 1e-3
    assert int(ours["direct"]["NFE"]) > 0
    peers = [r for r in rows if r["library"] != "physnode"]
    assert {r["library"] for r in peers} == {"torchdiffeq", "torchode"}
    assert all(r["compares to"] in ("direct", "adjoint") for r in peers)
    backprop = next(r for r in peers if r["method"].startswith("odeint (backprop)"))
    assert backprop["speed-up"].endswith("×")


class _Broken(GradientMethod):
    name: ClassVar[str] = "broken_for_test"

    def solve(self, problem):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom from the test")


def test_a_failing_method_prints_its_error_in_its_row(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(physnode.GRADIENTS._classes, _Broken.name, _Broken)
    others = [n for n in physnode.GRADIENTS.names() if n not in ("direct", _Broken.name)]
    skip = ",".join([*others, "torchdiffeq", "torchode", "TorchDiffEqPack", "torchsde"])
    assert gradients.run(["--quick", "--markdown", "--skip", skip]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    broken = next(r for r in rows if r["compares to"] == _Broken.name)
    assert "RuntimeError: boom from the test" in broken["time"]
    direct = next(r for r in rows if r["compares to"] == "direct")
    assert as_float(direct["err masses"]) < 1e-3


def test_memory_point_in_process_grows_with_steps_for_direct() -> None:
    # Direct backprop keeps every step's graph: 400 steps of a 32-128-32 MLP on 64 states (float64) hold
    # > 4 MiB of activations more than 4 steps do (2 hidden tensors of 64*128*8 B per stage, 4 stages).
    kw = {"dim": 32, "hidden": 128, "batch": 64, "dtype": torch.float64, "device": torch.device("cpu")}
    small = memory.measure_point("direct", 4, **kw)
    large = memory.measure_point("direct", 400, **kw)
    assert small["method"] == "rk4" and large["n_steps"] == 400
    assert int(large["bytes"]) - int(small["bytes"]) > 4 * 2**20


def test_memory_table_from_points(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # The table logic with the points measured in this process (the subprocess path is tested below).
    def in_process(args, grad, n, timeout):  # type: ignore[no-untyped-def]
        dt = getattr(torch, args.dtype)
        return memory.measure_point(grad, n, args.dim, args.hidden, args.batch, dt, torch.device(args.device))

    monkeypatch.setattr(memory, "_run_point", in_process)
    assert bench.main(["memory", "--quick", "--markdown", "--methods", "direct", "--steps", "5,20"]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    assert [r["grad"] for r in rows] == ["direct"]
    row = rows[0]
    assert row["solver"] == "rk4"
    for col in ("N=5 (MiB)", "N=20 (MiB)", "MiB / 1000 steps"):
        assert as_float(row[col]) >= 0, row


def test_memory_point_in_a_subprocess() -> None:
    args = memory.argparse.Namespace(dim=4, hidden=8, batch=2, dtype="float64", device="cpu", threads=1)
    res = memory._run_point(args, "direct", 3, timeout=120)
    assert res.get("grad") == "direct" and res["n_steps"] == 3 and int(res["bytes"]) >= 0, res


def test_memory_point_reports_an_unknown_method_as_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--point", "no_such_method", "3", "--dim", "2", "--hidden", "4", "--batch", "1", "--dtype", "float64"]
    assert memory._point_main(argv) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert "no_such_method" in res["error"]


@pytest.mark.slow
def test_memory_quick_every_method(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["memory", "--quick", "--markdown"]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    assert [r["grad"] for r in rows] == physnode.GRADIENTS.names()
    for r in rows:
        assert as_float(r["MiB / 1000 steps"]) >= 0, r


@pytest.mark.slow
def test_gradients_quick_with_every_peer(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["gradients", "--quick", "--markdown"]) == 0
    rows = parse_markdown(capsys.readouterr().out)
    libs = {r["library"] for r in rows}
    assert libs == {"physnode", "torchdiffeq", "torchode", "TorchDiffEqPack", "torchsde"}
    for r in rows:
        if r["library"] == "TorchDiffEqPack" and r["compares to"] == "aca":
            assert as_float(r["err masses"]) < 1e-2


@pytest.mark.slow
def test_all_runs_every_benchmark(capsys: pytest.CaptureFixture[str]) -> None:
    bench.main(["all", "--quick"])  # the status depends on physics-rhs, owned elsewhere
    out = capsys.readouterr().out
    for name in bench.BENCHMARKS:
        assert f"##### physnode bench {name} --quick" in out
