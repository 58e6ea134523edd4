"""The results folder's figures: dense curves (and bands) computed for the drawn trajectories only."""

from __future__ import annotations

import torch

from physnode import plot
from physnode.commands._results import SHOWN_TRAJECTORIES, write_plots
from physnode.data import Trajectories


def test_time_series_with_dense_curves_of_the_drawn_trajectories_only(tmp_path, monkeypatch) -> None:
    t = torch.linspace(0.0, 1.0, 6, dtype=torch.float64)
    values = torch.stack([torch.sin(t + k) for k in range(5)])[..., None]
    data = Trajectories(t, values, channels=["x"])
    dense_t = torch.linspace(0.0, 1.0, 40, dtype=torch.float64)
    dense = Trajectories(dense_t, torch.stack([torch.sin(dense_t + k) for k in range(3)])[..., None], channels=["x"])
    seen = {}
    draw = plot.plot_time_series

    def spy(observed, predicted=None, **kw):
        seen.update(observed=observed, predicted=predicted, **kw)
        return draw(observed, predicted, **kw)

    monkeypatch.setattr(plot, "plot_time_series", spy)
    written = write_plots(tmp_path, data, data, [], truth=None, t_split=0.5, orbits=False, dense=dense)
    assert [p.name for p in written] == ["time_series.png"] and written[0].stat().st_size > 1000
    assert SHOWN_TRAJECTORIES == 3
    assert seen["observed"].n_trajectories == seen["residuals"].n_trajectories == 3  # cut to the dense ones
    assert seen["trajectories"] == [0, 1, 2] and "first 3 of 5 trajectories" in seen["title"]
    assert torch.equal(seen["observed"].values, values[:3])  # a selection, no arithmetic
