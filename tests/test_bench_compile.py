"""`physnode bench gradients --compile`: the compiled rows are printed next to the eager ones (slow: compiles)."""

from __future__ import annotations

import re

import pytest

from physnode import bench


@pytest.mark.slow
def test_gradients_quick_with_compiled_rows(capsys: pytest.CaptureFixture[str]) -> None:
    skip = "mali,symplectic,reversible_heun,nag,adjoint,TorchDiffEqPack,torchsde,torchode,torchdiffeq"
    assert bench.main(["gradients", "--quick", "--compile", "--skip", skip]) == 0
    out = capsys.readouterr().out
    rows = {line.split("  ")[1].strip(): line for line in out.splitlines() if line.startswith("physnode ")}
    for grad in ("direct", "aca"):
        eager = rows[f"grad='{grad}', dopri5"]
        compiled = rows[f"grad='{grad}', dopri5, compiled"]
        assert "compile " in compiled
        # The same discrete solve: the gradient errors against the reference agree to the printed digits.
        err = re.findall(r"\d\.\d\de[-+]\d\d", eager)[:2]
        assert err and re.findall(r"\d\.\d\de[-+]\d\d", compiled)[:2] == err
