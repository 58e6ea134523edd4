"""`physnode bench structured` in quick mode: every d has a row, and the batched field equals the per-variable loop."""

from __future__ import annotations

import re

import pytest
import torch

from physnode import bench
from physnode.bench.structured import PerVariableMLPs
from physnode.causal import StructuredODE


def test_structured_quick_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["structured", "--quick", "--markdown", "--dims", "3,7"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if re.match(r"\|\s*\d+\s*\|", line)]
    assert [int(r.split("|")[1]) for r in rows] == [3, 7], out
    # last column: max |batched - loop| -- the same field from two evaluation orders, float64 round-off only
    assert all(float(r.strip().strip("|").split("|")[-1]) < 1e-12 for r in rows), out


def test_loop_field_is_the_same_function_and_gradient() -> None:
    g = torch.Generator().manual_seed(1)
    m = StructuredODE(5, hidden=(8,), linear=True, generator=g)
    with torch.no_grad():
        m.W_lin.normal_(generator=g)
    y = torch.randn(11, 5, generator=g, dtype=torch.float64)
    peer = PerVariableMLPs(m)
    torch.testing.assert_close(peer.field(y), m.field(y), rtol=1e-12, atol=1e-12)
    ga = torch.autograd.grad(m.field(y).square().sum(), [m.W_in, m.b_in, m.W_out, m.b_out, m.W_lin])
    gb = torch.autograd.grad(peer.field(y).square().sum(), list(peer.parameters()))
    # the peer's per-variable gradients stacked are the batched model's; same maths, different summation order
    for k, a in enumerate(ga):
        torch.testing.assert_close(a, torch.stack(gb[5 * k : 5 * k + 5]), rtol=1e-10, atol=1e-12)


def test_bad_dims_are_explained() -> None:
    with pytest.raises(SystemExit, match="--dims: expected comma-separated integers"):
        bench.main(["structured", "--quick", "--dims", "ten"])
