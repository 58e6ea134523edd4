"""physnode.plot: each figure renders a non-empty image with the expected lines, spans and traces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from matplotlib.patches import Rectangle

from physnode import plot
from physnode.data import Trajectories


def _circle_data(noise: float = 0.0, n_times: int = 41, split: bool = True) -> Trajectories:
    """Two bodies on circles, channels x1, y1, z1, x2, y2, z2, t in [0, 2], t_split = 1 (when ``split``)."""
    t = torch.linspace(0, 2, n_times, dtype=torch.float64)
    cols = []
    for b in range(2):
        r = 1.0 + b
        cols += [r * torch.cos(t + b), r * torch.sin(t + b), 0.1 * b * t]
    values = torch.stack(cols, -1).unsqueeze(0)
    values = values + noise * torch.randn(values.shape, dtype=values.dtype)
    ch = ["x1", "y1", "z1", "x2", "y2", "z2"]
    return Trajectories(t, values, channels=ch, attrs={"t_split": 1.0} if split else {})


def _history(n: int = 12) -> list[dict]:
    return [
        {"epoch": k, "loss": 10.0 ** (-k / 2), "params": {"masses": [1.0 + 0.1 * 0.5**k, 1.2 - 0.1 * k / n], "k": 2.0}}
        for k in range(n)
    ]


def _png(path) -> np.ndarray:
    assert path.stat().st_size > 1000
    img = imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    # Not a blank canvas: some pixels differ from the white background.
    assert (img[..., :3] < 0.9).any()
    return img


def test_time_series_lines_and_forecast_span(tmp_path):
    obs = _circle_data(noise=0.01)
    pred = _circle_data()
    fig = plot.plot_time_series(obs, pred, path=tmp_path / "ts.png")
    img = _png(tmp_path / "ts.png")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6
    for ax in axes:
        labels = [ln.get_label() for ln in ax.get_lines()]
        assert labels == ["observed", "predicted"]
        spans = [p for p in ax.patches if isinstance(p, Rectangle)]
        assert len(spans) == 1  # the shaded forecast window [t_split, t_end]
        x0 = spans[0].get_x()
        assert x0 == pytest.approx(1.0)
        assert x0 + spans[0].get_width() == pytest.approx(2.0)
    # The predicted line of channel x1 is the data it was given.
    x_line = axes[0].get_lines()[1]
    np.testing.assert_allclose(x_line.get_ydata(), np.cos(np.linspace(0, 2, 41)), rtol=1e-12)
    # The shaded right half of the first panel is grey, its left half is not: sample a row of pixels through
    # the first axes' middle (image rows go top-down).
    h = img.shape[0]
    bbox = axes[0].get_window_extent().transformed(fig.dpi_scale_trans.inverted())  # inches
    bbox = bbox.transformed(type(fig.dpi_scale_trans)().scale(h / fig.get_figheight()))  # saved pixels
    row = int(h - (bbox.y0 + bbox.y1) / 2)
    left = img[row, int(bbox.x0 + 0.1 * bbox.width) : int(bbox.x0 + 0.4 * bbox.width), :3]
    right = img[row, int(bbox.x0 + 0.6 * bbox.width) : int(bbox.x0 + 0.9 * bbox.width), :3]
    assert np.median(right) < 0.9 < np.median(left)


def test_time_series_without_prediction_or_split_and_masked(tmp_path):
    obs = _circle_data()
    mask = obs.mask.clone()
    mask[0, ::2, 0] = False  # drop every other x1 observation
    obs = Trajectories(obs.times, obs.values, mask, channels=obs.channels)  # no t_split attribute
    fig = plot.plot_time_series(obs, channels=["x1", "y2"], path=tmp_path / "ts.pdf")
    assert (tmp_path / "ts.pdf").read_bytes().startswith(b"%PDF")
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 2
    assert not any(isinstance(p, Rectangle) for ax in axes for p in ax.patches)
    assert len(axes[0].get_lines()[0].get_xdata()) == 20  # only observed entries are drawn
    assert len(axes[1].get_lines()[0].get_xdata()) == 41


@pytest.mark.parametrize("dims", [2, 3], ids=["2d", "3d"])
def test_orbits(tmp_path, dims):
    obs = _circle_data(noise=0.01, split=False)
    fig = plot.plot_orbits(obs, _circle_data(), dims=dims, path=tmp_path / "orbit.png")
    _png(tmp_path / "orbit.png")
    (ax,) = fig.axes
    assert ax.name == ("3d" if dims == 3 else "rectilinear")
    lines = ax.get_lines()
    assert len(lines) == 4  # two bodies: observed points and predicted path each (no forecast window)
    # Body 2 moves on a circle of radius 2.
    x, y = (lines[3].get_data_3d() if dims == 3 else lines[3].get_data())[:2]
    np.testing.assert_allclose(np.hypot(x, y), 2.0, rtol=1e-12)


def test_orbits_windows_projections_and_one_legend(tmp_path):
    """Fit window solid, forecast dashed (joined at t_split, marked by a cross), three projections, and a single
    legend with each entry once."""
    obs = _circle_data(noise=0.01)  # t_split = 1 in its attributes
    fig = plot.plot_orbits(obs, _circle_data(n_times=401), projections="all", path=tmp_path / "orbits.png")
    _png(tmp_path / "orbits.png")
    assert [(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes] == [("x", "y"), ("x", "z"), ("y", "z")]
    lines = fig.axes[0].get_lines()
    assert len(lines) == 8  # per body: observed, fit window, forecast window, position at t_split
    fit_part, forecast_part, cross = lines[1:4]
    assert fit_part.get_linestyle() == "-" and forecast_part.get_linestyle() == "--" and cross.get_marker() == "x"
    t = np.linspace(0, 2, 401)
    np.testing.assert_allclose(fit_part.get_xdata(), np.cos(t[t <= 1.0]), rtol=1e-12)
    assert forecast_part.get_xdata()[0] == fit_part.get_xdata()[-1]  # the two windows join
    np.testing.assert_allclose(cross.get_xdata(), [np.cos(1.0)], rtol=1e-12)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert len(labels) == len(set(labels))
    assert labels[:2] == ["body 1 (x1, y1, z1)", "body 2 (x2, y2, z2)"]
    assert "model, forecast (t > 1)" in labels and not any(ax.get_legend() for ax in fig.axes)
    with pytest.raises(ValueError, match="projections must be pairs"):
        plot.plot_orbits(obs, projections=[(0, 5)])


def test_time_series_several_trajectories_and_residuals():
    a, b = _circle_data(noise=0.01), _circle_data(noise=0.02)
    obs = Trajectories.concat([a, b])
    dense = Trajectories.concat([_circle_data(n_times=401), _circle_data(n_times=401)])
    at_obs = Trajectories.concat([_circle_data(), _circle_data()])
    fig = plot.plot_time_series(obs, dense, trajectories=[0, 1], residuals=at_obs, channels=["x1", "y1"])
    ax, _, rax, _ = [ax for ax in fig.axes if ax.get_visible()]  # row of channel panels, then their residuals
    assert [ln.get_label() for ln in ax.get_lines()] == ["_observed 0", "trajectory 0", "_observed 1", "trajectory 1"]
    assert len(ax.get_lines()[1].get_xdata()) == 401  # the dense curve, not a polyline through the observations
    # The residual panel shows observed − predicted at the observation times (the added noise).
    resid = rax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(resid, (a.values[0, :, 0] - at_obs.values[0, :, 0]).numpy(), rtol=1e-12)
    assert rax.get_ylabel() == "resid." and rax.get_shared_x_axes().joined(ax, rax)
    (legend,) = fig.legends
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["forecast window", "trajectory 0", "trajectory 1", "observed", "model"]
    with pytest.raises(ValueError, match="lists a trajectory twice"):
        plot.plot_time_series(obs, trajectories=[1, 1])
    with pytest.raises(ValueError, match="predictions at the observed times"):
        plot.plot_time_series(obs, dense, residuals=dense)


def test_orbits_state_style_names_and_explicit_bodies():
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    v = torch.stack([torch.cos(t), torch.sin(t), t], -1).unsqueeze(0)
    traj = Trajectories(t, v, channels=["r0_x", "r0_y", "energy"])
    assert len(plot.plot_orbits(traj).axes[0].get_lines()) == 1
    fig = plot.plot_orbits(traj, bodies=[("r0_x", "energy")])
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), t.numpy())


def test_loss_curve(tmp_path):
    hist = _history()
    fig = plot.plot_loss(hist, path=tmp_path / "loss.png")
    _png(tmp_path / "loss.png")
    (ax,) = fig.axes
    assert ax.get_yscale() == "log"
    (line,) = ax.get_lines()
    np.testing.assert_allclose(line.get_ydata(), [h["loss"] for h in hist])
    # Without positive values the axis stays linear.
    assert plot.plot_loss([{"loss": -1.0}, {"loss": 0.0}]).axes[0].get_yscale() == "linear"


def test_parameter_traces_with_truth(tmp_path):
    hist = _history()
    fig = plot.plot_parameters(hist, truth={"masses": [1.0, 1.1]}, path=tmp_path / "params.png")
    _png(tmp_path / "params.png")
    ax_m, ax_k = [ax for ax in fig.axes if ax.get_visible()]
    lines = ax_m.get_lines()
    assert len(lines) == 4  # two mass traces, two truth lines
    np.testing.assert_allclose(lines[0].get_ydata(), [h["params"]["masses"][0] for h in hist])
    assert lines[2].get_linestyle() == "--" and list(lines[2].get_ydata()) == [1.0, 1.0]
    assert lines[3].get_color() == lines[1].get_color()  # truth in the colour of its trace
    assert len(ax_k.get_lines()) == 1  # no truth given for k


def test_tensor_parameter_values():
    hist = [{"params": {"m": torch.tensor([1.0, 2.0])}, "loss": 1.0} for _ in range(3)]
    fig = plot.plot_parameters(hist, truth={"m": torch.tensor([1.5, 2.5])})
    assert len(fig.axes[0].get_lines()) == 4


def test_parameter_traces_from_initial_guess_with_errors_and_relative_error():
    hist = _history()
    fig = plot.plot_parameters(
        hist,
        names=["masses"],
        truth={"masses": [1.0, 1.1]},
        initial={"masses": [1.3, 1.4]},
        errors={"masses": [0.01, 0.02]},
        relative_error=True,
    )
    ax, eax = [a for a in fig.axes if a.get_visible()]
    trace = ax.get_lines()[0]
    assert trace.get_xdata()[0] == 0.0 and trace.get_ydata()[0] == 1.3  # starts at the initial guess
    np.testing.assert_allclose(trace.get_ydata()[1:], [h["params"]["masses"][0] for h in hist])
    final = hist[-1]["params"]["masses"][0]
    assert trace.get_label() == f"masses[0] = {final:.7g} ± 0.01"
    (bars,) = [c for c in ax.containers if c.has_yerr]
    segments = bars.lines[2][0].get_segments()
    np.testing.assert_allclose([s[:, 1] for s in segments[:1]], [[final - 0.01, final + 0.01]], rtol=1e-12)
    assert eax.get_yscale() == "log"
    rel = eax.get_lines()[0].get_ydata()
    np.testing.assert_allclose(rel[0], 0.3, rtol=1e-12)  # |1.3 − 1| / 1
    np.testing.assert_allclose(rel[-1], abs(final - 1.0), rtol=1e-12)
    with pytest.raises(ValueError, match=r"initial has parameter\(s\) \['k'\]"):
        plot.plot_parameters(hist, names=["masses"], initial={"k": 1.0})


def test_atomic_save_leaves_no_temporary_files(tmp_path):
    fig = plot.plot_loss(_history())
    out = tmp_path / "loss.png"
    out.write_bytes(b"old")
    plot.save_figure(fig, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]


def test_errors(tmp_path):
    obs = _circle_data()
    fig = plot.plot_loss(_history())
    with pytest.raises(ValueError, match=r"\.png, \.pdf or \.svg"):
        plot.save_figure(fig, tmp_path / "loss.jpeg")
    with pytest.raises(OSError, match="does not exist"):
        plot.save_figure(fig, tmp_path / "nope" / "loss.png")
    with pytest.raises(ValueError, match=r"unknown channel\(s\) \['q'\]"):
        plot.plot_time_series(obs, channels=["q"])
    with pytest.raises(ValueError, match="lack channel"):
        plot.plot_time_series(obs, obs.select_channels(["x1"]))
    with pytest.raises(ValueError, match="trajectory must be an index"):
        plot.plot_time_series(obs, trajectory=3)
    with pytest.raises(TypeError, match="Trajectories"):
        plot.plot_orbits(obs.values)
    with pytest.raises(ValueError, match="pass bodies="):
        plot.plot_orbits(Trajectories(obs.times[0], obs.values[..., :1], channels=["energy"]))
    with pytest.raises(ValueError, match="dims=3 needs 3"):
        plot.plot_orbits(obs, bodies=[("x1", "y1")], dims=3)
    with pytest.raises(ValueError, match="history is empty"):
        plot.plot_loss([])
    with pytest.raises(ValueError, match="no 'loss'"):
        plot.plot_loss([{"nfe": 3}])
    with pytest.raises(ValueError, match=r"truth has parameter\(s\) \['zeta'\]"):
        plot.plot_parameters(_history(), truth={"zeta": 1.0})
    with pytest.raises(ValueError, match="truth\\['masses'\\] has 3 values"):
        plot.plot_parameters(_history(), truth={"masses": [1.0, 2.0, 3.0]})


def test_time_series_shades_forecast_bands():
    from matplotlib.collections import PolyCollection

    from physnode.predictive import Forecast

    mean = _circle_data(n_times=101, split=False)
    std = torch.full_like(mean.values, 0.1)
    bands = Forecast(mean, std, mean.values - 0.2, mean.values + 0.2, 0.95, "linear", torch.zeros(6))
    fig = plot.plot_time_series(_circle_data(noise=0.01, split=False), mean, bands=bands, channels=["x1"])
    (ax,) = [a for a in fig.axes if a.get_visible()]
    (poly,) = [c for c in ax.collections if isinstance(c, PolyCollection)]
    assert poly.get_label() == "95 % confidence band (linear)"
    y = poly.get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([y.min(), y.max()], [mean.values[0, :, 0].min() - 0.2, 1.2], rtol=1e-12)
    with pytest.raises(TypeError, match="bands must be a physnode.predictive.Forecast"):
        plot.plot_time_series(mean, mean, bands=mean.values)
