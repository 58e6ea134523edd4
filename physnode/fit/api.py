"""``physnode.fit``: fit a model's parameters (and optionally initial states) to trajectory data."""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm  # the text bar: works in terminals and notebooks without ipywidgets

from ..data.trajectories import Trajectories
from ..errors import SolverError
from ..gradients import GradientMethod
from ..options import DEFAULT_ATOL, DEFAULT_METHOD, DEFAULT_RTOL, FIT_GRAD, SolveOptions, resolve_options
from ..solvers import Solver
from . import distributed as D
from .checkpoint import (
    CheckpointError,
    check_resume,
    load_checkpoint,
    resolve_checkpoint,
    run_identity,
    save_checkpoint,
)
from .loss import LOSSES
from .observe import resolve_observe
from .problem import FitProblem
from .saving import data_provenance
from .shooting import resolve_shooting
from .steer import check_steer, sample_end_time
from .uncertainty import (
    FitUncertainty,
    UncertaintyWarning,
    correlation,
    covariance,
    delta_method_errors,
    entry_names,
    physical_covariance,
    physical_quantities,
    precision_warning,
    residual_jacobian,
    to_python,
)

__all__ = ["OPTIMIZERS", "FitResult", "fit", "used_options"]

#: Accepted ``optimizer=`` names (``None`` means ``"adam"``).
OPTIMIZERS: tuple[str, ...] = ("adam", "lbfgs", "gauss-newton")

_DEFAULT_LR = {"adam": 1e-2, "lbfgs": 1.0, "gauss-newton": None}


