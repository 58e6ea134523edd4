"""The batches of the neural-SDE training loop: distinct trajectories in every batch, all trajectories visited."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from physnode.data import Trajectories
from physnode.sde._training import Run, train


def _run(n: int, iterations: int, seed: int) -> Run:
    times = torch.linspace(0.0, 1.0, 3, dtype=torch.float64).expand(n, 3)
    data = Trajectories(times, torch.zeros(n, 3, 1, dtype=torch.float64))
    net = nn.Linear(1, 1)
    return Run(
        nets={"net": net},
        opts={"net": torch.optim.Adam(net.parameters())},
        rng=torch.Generator().manual_seed(seed),
        data=data,
        iterations=iterations,
        info={},
    )


@pytest.mark.parametrize("seed", range(5))
def test_batches_never_repeat_a_trajectory_when_the_size_does_not_divide_n(seed: int) -> None:
    """16 trajectories in batches of 6: the old draw appended a fresh permutation to the 4 leftovers, so a batch
    could hold one trajectory twice (and the trainers then failed on duplicate trajectory ids)."""
    batches: list[list[int]] = []

    def step(it: int, idx: list[int]) -> dict[str, float]:
        batches.append(list(idx))
        return {"loss": 0.0}

    train(
        _run(16, 12, seed),
        step,
        batch_size=6,
        checkpoint=None,
        resume=False,
        progress=False,
        desc="test",
        postfix=("loss", "loss"),
        callback=None,
    )
    assert len(batches) == 12
    assert all(len(b) == 6 and len(set(b)) == 6 for b in batches), batches
    assert set().union(*map(set, batches)) == set(range(16))
