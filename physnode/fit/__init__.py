"""Fitting and forecasting: :func:`fit` a model's physical parameters to :class:`~physnode.data.Trajectories`.

* :mod:`.loss` — masked MSE / Gaussian NLL and time weights;
* :mod:`.initial` — known or learnable initial states;
* :mod:`.shooting` — multiple shooting (:class:`MultipleShooting`);
* :mod:`.steer` — STEER random end times;
* :mod:`.uncertainty` — exact residual Jacobians, Gauss–Newton standard errors;
* :mod:`.saving` — :meth:`FitResult.save` / :func:`load_result`: fitted results without pickle;
* :mod:`.checkpoint` — atomic, ``weights_only`` checkpoints that refuse to resume another run (:class:`Checkpoint`);
* :mod:`.distributed` — data-parallel fitting with ``torch.distributed`` / torchrun.
"""

from __future__ import annotations

from . import distributed
from .api import OPTIMIZERS, FitResult, fit
from .checkpoint import Checkpoint, CheckpointError
from .loss import LOSSES, TIME_WEIGHTS
from .saving import ResultFileError, load_result
from .shooting import MultipleShooting

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "TIME_WEIGHTS",
    "Checkpoint",
    "CheckpointError",
    "FitResult",
    "MultipleShooting",
    "ResultFileError",
    "distributed",
    "fit",
    "load_result",
]