@dataclass
class FitResult:
    """Outcome of :func:`fit`.

    Attributes
    ----------
    params
        ``{name: fitted value}`` of the model's physical parameters (floats, or lists for vector parameters), in
        the units each parameter declares (``Param(..., units=...)``).
    uncertainty
        ``{name: standard error}`` (same shapes and units) from the Gauss–Newton / Fisher approximation at the
        optimum; see :mod:`physnode.fit.uncertainty`. Known constants get 0.
    history
        One dict per epoch: ``epoch``, ``loss`` (at the start of the epoch's step for Gauss–Newton, the mean over
        the epoch's batches otherwise), ``params``, ``nfe`` (forward and backward evaluations of the epoch),
        ``wall_time`` (s since the fit started or resumed), and for Gauss–Newton ``damping``.
    model
        The fitted model (the same object that was passed in, moved to ``device``).
    solve_options
        The :class:`~physnode.SolveOptions` the fit solved with (Gauss–Newton always differentiates with
        ``"direct"``); ``grad`` and ``method`` are its names.
    loss
        Final loss on the whole data set (for ``loss="mse"`` the (time-weighted) mean squared residual, in
        squared channel units).
    optimizer
        Name of the optimiser (``"callable"`` for a user factory).
    initial_states
        ``(N, S)`` fitted (or known) initial states.
    noise
        ``{channel: σ}`` fitted noise standard deviations (``loss="gaussian_nll"``), else ``None``.
    converged
        Gauss–Newton stopped because the loss no longer decreased (always ``False`` for other optimisers).
    epochs
        Number of epochs run (including those of a resumed checkpoint).
    requested_grad
        The gradient method asked for, when the fit used another one (Gauss–Newton); else ``None``.
    covariance
        ``(P, P)`` covariance of the learnable physical parameters' entries, in their physical units (the
        Gauss–Newton / Fisher approximation behind ``uncertainty``, mapped from the unconstrained tensors by the
        delta method, with fitted initial and segment states marginalised); its rows and columns are named by
        ``covariance_names``, and ``sqrt(diag(covariance))`` are the standard errors. ``None`` without learnable
        parameters or with ``uncertainty=False``. See also :attr:`correlation`.
    covariance_names
        The ``P`` entry names, in the order of the flattened learnable parameters: ``"k"`` for a scalar,
        ``"masses[0]"``, ``"masses[1]"``, ... for the entries of a vector (``"W[1,2]"`` for a matrix).
    raw_covariance
        ``(Q, Q)`` covariance of the unconstrained unknowns that :func:`physnode.forecast` propagates: the raw
        tensors of the learnable parameters (``P`` entries, flattened, in the order of ``covariance_names``),
        followed, when the initial states were fitted (``learn_initial_state=True``), by the ``N·S`` entries of
        ``initial_states`` (row-major); ``Q = P`` or ``P + N·S``.
    residual_std
        ``sqrt(RSS / (n_obs − p))`` (``loss="mse"``): the observation-noise standard deviation the residuals
        imply (one value for all channels, in the channels' units); e.g.
        ``forecast(..., noise=result.residual_std)``.
    provenance
        ``{"data": ...}``: what the fit was fitted to (digest, sizes, channels, units, time range, the data's
        descriptive attributes; :func:`physnode.fit.saving.data_provenance`); callers may add entries.
    uncertainty_warning
        ``None``, or a message saying why the standard errors are not meaningful: the residuals are at the
        solver's precision (noise-free data), by the rule of :func:`physnode.fit.uncertainty.precision_warning`.
        The same message is issued as a :class:`~physnode.fit.uncertainty.UncertaintyWarning` when the fit ends.
    """

    params: dict[str, Any]
    uncertainty: dict[str, Any]
    history: list[dict[str, Any]]
    model: nn.Module
    solve_options: SolveOptions
    loss: float
    optimizer: str
    initial_states: Tensor
    noise: dict[str, float] | None = None
    converged: bool = False
    epochs: int = 0
    requested_grad: str | None = None
    covariance: Tensor | None = None
    covariance_names: list[str] = field(default_factory=list)
    raw_covariance: Tensor | None = None
    residual_std: float | None = None
    uncertainty_warning: str | None = None
    provenance: dict[str, Any] | None = None

    def save(self, path: str | os.PathLike) -> Path:
        """Write this result (model description and tensors, options, fields) to ``path`` without pickle,
        atomically; :func:`physnode.load_result` / :meth:`load` read it back. See :mod:`physnode.fit.saving`."""
        from .saving import save_result

        return save_result(self, path)

    @staticmethod
    def load(path: str | os.PathLike, *, model: nn.Module | None = None, map_location: Any = "cpu") -> FitResult:
        """Read a result written by :meth:`save` (or a results folder of ``physnode fit``); see
        :func:`physnode.fit.saving.load_result` (``model=`` for models physnode cannot describe)."""
        from .saving import load_result

        return load_result(path, model=model, map_location=map_location)

    @property
    def correlation(self) -> Tensor | None:
        """``(P, P)`` correlation matrix of the learnable parameters (named by ``covariance_names``), or ``None``."""
        return None if self.covariance is None else correlation(self.covariance)

    @property
    def grad(self) -> str:
        """Name of the gradient method the fit differentiated with."""
        return self.solve_options.grad_name

    @property
    def method(self) -> str:
        """Name of the solver the fit solved with."""
        return self.solve_options.method_name

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (parameters, errors, final loss, options, history).

        ``"solver"`` holds :meth:`SolveOptions.to_dict` of the options used; ``"grad"`` and ``"method"`` repeat
        their names, and ``"requested_grad"`` is present when the caller asked for another gradient method;
        ``"provenance"`` what was fitted (and, from the command line, the command).
        """
        doc: dict[str, Any] = {
            "params": self.params,
            "uncertainty": self.uncertainty,
            "loss": self.loss,
            "grad": self.grad,
            "method": self.method,
            "solver": self.solve_options.to_dict(),
            "optimizer": self.optimizer,
            "epochs": self.epochs,
            "converged": self.converged,
            "noise": self.noise,
            "history": self.history,
        }
        if self.requested_grad is not None:
            doc["requested_grad"] = self.requested_grad
        if self.covariance is not None:
            doc["covariance_names"] = list(self.covariance_names)
            doc["covariance"] = to_python(self.covariance)
            doc["correlation"] = to_python(correlation(self.covariance))
        doc["residual_std"] = self.residual_std
        doc["uncertainty_warning"] = self.uncertainty_warning
        if self.provenance is not None:
            doc["provenance"] = self.provenance
        return doc


#: The keyword defaults of :func:`fit`'s solve options (to tell them from given keywords).
_KEYWORD_DEFAULTS: dict[str, Any] = {
    "method": DEFAULT_METHOD,
    "grad": FIT_GRAD,
    "rtol": DEFAULT_RTOL,
    "atol": DEFAULT_ATOL,
    "step_size": None,
}


def _state_dim(model: nn.Module, data: Trajectories) -> tuple[int, list[str] | None]:
    names = getattr(model, "state_names", None)
    if names is not None:
        return len(names), list(names)
    if all("initial_state" in m for m in data.metadata) and data.metadata:
        return len(data.metadata[0]["initial_state"]), None
    return data.n_channels, None


def _check_args(model, data, loss, epochs, lr, optimizer, batch_size) -> str:
    """Check the arguments that are not solve options; returns the optimiser's name."""
    if not isinstance(data, Trajectories):
        raise TypeError(
            f"data must be a physnode.data.Trajectories, got {type(data).__name__}. Build one with "
            "Trajectories(times, values, mask, metadata=...) or load a file with physnode.data.load(path)."
        )
    if not isinstance(model, nn.Module) or not callable(model):
        raise TypeError(f"model must be an nn.Module with forward(t, y) -> dy/dt, got {type(model).__name__}.")
    if data.values.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"the data are {data.values.dtype}; fit solves in float32 or float64. Convert them with "
            "data.to(dtype=torch.float64)."
        )
    if not bool(data.mask.any()):
        raise ValueError(
            f"every observation of the data is masked (data.mask has no True entry in {data.n_trajectories} "
            f"trajectories x {data.n_times} times x {data.n_channels} channels): there is nothing to fit. Check the "
            "mask, or the time window (t_split) that selected the data."
        )
    if not isinstance(loss, str):
        raise TypeError(f"loss must be a name, one of {', '.join(map(repr, LOSSES))}; got {type(loss).__name__}.")
    if loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r}; choose one of {', '.join(map(repr, LOSSES))}.")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive integer, got {epochs!r}.")
    bad_lr = isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (lr > 0 and math.isfinite(lr))
    if lr is not None and bad_lr:
        raise ValueError(f"lr must be a positive number, got {lr!r}.")
    if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive integer (trajectories per step) or None, got {batch_size!r}.")
    if optimizer is None:
        opt_name = "adam"
    elif isinstance(optimizer, str):
        opt_name = optimizer.lower().replace("_", "-")
        if opt_name == "gaussnewton":
            opt_name = "gauss-newton"
        if opt_name not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {optimizer!r}; choose one of {', '.join(map(repr, OPTIMIZERS))} or pass a "
                "callable params -> torch.optim.Optimizer."
            )
    elif callable(optimizer):
        opt_name = "callable"
    else:
        raise TypeError(f"optimizer must be None, a name or a callable, got {type(optimizer).__name__}.")
    if opt_name == "gauss-newton":
        if loss != "mse":
            raise ValueError(
                "optimizer='gauss-newton' minimises a sum of squared residuals and needs loss='mse'; use 'adam' or "
                "'lbfgs' for loss='gaussian_nll'."
            )
        if batch_size is not None:
            raise ValueError("optimizer='gauss-newton' uses all trajectories per step; drop batch_size.")
    return opt_name


