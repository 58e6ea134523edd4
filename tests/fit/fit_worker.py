"""Subprocess entry points of the checkpoint and distributed tests (run as scripts, not collected)."""

from __future__ import annotations

import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))

from fit_systems import Decay, decay_data

# physnode.fit is the function; its package's modules are reached with `from physnode.fit import ...`.
from physnode.fit import api, distributed, fit


def run_checkpointed(path: str, out: str, epochs: int, die_after: int | None, resume: bool) -> None:
    if die_after is not None:
        real_save = api.save_checkpoint
        saved = {"n": 0}

        def save_then_die(p, state):
            real_save(p, state)
            saved["n"] += 1
            if saved["n"] >= die_after:
                os._exit(17)  # a hard kill right after the checkpoint of epoch die_after

        api.save_checkpoint = save_then_die
    torch.set_num_threads(1)
    res = fit(
        Decay(0.4),
        decay_data(noise=0.05),
        optimizer="adam",
        lr=0.05,
        epochs=epochs,
        batch_size=2,
        steer=0.3,
        checkpoint=path,
        resume=resume,
        progress=False,
        grad="direct",
        rtol=1e-6,
    )
    with open(out, "w") as fh:
        json.dump({"k": res.params["k"], "epochs": len(res.history)}, fh)


def run_distributed(out: str, optimizer: str) -> None:
    torch.set_num_threads(1)
    rank, world = distributed.init_from_env("gloo")
    res = fit(
        Decay(0.4),
        decay_data(n=5, noise=0.05),
        optimizer=optimizer,
        lr=0.05,
        epochs=6,
        progress=False,
        grad="direct",
        rtol=1e-6,
        learn_initial_state=True,
    )
    if rank == 0:
        with open(out, "w") as fh:
            json.dump(
                {
                    "k": res.params["k"],
                    "y0": res.initial_states.tolist(),
                    "world": world,
                    "se": res.uncertainty["k"],
                    "loss": res.loss,
                },
                fh,
            )
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "checkpoint":
        die = None if sys.argv[5] == "none" else int(sys.argv[5])
        run_checkpointed(sys.argv[2], sys.argv[3], int(sys.argv[4]), die, sys.argv[6] == "resume")
    else:
        run_distributed(sys.argv[2], sys.argv[3])
