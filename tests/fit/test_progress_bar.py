"""The fit's progress bar shows the loss and the learnable parameters, not the constants."""

from __future__ import annotations

import re

import torch

import physnode
from physnode.data import Trajectories
from physnode.physics import Param, SymbolicODE


def test_progress_bar_shows_learnable_parameters(capsys):
    # Four constants declared before the one unknown: a bar showing "the first four parameters" would miss it.
    params = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0, "k": Param(0.5, positive=True)}
    model = SymbolicODE(["-k*x + 0*(a + b + c + d)"], ["x"], params)
    t = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    data = Trajectories(t, torch.exp(-t).reshape(1, 6, 1), channels=["x"], metadata=[{"initial_state": [1.0]}])
    physnode.fit(model, data, epochs=2, optimizer="gauss-newton", progress=True, uncertainty=False)
    err = capsys.readouterr().err
    assert re.search(r"k=0\.\d+", err), err  # the fitted rate, as it moves
    assert "loss=" in err
    assert not re.search(r"\b[abcd]=", err), err  # known constants never move; they are not shown