def _check_flags(after_step: object, seed: object, **flags: object) -> None:
    if after_step is not None and not callable(after_step):
        raise TypeError(f"after_step must be a callable after_step(model) or None, got {type(after_step).__name__}.")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an integer, got {type(seed).__name__}.")
    for flag, value in flags.items():
        if not isinstance(value, bool):
            raise TypeError(f"{flag} must be True or False, got {type(value).__name__} {value!r}.")


def used_options(requested: SolveOptions, optimizer: str) -> SolveOptions:
    """The options a fit with ``optimizer`` solves with: Gauss–Newton differentiates with ``"direct"`` (its exact
    residual Jacobian needs double backward), the other optimisers with the requested gradient method."""
    if optimizer == "gauss-newton" and requested.grad_name != "direct":
        return requested.replace(grad="direct")
    return requested


@dataclass
class _Fit:
    """The state of one fit, shared by its steps (:func:`_prepare` builds it, :func:`_finish` turns it into a
    :class:`FitResult`)."""

    model: nn.Module
    data: Trajectories
    problem: FitProblem
    options: SolveOptions
    requested: SolveOptions
    opt_name: str
    opt: torch.optim.Optimizer | None
    theta: list[Tensor]
    quantities: list[Any]
    gen: torch.Generator
    all_idx: Tensor
    steer_b: float | None
    epochs: int
    batch_size: int | None
    after_step: Callable[[nn.Module], None] | None
    rank: int
    world_size: int
    lm: dict[str, Any] = field(default_factory=lambda: {"damping": 1e-3, "converged": False})
    history: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    ckpt: Any = None
    run: dict[str, Any] | None = None

    def params_now(self) -> dict[str, Any]:
        """Current values of the physical quantities (floats or lists)."""
        with torch.no_grad():
            return {q.name: to_python(q.value()) for q in self.quantities}

    def snapshot(self, epoch: int) -> dict[str, Any]:
        """What a checkpoint after ``epoch`` epochs holds."""
        return {
            "epoch": epoch,
            "model": self.model.state_dict(),
            "learnables": {k: p.detach() for k, p in self.problem.learnables().items()},
            "optimizer": self.opt.state_dict() if self.opt is not None else dict(self.lm),
            "rng": {"generator": self.gen.get_state(), "torch": torch.get_rng_state()},
            "history": self.history,
            "run": self.run,
        }

    def after(self) -> None:
        """Call the ``after_step`` hook (after every optimiser step)."""
        if self.after_step is not None:
            with torch.no_grad():
                self.after_step(self.model)


