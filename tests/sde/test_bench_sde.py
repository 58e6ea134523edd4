"""``physnode bench sde --quick`` runs end to end and prints both tables (nothing about time is asserted)."""

from __future__ import annotations

import re

import pytest

from physnode import bench


def tables(text: str) -> list[list[dict[str, str]]]:
    """Rows of every markdown table in ``text``, as dicts keyed by the header."""
    out: list[list[dict[str, str]]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            header = [c.strip() for c in lines[i].strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip("|"))]
                rows.append(dict(zip(header, cells, strict=True)))
                i += 1
            out.append(rows)
        i += 1
    return out


def test_sde_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["list"]) == 0
    assert "sde" in capsys.readouterr().out


def test_sde_quick_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["sde", "--quick", "--markdown"]) == 0
    out = capsys.readouterr().out
    train, grads = tables(out)
    assert [r["model"] for r in train] == [
        "true process (noise floor)",
        "SDE-GAN, clipping + LipSwish",
        "SDE-GAN, gradient penalty",
        "latent SDE",
    ]
    for r in train:
        assert float(r["W1"]) >= 0 and 0 <= float(r["cover 90%"]) <= 1
    assert "measured here:" in out and "1.87x" in out
    assert [(r["solver"], r["gradient"]) for r in grads] == [
        ("reversible_heun", "adjoint_reversible_heun"),
        ("reversible_heun", "direct"),
        ("midpoint", "direct"),
        ("euler", "direct"),
    ]
    # The adjoint keeps only the solve's outputs for the backward pass, backprop every step (deterministic counts).
    assert float(grads[0]["saved MiB"]) < float(grads[1]["saved MiB"])
    diff = float(grads[1]["vs direct"].split()[-1])
    assert diff < 1e-4  # float32: the adjoint equals backprop up to round-off (measured ~3e-7)


def test_sde_bad_option_is_explained() -> None:
    with pytest.raises(SystemExit, match="--iterations must be >= 1"):
        bench.main(["sde", "--quick", "--iterations", "0"])
