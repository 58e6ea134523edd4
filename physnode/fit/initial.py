"""Initial states of a fit: known from the data's metadata, or learnable per trajectory."""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.trajectories import Trajectories
from .observe import Observation

__all__ = ["initial_states", "initial_times"]


def _has(data: Trajectories, key: str) -> bool:
    return all(key in m for m in data.metadata)


def initial_times(data: Trajectories) -> Tensor:
    """``(N,)`` time of each trajectory's initial state, on the data's device: metadata ``"initial_time"`` where
    every trajectory has one, else the first observation time ``times[:, 0]``."""
    if _has(data, "initial_time"):
        t0 = data.metadata_tensor("initial_time", dtype=data.times.dtype).reshape(-1)
        if t0.shape != (data.n_trajectories,) or not bool(torch.isfinite(t0).all()):
            raise ValueError(
                f"metadata 'initial_time' must be one finite number per trajectory, got {t0.tolist()[:5]}"
                f"{' ...' if t0.numel() > 5 else ''}."
            )
        return t0.to(data.device)
    return data.times[:, 0].clone()


def initial_states(data: Trajectories, state_dim: int, obs: Observation, *, learnable: bool) -> Tensor:
    """``(N, S)`` initial states of the trajectories.

    Metadata ``"initial_state"`` (one list of ``S`` numbers per trajectory) when every trajectory has it. Without
    it, and only for ``learnable=True`` with an identity ``observe``, the first observation of each trajectory
    (which must then be fully observed) is the starting guess.

    Raises
    ------
    ValueError
        No usable initial state (the message says how to provide one) or one of the wrong size.
    """
    if _has(data, "initial_state"):
        y0 = data.metadata_tensor("initial_state", dtype=data.values.dtype)
        if y0.ndim != 2 or y0.shape[1] != state_dim:
            raise ValueError(
                f"metadata 'initial_state' has shape {tuple(y0.shape)}, but the model state has {state_dim} "
                f"components; expected ({data.n_trajectories}, {state_dim})."
            )
        bad = ~torch.isfinite(y0).all(dim=1)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0])
            raise ValueError(
                f"metadata 'initial_state' of trajectory {i} ({data.ids[i]!r}) is {y0[i].tolist()}, not finite; give "
                "finite initial states, or fit them with learn_initial_state=True."
            )
        return y0
    if not learnable:
        raise ValueError(
            "the data carry no metadata 'initial_state' for every trajectory, so the initial states are unknown; "
            "add them to the metadata or fit them with learn_initial_state=True."
        )
    if not obs.identity:
        raise ValueError(
            "learn_initial_state=True without metadata 'initial_state' starts from the first observation, which "
            "needs observe to be the identity (every state component observed); add 'initial_state' guesses to the "
            "metadata instead."
        )
    first = data.mask[:, 0, :]
    if not bool(first.all()):
        i = int(torch.nonzero(~first.all(dim=1))[0])
        raise ValueError(
            f"trajectory {i} has a missing channel at its first time, so it cannot start the learnable initial "
            "state; add 'initial_state' guesses to the metadata."
        )
    return data.values[:, 0, :].clone()