def fit(
    model: nn.Module,
    data: Trajectories,
    *,
    method: str | Solver = DEFAULT_METHOD,
    grad: str | GradientMethod = FIT_GRAD,
    rtol: float | Tensor = DEFAULT_RTOL,
    atol: float | Tensor = DEFAULT_ATOL,
    observe: Any = None,
    loss: str = "mse",
    epochs: int = 100,
    lr: float | None = None,
    optimizer: str | Callable[[list[Tensor]], torch.optim.Optimizer] | None = None,
    batch_size: int | None = None,
    learn_initial_state: bool = False,
    time_weight: str | Callable[[Tensor], Tensor] | None = None,
    steer: float | None = None,
    multiple_shooting: Any = None,
    device: torch.device | str | None = None,
    checkpoint: Any = None,
    resume: bool = False,
    progress: bool = True,
    seed: int = 0,
    step_size: float | None = None,
    options: Mapping[str, Any] | SolveOptions | None = None,
    uncertainty: bool = True,
    after_step: Callable[[nn.Module], None] | None = None,
) -> FitResult:
    """Fit the learnable parameters of ``model`` (an ODE right-hand side) to trajectory data.

    The loss compares ``observe(y(t))`` of the solve with the data where ``data.mask`` is true: ``"mse"`` is
    ``Σ w(t) e² / n_obs`` over the observed entries (``n_obs`` their number over the whole data set), and
    ``"gaussian_nll"`` the Gaussian negative log-likelihood with a learnable noise ``σ`` per channel.

    Parameters
    ----------
    model
        ``nn.Module`` with ``forward(t, y)``; its trainable tensors are fitted (for physics models the raw,
        unconstrained tensors of the learnable :class:`~physnode.physics.Param`, and any network weights).
    data
        :class:`~physnode.data.Trajectories` ``(N, T, D)`` with per-trajectory times and masks. Initial states come
        from metadata ``"initial_state"`` (at metadata ``"initial_time"`` if given, else at the first time).
    method, grad, rtol, atol, step_size, options
        Solver and gradient method (any name of :data:`physnode.SOLVERS` / :data:`physnode.GRADIENTS`; the
        gradient default is ``"aca"``), tolerances and solver options, as in :func:`physnode.odeint`; or all of
        them as one :class:`~physnode.SolveOptions` in ``options`` (the keywords left at their defaults).
        ``optimizer="gauss-newton"`` differentiates with ``"direct"`` (it needs double backward): the result's
        ``solve_options`` say ``"direct"`` and ``requested_grad`` what was asked for.
    observe
        State -> observed channels: ``None`` (identity when the state has ``D`` components, else the state
        components named like the channels), a list of state indices or names, or a callable ``y -> (..., D)``.
    loss
        ``"mse"`` or ``"gaussian_nll"``.
    epochs
        Number of epochs (passes over the trajectories; one damped step for Gauss–Newton, which may stop early
        once the loss no longer decreases).
    lr
        Learning rate (default ``1e-2`` for Adam, ``1`` for L-BFGS; unused by Gauss–Newton).
    optimizer
        ``None``/``"adam"``, ``"lbfgs"`` (strong-Wolfe line search, one ``step`` per epoch), ``"gauss-newton"``
        (Levenberg–Marquardt on the residual vector with the exact Jacobian from
        :func:`~physnode.fit.uncertainty.residual_jacobian`; for models with few parameters), or a callable
        ``params -> torch.optim.Optimizer``.
    batch_size
        Trajectories per optimiser step (shuffled each epoch with ``seed``); ``None`` uses all.
    learn_initial_state
        Fit the initial state of every trajectory too (starting from the metadata, or the first observation when
        ``observe`` is the identity).
    time_weight
        ``None``, ``"linear"`` (``w = 1 + s``), ``"exp"`` (``w = e^s``) with ``s`` from 0 at the first to 1 at the
        last observation time, or a callable ``w(t)`` of the ``(N, T)`` times; see :mod:`physnode.fit.loss`.
    steer
        STEER half-width ``b`` (time units): each epoch uses the observations up to ``t_end ~ U[T − b, T + b]``.
    multiple_shooting
        ``K`` segments, ``{"segments": K, "penalty": w}`` or :class:`~physnode.fit.MultipleShooting`.
    device
        Move the model and the data there (e.g. ``"cuda"``).
    checkpoint, resume
        A path, ``{"path": ..., "every": n}`` or :class:`~physnode.fit.Checkpoint`; with ``resume=True`` an
        existing checkpoint is loaded and the fit continues from it (the result equals an uninterrupted run). A
        checkpoint records its run (optimizer, data digest, fitted tensor names and shapes, total epochs, solver
        and gradient method); resuming with any of these changed is refused.
    progress
        Show a tqdm progress bar with the loss and the learnable physical parameters (the first four; rank 0
        only).
    seed
        Seed of the fit's own random draws (batch order, STEER end times).
    uncertainty
        Compute ``result.uncertainty`` (one Jacobian at the optimum).
    after_step
        Called as ``after_step(model)`` right after every optimiser step (each batch; each Gauss–Newton or L-BFGS
        step), e.g. a proximal operator such as :class:`physnode.causal.GroupLassoProx` (proximal gradient for a
        non-smooth penalty). It may change the model's parameters in place, under ``torch.no_grad()``.

    Returns
    -------
    FitResult

    Raises
    ------
    TypeError, ValueError
        Bad arguments (the message says what was expected), e.g. data whose every observation is masked, or a
        device this machine does not have.
    physnode.errors.SolverError
        A solve failed (e.g. the optimiser drove a rate to a huge value and the problem became stiff): the same
        subclass as the solver raised, its message extended with the epoch and the current parameter values.
    physnode.fit.CheckpointError
        ``resume=True`` with a checkpoint that cannot be read or belongs to another run.
    """
    opt_name = _check_args(model, data, loss, epochs, lr, optimizer, batch_size)
    requested = resolve_options(
        options, _KEYWORD_DEFAULTS, method=method, grad=grad, rtol=rtol, atol=atol, step_size=step_size
    )
    _check_flags(
        after_step,
        seed,
        learn_initial_state=learn_initial_state,
        resume=resume,
        progress=progress,
        uncertainty=uncertainty,
    )
    shooting = resolve_shooting(multiple_shooting)
    ckpt = resolve_checkpoint(checkpoint)
    if resume and ckpt is None:
        raise ValueError("resume=True needs checkpoint=PATH (the file to resume from).")
    state = _prepare(
        model,
        data,
        requested,
        opt_name,
        observe=observe,
        loss=loss,
        epochs=epochs,
        batch_size=batch_size,
        learn_initial_state=learn_initial_state,
        time_weight=time_weight,
        steer=steer,
        shooting=shooting,
        device=device,
        seed=seed,
        after_step=after_step,
    )
    state.opt = _make_optimizer(opt_name, optimizer, state.theta, lr)
    if ckpt is not None:
        _attach_checkpoint(state, ckpt, resume)
    _run_epochs(state, progress)
    return _finish(state, uncertainty)


