"""A :class:`torch.utils.data.Dataset` over trajectories and a collate function for padded batches."""

from __future__ import annotations

from collections.abc import Sequence

from torch.utils.data import Dataset

from .trajectories import Trajectories

__all__ = ["TrajectoryDataset", "collate_trajectories"]


class TrajectoryDataset(Dataset):
    """Each item is one trajectory, a :class:`Trajectories` of ``N = 1`` trimmed to its own length.

    Use with ``DataLoader(TrajectoryDataset(traj), batch_size=B, collate_fn=collate_trajectories)``; every batch is
    a :class:`Trajectories` whose solver-ready ``times (B, T)``, ``values (B, T, D)`` and ``mask (B, T, D)`` go
    straight into ``physnode.odeint(model, y0, batch.times)`` and a masked loss.
    """

    def __init__(self, trajectories: Trajectories) -> None:
        if not isinstance(trajectories, Trajectories):
            raise TypeError(f"TrajectoryDataset expects a Trajectories object, got {type(trajectories).__name__}.")
        self.trajectories = trajectories

    def __len__(self) -> int:
        return len(self.trajectories)

    def __getitem__(self, index: int) -> Trajectories:
        return self.trajectories[int(index)]


def collate_trajectories(items: Sequence[Trajectories]) -> Trajectories:
    """Concatenate single trajectories into a padded batch (padded times solver-ready, padded mask false)."""
    return Trajectories.concat(items)
