"""Trajectories: validation, padding, indexing, splits, batching and a masked fit-style solve."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.data import DataLoader

import physnode
from physnode.data import Trajectories, TrajectoryDataset, collate_trajectories


def _irregular(N: int = 4, T: int = 7, D: int = 2, seed: int = 0) -> Trajectories:
    g = torch.Generator().manual_seed(seed)
    times = torch.sort(torch.rand(N, T, generator=g, dtype=torch.float64), dim=1).values
    lengths = torch.randint(2, T + 1, (N,), generator=g)
    lengths[0] = T
    values = torch.randn(N, T, D, generator=g, dtype=torch.float64)
    mask = torch.rand(N, T, D, generator=g) > 0.3
    valid = torch.arange(T) < lengths[:, None]
    times[~valid] = math.nan
    mask &= valid[..., None]
    return Trajectories(
        times,
        values,
        mask,
        channels=[f"c{j}" for j in range(D)],
        units=["m"] * D,
        metadata=[{"k": i} for i in range(N)],
    )


def test_lengths_from_nan_padding_and_solver_ready_times():
    tr = _irregular()
    tm = tr.time_mask
    assert torch.equal(tm.sum(1), tr.lengths)
    assert bool((tr.times.diff(dim=1) > 0).all()), "padded times must stay strictly increasing"
    # Padded entries are masked out and zero.
    assert not bool(tr.mask[~tm].any())
    assert bool((tr.values[~tr.mask] == 0).all())


def test_padded_times_increase_in_float32():
    tr = _irregular().to(dtype=torch.float32)
    assert tr.times.dtype == torch.float32
    assert bool((tr.times.diff(dim=1) > 0).all())


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda t, v, m: (t.long(), v, m), "times must have a floating-point dtype"),
        (lambda t, v, m: (t, v[..., 0], m), r"values must have shape \(N, T, D\)"),
        (lambda t, v, m: (t[:, :-1], v, m), "times must have shape"),
        (lambda t, v, m: (t, v, m[..., :1]), "mask shape"),
        (lambda t, v, m: (t, v, m.int()), "mask must have dtype torch.bool"),
        (lambda t, v, m: (t.flip(1), v, m), "strictly increasing"),
        (lambda t, v, m: (t.index_fill(1, torch.tensor([2]), math.nan), v, m), "follows a NaN time"),
        (lambda t, v, m: (t.index_fill(1, torch.tensor([0]), math.nan), v, m), "between 1 and T"),
        (lambda t, v, m: (t, v.index_fill(1, torch.tensor([1]), math.nan), m), "mask/value mismatch"),
    ],
    ids=[
        "int-times",
        "values-2d",
        "times-shape",
        "mask-shape",
        "mask-dtype",
        "decreasing",
        "nan-hole",
        "nan-first",
        "nan-observed",
    ],
)
def test_validation_errors(mutate, match):
    t = torch.linspace(0, 1, 5, dtype=torch.float64).expand(2, -1).clone()
    v = torch.randn(2, 5, 3, dtype=torch.float64)
    m = torch.ones(2, 5, 3, dtype=torch.bool)
    with pytest.raises((ValueError, TypeError), match=match):
        Trajectories(*mutate(t, v, m))


def test_mask_at_padded_time_and_bad_names():
    t = torch.tensor([[0.0, 1.0, math.nan]], dtype=torch.float64)
    v = torch.zeros(1, 3, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="padded time"):
        Trajectories(t, v, torch.ones(1, 3, 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="channel name 'time'"):
        Trajectories(t, v, channels=["time"])
    with pytest.raises(TypeError, match="JSON-serialisable"):
        Trajectories(t, v, metadata=[{"x": torch.zeros(2)}])


def test_indexing_trims_and_keeps_metadata():
    tr = _irregular()
    sub = tr[[2, 3]]
    assert sub.n_times == int(tr.lengths[[2, 3]].max())
    assert sub.metadata == [{"k": 2}, {"k": 3}]
    one = tr[-1]
    assert len(one) == 1 and one.ids == [tr.ids[-1]]
    assert torch.equal(one.values[0, : one.lengths[0]], tr.values[-1, : tr.lengths[-1]])
    assert len(tr[torch.tensor([True, False, True, False])]) == 2
    with pytest.raises(IndexError, match="out of range"):
        tr[10]


def test_split_by_trajectory_partitions():
    tr = _irregular(N=10)
    a, b = tr.split_by_trajectory((0.8, 0.2), seed=1)
    assert len(a) == 8 and len(b) == 2
    assert sorted(a.ids + b.ids) == sorted(tr.ids)
    with pytest.raises(ValueError, match="sum to 1"):
        tr.split_by_trajectory((0.5, 0.2))


def test_split_by_time_windows():
    t = torch.linspace(0, 2, 21, dtype=torch.float64)
    v = t[None, :, None].expand(3, -1, 1).clone()
    tr = Trajectories(t, v)
    obs, fc = tr.split_by_time(1.0)
    assert bool((obs.times[obs.time_mask] <= 1.0).all()) and bool((fc.times[fc.time_mask] > 1.0).all())
    assert int(obs.lengths[0]) + int(fc.lengths[0]) == 21
    # values travel with their times
    assert torch.equal(fc.values[..., 0][fc.mask[..., 0]], fc.times[fc.time_mask])
    with pytest.raises(ValueError, match="no valid time in the forecast window"):
        tr.split_by_time(5.0)


def test_to_device(device):
    tr = _irregular().to(device)
    assert tr.times.device.type == device.type and tr.mask.device.type == device.type
    assert tr.to("cpu").identical(_irregular())


def test_collate_irregular_batches_and_masked_solve(device):
    """A DataLoader batch goes straight into physnode.odeint with per-trajectory times; the masked loss of
    the true model on exact data is zero, and padded entries never contribute."""
    k = 1.7
    g = torch.Generator().manual_seed(3)
    N, T = 5, 9
    lengths = torch.randint(3, T + 1, (N,), generator=g)
    times = torch.sort(torch.rand(N, T, generator=g, dtype=torch.float64), dim=1).values
    times[:, 0] = 0.0
    x0 = torch.rand(N, generator=g, dtype=torch.float64) + 0.5
    values = (x0[:, None] * torch.exp(-k * times))[..., None]
    tr = Trajectories(times, values, lengths=lengths, metadata=[{"initial_state": [float(x)]} for x in x0])
    loader = DataLoader(TrajectoryDataset(tr), batch_size=3, collate_fn=collate_trajectories)
    batches = list(loader)
    assert [len(b) for b in batches] == [3, 2]
    for start, b in zip((0, 3), batches, strict=True):
        b = b.to(device)
        assert torch.equal(b.lengths.cpu(), lengths[start : start + len(b)])
        assert b.n_times == int(b.lengths.max())
        y0 = b.metadata_tensor("initial_state").to(device)
        pred = physnode.odeint(lambda t, y: -k * y, y0, b.times, rtol=1e-10, atol=1e-12)
        err = torch.where(b.mask, pred - b.values, torch.zeros((), dtype=pred.dtype, device=device))
        assert float(err.abs().max()) < 1e-8
        assert int(b.mask.sum()) == int(b.lengths.sum())


def test_concat_rejects_mismatched_channels():
    a = Trajectories(torch.linspace(0, 1, 3, dtype=torch.float64), torch.zeros(1, 3, 1, dtype=torch.float64))
    b = Trajectories(
        torch.linspace(0, 1, 3, dtype=torch.float64), torch.zeros(1, 3, 1, dtype=torch.float64), channels=["q"]
    )
    with pytest.raises(ValueError, match="channels"):
        Trajectories.concat([a, b])