def _prepare(
    model: nn.Module,
    data: Trajectories,
    requested: SolveOptions,
    opt_name: str,
    *,
    observe: Any,
    loss: str,
    epochs: int,
    batch_size: int | None,
    learn_initial_state: bool,
    time_weight: Any,
    steer: float | None,
    shooting: Any,
    device: torch.device | str | None,
    seed: int,
    after_step: Callable[[nn.Module], None] | None,
) -> _Fit:
    """Move model and data to ``device``, build the :class:`FitProblem` and collect the tensors to fit."""
    if device is not None:
        device = _check_device(device)
        model.to(device)
        data = data.to(device)
    S, state_names = _state_dim(model, data)
    ds_names = data.attrs.get("state_names")
    ds_names = list(ds_names) if isinstance(ds_names, list) and all(isinstance(c, str) for c in ds_names) else None
    obs = resolve_observe(observe, S, state_names, data.channels, ds_names)
    options = used_options(requested, opt_name)
    problem = FitProblem(
        model,
        data,
        obs,
        S,
        options=options,
        learn_initial_state=learn_initial_state,
        time_weight=time_weight,
        shooting=shooting,
        loss=loss,
    )
    steer_b = check_steer(steer, problem.t_lo, problem.t_hi)
    rank, world_size = D.world()
    model_params = [p for p in model.parameters() if p.requires_grad]
    theta = model_params + list(problem.learnables().values())
    if not theta:
        raise ValueError("nothing to fit: the model has no trainable parameters and no initial states are learned.")
    return _Fit(
        model=model,
        data=data,
        problem=problem,
        options=options,
        requested=requested,
        opt_name=opt_name,
        opt=None,
        theta=theta,
        quantities=physical_quantities(model),
        gen=torch.Generator().manual_seed(seed),
        all_idx=torch.arange(problem.N, device=data.device),
        steer_b=steer_b,
        epochs=epochs,
        batch_size=batch_size,
        after_step=after_step,
        rank=rank,
        world_size=world_size,
    )


def _make_optimizer(
    opt_name: str, optimizer: Any, theta: list[Tensor], lr: float | None
) -> torch.optim.Optimizer | None:
    """The torch optimiser of ``opt_name`` (``None`` for Gauss–Newton, which steps itself)."""
    if opt_name == "adam":
        return torch.optim.Adam(theta, lr=lr or _DEFAULT_LR["adam"])
    if opt_name == "lbfgs":
        return torch.optim.LBFGS(theta, lr=lr or _DEFAULT_LR["lbfgs"], line_search_fn="strong_wolfe")
    if opt_name == "callable":
        opt = optimizer(theta)
        if not isinstance(opt, torch.optim.Optimizer):
            raise TypeError(f"optimizer(params) must return a torch.optim.Optimizer, got {type(opt).__name__}.")
        return opt
    return None


