"""The expert part of a latent hybrid model: ``dz_e/dt = f_e(t, z_e, u; θ_e)`` from any physnode physics model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ..physics.base import PhysicsModel
from ..physics.params import Param
from ..physics.symbolic import SymbolicODE

__all__ = ["Expert"]


class Expert(nn.Module):
    """Expert equations ``dz_e/dt = f_e(t, z_e, u; θ_e)`` from a physnode physics model.

    The physics model (a :class:`~physnode.physics.SymbolicODE` written from a textbook, a
    :class:`~physnode.physics.Hybrid`, ...) declares the input channels among its state variables: their equations
    are ignored (write ``0``), and their values are the inputs ``u(t)`` at each evaluation. The other state variables
    are the expert states ``z_e``.

    Named parameters listed in ``per_trajectory`` take one value per trajectory (each patient's own clearance, own
    EC50): they are given as unconstrained ``raw`` values ``(B, P)`` (the parameters' own map onto their domain,
    softplus or sigmoid, is applied), around the population values held by the model's learnable
    :class:`~physnode.physics.Param` objects. The physics model's equations must then broadcast parameters of shape
    ``(B,)`` against state columns of shape ``(B,)``, which the component-wise compiled equations of a
    :class:`~physnode.physics.SymbolicODE` do.

    Parameters
    ----------
    physics
        The expert model, with state ``(z_e..., u...)`` in any order.
    inputs
        Names of the state variables of ``physics`` that are inputs ``u`` (in the order of the input channels).
    per_trajectory
        Names of learnable parameters of ``physics`` that vary per trajectory.

    Attributes
    ----------
    state_names
        Names of the expert states ``z_e`` (in the order of ``physics``' state, inputs removed).
    input_names, theta_names
        The input channels and the per-trajectory parameters.
    """

    state_index: Tensor
    input_index: Tensor

    def __init__(self, physics: PhysicsModel, inputs: Sequence[str] = (), per_trajectory: Sequence[str] = ()) -> None:
        super().__init__()
        if not isinstance(physics, PhysicsModel):
            raise TypeError(
                f"Expert needs a physnode physics model (SymbolicODE, Hybrid, ...), got {type(physics).__name__}."
            )
        names = list(physics.state_names)
        inputs = list(inputs)
        missing = [n for n in inputs if n not in names]
        if missing:
            raise ValueError(
                f"inputs {missing} are not state variables of the physics model ({names}); declare each input "
                "channel as a state variable with the equation '0'."
            )
        self.physics = physics
        self.input_names = inputs
        self.state_names = [n for n in names if n not in inputs]
        if not self.state_names:
            raise ValueError(f"the physics model has no expert state left once the inputs {inputs} are removed.")
        self.register_buffer("state_index", torch.tensor([names.index(n) for n in self.state_names]), persistent=False)
        self.register_buffer(
            "input_index", torch.tensor([names.index(n) for n in inputs], dtype=torch.long), persistent=False
        )
        self.n_full = len(names)
        self.theta_names = list(per_trajectory)
        self._fast = (
            isinstance(physics, SymbolicODE) and physics.compiled.linear is None and not physics.compiled.groups
        )
        self._paths: list[str] = []
        params = dict(self._params())
        for name in self.theta_names:
            if name not in params:
                raise ValueError(
                    f"per-trajectory parameter {name!r} is not a named parameter of the physics model; known: "
                    f"{sorted(params)}."
                )
            path, p = params[name]
            if not p.learnable or p.shape != torch.Size([]):
                raise ValueError(
                    f"per-trajectory parameter {name!r} must be a learnable scalar Param (its value is the population "
                    f"value), got learnable={p.learnable}, shape {tuple(p.shape)}."
                )
            self._paths.append(path)

    def _params(self) -> list[tuple[str, tuple[str, Param]]]:
        """``(name, (module path, Param))`` of every named parameter of the physics model (outermost first)."""
        out: dict[str, tuple[str, Param]] = {}
        for path, module in self.physics.named_modules():
            if isinstance(module, Param):
                name = path.rsplit(".", 1)[-1]
                if name not in out or len(path) < len(out[name][0]):
                    out[name] = (path, module)
        return list(out.items())

    @property
    def state_dim(self) -> int:
        """Number of expert states ``D_e``."""
        return len(self.state_names)

    @property
    def input_dim(self) -> int:
        """Number of input channels ``C``."""
        return len(self.input_names)

    def param(self, name: str) -> Param:
        """The :class:`Param` named ``name``."""
        return dict(self._params())[name][1]

    @property
    def param_names(self) -> list[str]:
        """Names of the physics model's named scalar parameters (what a known observation map may read)."""
        return [name for name, (_, p) in self._params() if p.shape == torch.Size([])]

    def parameter_values(self, theta_raw: Tensor | None, batch: int, like: Tensor) -> Tensor:
        """``(B, E)`` values (their units) of :attr:`param_names`, one row per trajectory.

        Per-trajectory parameters take their values from ``theta_raw`` ``(B, P)`` (unconstrained), the others their
        population value; ``like`` gives the dtype and device.
        """
        params = dict(self._params())
        own = (
            dict(zip(self.theta_names, self.constrained(theta_raw).unbind(-1), strict=True))
            if (theta_raw is not None and self.theta_names)
            else {}
        )
        cols = [own[name] if name in own else params[name][1]().to(like).expand(batch) for name in self.param_names]
        return torch.stack(cols, dim=-1) if cols else like.new_zeros((batch, 0))

    def population_raw(self) -> Tensor:
        """``(P,)`` unconstrained population values of the per-trajectory parameters (learnable)."""
        if not self.theta_names:
            return torch.zeros(0)
        return torch.stack(self.per_trajectory_raw())

    def per_trajectory_raw(self) -> list[Tensor]:
        """The unconstrained population parameters ``raw`` of the per-trajectory parameters (in order)."""
        return [cast(Param, self.physics.get_submodule(p)).raw for p in self._paths]

    def constrained(self, theta_raw: Tensor) -> Tensor:
        """Unconstrained ``(B, P)`` -> the parameters' values ``(B, P)`` (their units)."""
        cols = [
            functional_call(self.physics.get_submodule(p), {"raw": theta_raw[:, i]}, ())
            for i, p in enumerate(self._paths)
        ]
        return torch.stack(cols, dim=-1) if cols else theta_raw

    def forward(self, t: Tensor, z_e: Tensor, u: Tensor | None = None, theta_raw: Tensor | None = None) -> Tensor:
        """``dz_e/dt``.

        Parameters
        ----------
        t
            ``(B,)`` times.
        z_e
            ``(B, D_e)`` expert states.
        u
            ``(B, C)`` inputs at ``t`` (``None`` when the model has none).
        theta_raw
            ``(B, P)`` unconstrained per-trajectory parameters (``None``: the population values).

        Returns
        -------
        Tensor
            ``(B, D_e)``.
        """
        B = z_e.shape[0]
        y = z_e.new_zeros((B, self.n_full))
        y = y.index_copy(-1, self.state_index, z_e)
        if self.input_dim:
            if u is None or u.shape != (B, self.input_dim):
                got = None if u is None else tuple(u.shape)
                raise ValueError(
                    f"the expert needs inputs u of shape {(B, self.input_dim)} ({self.input_names}), got {got}."
                )
            y = y.index_copy(-1, self.input_index, u.to(z_e.dtype))
        if theta_raw is None or not self.theta_names:
            f = self.physics(t, y)
        elif self._fast:
            # A SymbolicODE: its compiled equations take the parameter values directly (no module swap).
            physics = cast(SymbolicODE, self.physics)
            values = dict(zip(self.theta_names, self.constrained(theta_raw).unbind(-1), strict=True))
            for name in physics.param_names:
                if name not in values:
                    values[name] = physics.params[name]()
            f = physics.compiled(t, y, [values[n] for n in physics.param_names])
        else:
            if theta_raw.shape != (B, len(self.theta_names)):
                raise ValueError(
                    f"theta_raw must have shape {(B, len(self.theta_names))} (one column per {self.theta_names}), got "
                    f"{tuple(theta_raw.shape)}."
                )
            swap = {f"{p}.raw": theta_raw[:, i] for i, p in enumerate(self._paths)}
            f = functional_call(self.physics, swap, (t, y), strict=False)
            if f.shape != y.shape:
                raise ValueError(
                    f"the physics model returned {tuple(f.shape)} with per-trajectory parameters of shape ({B},); its "
                    f"equations must broadcast them against the state columns (expected {tuple(y.shape)})."
                )
        return f.index_select(-1, self.state_index)
