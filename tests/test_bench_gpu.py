"""`physnode bench gpu` in quick mode on CPU: the table has every row and aca equals direct on the same solve."""

from __future__ import annotations

import re

import pytest

from physnode import bench
from physnode.bench import gpu


def test_gpu_quick_table_on_cpu(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["gpu", "--quick", "--device", "cpu", "--batch", "4", "--markdown"]) == 0
    out = capsys.readouterr().out
    for row in ("forward (dopri5)", "grad='direct'", "grad='aca'", "grad='mali'", "torchode"):
        assert row in out, row
    # The note compares aca with direct on the same discrete solve: equal to round-off (a few ulps per step, over
    # ~10 steps in float64), far below any gradient error of the solve itself.
    m = re.search(r"grad='aca' equals grad='direct' on the same solve to ([0-9.e+-]+)", out)
    assert m is not None, out
    assert float(m.group(1)) < 1e-12


def test_batch_has_its_own_times_and_is_reproducible() -> None:
    import torch

    a = gpu.make_batch(5, 7, 1e-6, torch.float64, torch.device("cpu"))
    b = gpu.make_batch(5, 7, 1e-6, torch.float64, torch.device("cpu"))
    assert a.t.shape == (5, 7) and a.y0.shape == (5, 18)
    assert torch.equal(a.t, b.t) and torch.equal(a.y0, b.y0)  # same seed, same stored inputs
    assert len(set(a.t[:, -1].tolist())) == 5  # every trajectory ends at its own time
    assert bool((a.t[:, 0] == 0).all())


def test_bad_sizes_are_usage_errors() -> None:
    with pytest.raises(SystemExit, match="--batch must be >= 1"):
        gpu.run(["--quick", "--device", "cpu", "--batch", "0"])


def test_sync_count_is_none_off_cuda() -> None:
    import torch

    assert gpu.count_syncs(lambda: None, torch.device("cpu")) is None