def _attach_checkpoint(state: _Fit, ckpt: Any, resume: bool) -> None:
    """Record the run's identity for the checkpoints; with ``resume`` load an existing checkpoint into ``state``."""
    problem = state.problem
    tensors = {f"model.{k}": v for k, v in state.model.state_dict().items()}
    tensors.update({f"learnables.{k}": v for k, v in problem.learnables().items()})
    state.ckpt = ckpt
    state.run = run_identity(
        optimizer=state.opt_name,
        data_digest=state.data.digest(),
        tensors=tensors,
        epochs=state.epochs,
        method=state.options.method_name,
        grad=state.options.grad_name,
    )
    if not (resume and ckpt.path.exists()):
        return
    saved = load_checkpoint(ckpt.path, map_location=state.data.device)
    state.start_epoch = check_resume(saved, state.run, ckpt.path)
    try:
        state.model.load_state_dict(saved["model"])
        with torch.no_grad():
            for k, p in problem.learnables().items():
                p.copy_(saved["learnables"][k])
        if state.opt is not None:
            state.opt.load_state_dict(saved["optimizer"])
        else:
            state.lm.update(saved["optimizer"])
        state.gen.set_state(saved["rng"]["generator"])
        torch.set_rng_state(saved["rng"]["torch"])
    except (RuntimeError, ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"fit checkpoint {str(ckpt.path)!r} does not fit this run ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:300]}); delete it or pass another checkpoint path."
        ) from None
    state.history = list(saved["history"])


def _run_epochs(state: _Fit, progress: bool) -> None:
    """The epochs from ``state.start_epoch``: one :func:`_epoch` each, a history entry, progress and checkpoints."""
    t_start = time.perf_counter()
    learnable = [q.name for q in state.quantities if q.raw is not None]
    bar = tqdm(
        range(state.start_epoch, state.epochs),
        initial=state.start_epoch,
        total=state.epochs,
        disable=not progress or state.rank != 0,
        desc="fit",
        leave=False,
    )
    for epoch in bar:
        if state.lm["converged"]:
            break
        loss_val, nfe = _epoch(state, epoch)
        entry = {
            "epoch": epoch + 1,
            "loss": loss_val,
            "params": state.params_now(),
            "nfe": int(nfe),
            "wall_time": time.perf_counter() - t_start,
        }
        if state.opt_name == "gauss-newton":
            entry["damping"] = state.lm["damping"]
        state.history.append(entry)
        if progress and state.rank == 0:
            shown = [k for k in learnable if k in entry["params"]][:4]  # the fitted ones; constants never move
            bar.set_postfix(loss=f"{loss_val:.4g}", **{k: _short(entry["params"][k]) for k in shown})
        if state.ckpt is not None and state.rank == 0:
            ckpt = state.ckpt
            if (epoch + 1) % ckpt.every == 0 or epoch + 1 == state.epochs or state.lm["converged"]:
                save_checkpoint(ckpt.path, state.snapshot(epoch + 1))
    bar.close()


def _epoch(state: _Fit, epoch: int) -> tuple[float, int]:
    """One epoch: a Gauss–Newton step, or a pass over the (shuffled) batches; returns ``(loss, nfe)``."""
    problem = state.problem
    t_end = sample_end_time(state.steer_b, problem.t_hi, state.gen) if state.steer_b is not None else None
    when = f"epoch {epoch + 1} of {state.epochs}"
    if state.opt_name == "gauss-newton":
        loss_val, nfe = _in_fit(
            lambda: _gauss_newton_step(
                problem, state.theta, state.all_idx, t_end, state.lm, state.rank, state.world_size
            ),
            when,
            state.params_now,
            "",
        )
        state.after()
        return loss_val, nfe
    batch_size = state.batch_size
    perm = torch.randperm(problem.N, generator=state.gen).to(state.data.device) if batch_size else state.all_idx
    bs = batch_size or problem.N
    total, nfe, n_steps = 0.0, 0, 0
    for b0 in range(0, problem.N, bs):
        step_loss, step_nfe = _batch_step(state, perm[b0 : b0 + bs], t_end, when)
        total += step_loss
        nfe += step_nfe
        n_steps += 1
    return total / n_steps, nfe


def _batch_step(state: _Fit, batch: Tensor, t_end: float | None, when: str) -> tuple[float, int]:
    """One optimiser step on the trajectories ``batch`` (this rank's share); returns ``(loss, nfe)``."""
    problem, opt, data = state.problem, state.opt, state.data
    local = D.shard(batch, state.rank, state.world_size)
    n_obs = problem.count(batch, t_end)
    counter = {"nfe": 0}

    def closure() -> Tensor:
        opt.zero_grad()
        if local.numel():
            ev = problem.evaluate(local, t_end)
            value = problem.loss(ev, n_obs, batch.numel())
            value.backward()
            counter["nfe"] += ev.stats.nfe + getattr(ev.stats, "nfe_backward", 0)
        else:
            value = torch.zeros((), dtype=data.values.dtype, device=data.device)
        D.all_reduce_grads_(state.theta)
        out = value.detach().clone()
        D.all_reduce_([out])
        return out

    step_loss = _in_fit(
        lambda: opt.step(closure), when, state.params_now, f"lower lr (now {opt.param_groups[0].get('lr')}), "
    )
    state.after()
    return float(step_loss), counter["nfe"]


def _finish(state: _Fit, uncertainty: bool) -> FitResult:
    """The final loss on all data, the standard errors and the fitted noise, as a :class:`FitResult`."""
    problem, data = state.problem, state.data
    rank, world_size, all_idx = state.rank, state.world_size, state.all_idx
    with torch.no_grad():
        n_all = problem.count(all_idx, None)
        local = D.shard(all_idx, rank, world_size)
        final = torch.zeros((), dtype=data.values.dtype, device=data.device)
        if local.numel():
            final = _in_fit(
                lambda: problem.loss(problem.evaluate(local, None), n_all, problem.N),
                f"the final evaluation after {len(state.history)} epochs",
                state.params_now,
                "",
            )
        final = final.clone()
        D.all_reduce_([final])
    unc = (
        _in_fit(
            lambda: _uncertainty(problem, state.quantities, all_idx, rank, world_size, state.options, data),
            "the standard errors after the fit",
            state.params_now,
            "",
        )
        if uncertainty
        else FitUncertainty({})
    )
    if unc.warning is not None and rank == 0:
        warnings.warn(unc.warning, UncertaintyWarning, stacklevel=3)
    noise = None
    if problem.log_sigma is not None:
        sig = torch.exp(problem.log_sigma.detach()).cpu().tolist()
        noise = dict(zip(data.channels, sig, strict=True))
    requested_grad = state.requested.grad_name
    return FitResult(
        params=state.params_now(),
        uncertainty=unc.standard_errors,
        history=state.history,
        model=state.model,
        solve_options=state.options,
        loss=float(final),
        optimizer=state.opt_name,
        initial_states=problem.initial_state().detach().clone(),
        noise=noise,
        converged=bool(state.lm["converged"]),
        epochs=len(state.history),
        requested_grad=requested_grad if requested_grad != state.options.grad_name else None,
        covariance=unc.covariance,
        covariance_names=unc.names,
        raw_covariance=unc.raw_covariance,
        residual_std=unc.residual_std,
        uncertainty_warning=unc.warning,
        provenance={"data": data_provenance(data)},
    )


def _check_device(device: torch.device | str) -> torch.device:
    """``torch.device(device)``, refused up front when this machine does not have it."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a torch device; use e.g. 'cpu', 'cuda' or 'cuda:1'.") from None
    if dev.type == "meta":
        raise ValueError("device 'meta' holds shapes only, no values, and cannot fit; use e.g. 'cpu' or 'cuda'.")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine; use device='cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {str(device)!r}: this machine has {torch.cuda.device_count()} CUDA device(s).")
    return dev


def _in_fit(step: Callable[[], Any], when: str, params_now: Callable[[], dict[str, Any]], hint: str) -> Any:
    """Run ``step()``; a :class:`~physnode.errors.SolverError` is re-raised as the same type with the fit's context.

    The message adds when it happened (``when``, e.g. the epoch) and the current values of the learnable
    parameters, which usually explain the failure (an optimiser step drove a rate to a huge value).
    """
    try:
        return step()
    except SolverError as err:
        try:
            params = params_now()
        except Exception:  # the context must not hide the solver's own error
            params = "unavailable"
        msg = (
            f"{' '.join(str(err).split())} [during the fit, {when}; learnable parameters now {params}. The optimiser "
            f"moved the parameters to values where the solve fails: {hint}bound the parameters (Param(bounds=...)) or "
            "start closer to the data.]"
        )
        new = err.__class__.__new__(err.__class__, msg)
        new.__dict__.update(err.__dict__)
        new.args = (msg,)
        raise new from err


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) <= 4 and all(isinstance(x, float) for x in v):
        return "[" + ", ".join(f"{x:.4g}" for x in v) + "]"
    return "..."


def _flat(theta: list[Tensor]) -> Tensor:
    return torch.cat([t.detach().reshape(-1) for t in theta])


def _assign(theta: list[Tensor], flat: Tensor) -> None:
    with torch.no_grad():
        i = 0
        for t in theta:
            n = t.numel()
            t.copy_(flat[i : i + n].reshape(t.shape))
            i += n


def _gauss_newton_step(problem: FitProblem, theta, all_idx, t_end, lm, rank, world_size) -> tuple[float, int]:
    """One Levenberg–Marquardt step on ``Σ r²`` (Marquardt scaling ``A + λ diag(A)``, ``A = JᵀJ``).

    The damping shrinks by 3 after an accepted step and grows by 4 after a rejected trial (up to 12 trials);
    the fit is marked converged when no trial decreases the loss, the relative decrease falls below 1e-10, or the
    step is below 1e-9 of the parameter vector's norm.
    """
    local = D.shard(all_idx, rank, world_size)
    n_obs = problem.count(all_idx, t_end)
    N = problem.N
    P = sum(t.numel() for t in theta)
    dtype, device = theta[0].dtype, theta[0].device
    nfe = 0
    with torch.enable_grad():
        if local.numel():
            ev = problem.evaluate(local, t_end)
            r = problem.residuals(ev, n_obs, N)
            J = residual_jacobian(r, theta)
            nfe += ev.stats.nfe
            r = r.detach()
        else:
            r = torch.zeros(0, dtype=dtype, device=device)
            J = torch.zeros(0, P, dtype=dtype, device=device)
    A = J.T @ J
    g = J.T @ r
    rss = r.square().sum()
    D.all_reduce_([A, g, rss])
    rss = float(rss)
    x0 = _flat(theta)
    diag = torch.diagonal(A).clamp_min(torch.finfo(dtype).eps * max(float(torch.diagonal(A).max()), 1e-300))
    for _ in range(12):
        lam = lm["damping"]
        delta = torch.linalg.solve(A + lam * torch.diag(diag), -g)
        _assign(theta, x0 + delta)
        with torch.no_grad():
            trial = torch.zeros((), dtype=dtype, device=device)
            if local.numel():
                try:
                    ev = problem.evaluate(local, t_end)
                    trial = problem.residuals(ev, n_obs, N).square().sum()
                    nfe += ev.stats.nfe
                except SolverError:  # the trial step went where the solve fails: a rejected trial
                    trial = torch.full((), math.inf, dtype=dtype, device=device)
            D.all_reduce_([trial])
        trial = float(trial)
        if math.isfinite(trial) and trial <= rss:
            lm["damping"] = max(lam / 3.0, 1e-12)
            small_step = float(delta.norm()) <= 1e-9 * (float(x0.norm()) + 1e-9)
            if rss - trial <= 1e-10 * rss or small_step:
                lm["converged"] = True
            return rss, nfe
        lm["damping"] = lam * 4.0
    _assign(theta, x0)
    lm["converged"] = True
    return rss, nfe


def _uncertainty(
    problem: FitProblem,
    quantities,
    all_idx,
    rank: int,
    world_size: int,
    options: SolveOptions,
    data: Trajectories,
) -> FitUncertainty:
    """Standard errors and covariances of the physical parameters at the current (fitted) values, and the check
    that the residuals are above the solver's precision; see :mod:`.uncertainty`."""
    learn_q = [q for q in quantities if q.raw is not None]
    if not learn_q:
        return FitUncertainty(delta_method_errors(quantities, torch.zeros(0, 0)))
    learnables = problem.learnables()
    extra = [p for k, p in learnables.items() if k != "log_sigma"]
    theta = [q.raw for q in learn_q] + extra
    p_phys = sum(q.raw.numel() for q in learn_q)
    p_keep = p_phys + (learnables["initial_state"].numel() if "initial_state" in learnables else 0)
    P = sum(t.numel() for t in theta)
    n_obs = problem.count(all_idx, None)
    local = D.shard(all_idx, rank, world_size)
    dtype, device = theta[0].dtype, theta[0].device
    with torch.enable_grad():
        if local.numel():
            ev = problem.evaluate(local, None, grad="direct")
            r = problem.residuals(ev, n_obs, problem.N, normalised=False)
            J = residual_jacobian(r, theta)
            rss_data = r[: ev.errors.numel()].detach().square().sum()
            err_sq = torch.where(ev.mask, ev.errors.detach(), torch.zeros((), dtype=dtype, device=device))
            err_sq = err_sq.square().sum()
        else:
            J = torch.zeros(0, P, dtype=dtype, device=device)
            rss_data = torch.zeros((), dtype=dtype, device=device)
            err_sq = torch.zeros((), dtype=dtype, device=device)
    A = J.T @ J
    D.all_reduce_([A, rss_data, err_sq])
    residual_std = None
    if problem.loss_name == "mse":
        dof = n_obs - P
        scale = float(rss_data) / dof if dof > 0 else float("nan")
        residual_std = math.sqrt(scale) if scale >= 0 else float("nan")
    else:
        scale = 1.0
    cov_all = covariance(A, scale)
    raw_cov = cov_all[:p_keep, :p_keep].detach().clone()
    cov = cov_all[:p_phys, :p_phys]
    observed = data.values[data.mask]
    data_rms = float(observed.square().mean().sqrt()) if observed.numel() else 0.0
    warning = precision_warning(
        math.sqrt(float(err_sq) / max(n_obs, 1)),
        data_rms,
        float(torch.as_tensor(options.rtol).max()),
        float(torch.as_tensor(options.atol).max()),
    )
    return FitUncertainty(
        standard_errors=delta_method_errors(quantities, cov),
        covariance=physical_covariance(quantities, cov).detach().clone(),
        names=entry_names(quantities),
        raw_covariance=raw_cov,
        initial_states_learned="initial_state" in learnables,
        residual_std=residual_std,
        warning=warning,
    )
