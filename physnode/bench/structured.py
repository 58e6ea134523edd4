"""Structured-network benchmark: one batched computation for ``d`` per-variable networks, against a Python loop.

:class:`~physnode.causal.StructuredODE` gives each of ``d`` variables its own MLP and stores the ``d`` networks as
stacked tensors, so one evaluation is one matrix product per layer whatever ``d``. The peer is what one writes
without it: the same ``d`` networks as ``d`` separate modules (copies of the same weights), evaluated one after the
other in a Python loop, ``d`` small products per layer. Both compute the same field, which the table's note checks.

Task: one training step's worth of work, ``loss = Σ f(y)²`` over a batch of ``--batch`` states, forward and backward
with respect to every parameter; then one group-lasso proximal step on the input groups
(:class:`~physnode.causal.prox.GroupLassoProx`), timed on its own. Networks: one hidden layer of 16 tanh units
per variable plus the linear skip path, as in ``physnode bench causal``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ._common import Table, fmt_seconds, make_parser, setup, time_median

if TYPE_CHECKING:
    from ..causal import StructuredODE

__all__ = ["PerVariableMLPs", "run"]

COLUMNS = ("d", "parameters", "batched fwd+bwd", "loop fwd+bwd", "speed-up", "prox step", "max |batched − loop|")


class PerVariableMLPs(torch.nn.Module):
    """The peer: ``d`` separate one-hidden-layer MLPs (plus linear skip), evaluated one after the other in Python.

    Built from a first-order :class:`~physnode.causal.StructuredODE` with one hidden layer: network ``i`` gets its
    own parameter tensors, copies of ``W_in[i]``, ``b_in[i]``, ``W_out[i]``, ``b_out[i]`` (and ``W_lin[i]``), so it
    computes the same field with ``d`` small products per layer and its backward touches only its own tensors.
    """

    def __init__(self, model: StructuredODE) -> None:
        super().__init__()
        if model.order != 1 or len(model.hidden) != 1:
            raise ValueError("PerVariableMLPs mirrors a first-order StructuredODE with one hidden layer.")

        def own(x: Tensor) -> torch.nn.Parameter:
            return torch.nn.Parameter(x.detach().clone())

        self.W_in = torch.nn.ParameterList([own(model.W_in[i]) for i in range(model.d)])
        self.b_in = torch.nn.ParameterList([own(model.b_in[i]) for i in range(model.d)])
        self.W_out = torch.nn.ParameterList([own(model.W_out[i]) for i in range(model.d)])
        self.b_out = torch.nn.ParameterList([own(model.b_out[i]) for i in range(model.d)])
        lin = model.W_lin
        self.W_lin = None if lin is None else torch.nn.ParameterList([own(lin[i]) for i in range(model.d)])

    def field(self, y: Tensor) -> Tensor:
        """``(B, d)`` for states ``y (B, d)``: column ``i`` from network ``i`` alone."""
        cols = []
        for i in range(len(self.W_in)):
            out = torch.tanh(y @ self.W_in[i].T + self.b_in[i]) @ self.W_out[i] + self.b_out[i]
            if self.W_lin is not None:
                out = out + y @ self.W_lin[i]
            cols.append(out)
        return torch.stack(cols, dim=-1)


def _step(model: StructuredODE | PerVariableMLPs, y: Tensor) -> Callable[[], None]:
    def work() -> None:
        model.zero_grad(set_to_none=True)
        model.field(y).square().sum().backward()

    return work


def run(argv: list[str] | None = None) -> int:
    """Run the structured-network benchmark; print the table. Returns 0."""
    from ..causal import StructuredODE
    from ..causal.prox import GroupLassoProx

    p = make_parser(
        "physnode bench structured",
        "StructuredODE (d per-variable MLPs as one batched computation) against a Python loop over the d networks: "
        "forward+backward time per d, and the proximal step.",
    )
    p.add_argument(
        "--dims",
        default=None,
        help="comma-separated numbers of variables (default 10,30,100,300; add 1000 on a GPU; 4,16 with --quick)",
    )
    p.add_argument("--batch", type=int, default=256, help="states per evaluation (default 256)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64", help="default float64")
    args = p.parse_args(argv)
    device = setup(args)
    try:
        dims = [int(x) for x in (args.dims or ("4,16" if args.quick else "10,30,100,300")).split(",")]
    except ValueError:
        raise SystemExit(f"--dims: expected comma-separated integers such as 10,100, got {args.dims!r}.") from None
    if any(d < 1 for d in dims) or args.batch < 1:
        raise SystemExit(f"--dims and --batch must be positive, got {dims} and {args.batch}.")
    dtype = getattr(torch, args.dtype)
    repeats = 1 if args.quick else args.repeats
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    table = Table(
        f"StructuredODE fwd+bwd of Σ f(y)² on {args.batch} states, hidden (16,) tanh + linear skip, {args.dtype}, "
        f"device={device} ({name}), threads={args.threads}",
        COLUMNS,
    )
    gen = torch.Generator().manual_seed(0)
    for d in dims:
        model = StructuredODE(d, hidden=(16,), linear=True, dtype=dtype, device=device, generator=gen)
        assert model.W_lin is not None
        with torch.no_grad():  # the linear path starts at zero; give it weights so the comparison covers it
            model.W_lin.copy_(0.1 * torch.randn(d, d, generator=gen, dtype=dtype).to(device))
        y = torch.randn(args.batch, d, generator=gen, dtype=dtype).to(device)
        peer = PerVariableMLPs(model)
        with torch.no_grad():
            diff = float((model.field(y) - peer.field(y)).abs().max())
        t_batched, _ = time_median(_step(model, y), repeats, device)
        t_loop, _ = time_median(_step(peer, y), repeats, device)
        prox = GroupLassoProx(1e-3, 1e-2)
        t_prox, _ = time_median(partial(prox, model), repeats, device)
        table.add_row(
            {
                "d": d,
                "parameters": sum(q.numel() for q in model.parameters()),
                "batched fwd+bwd": fmt_seconds(t_batched),
                "loop fwd+bwd": fmt_seconds(t_loop),
                "speed-up": f"{t_loop / t_batched:.1f}×",
                "prox step": fmt_seconds(t_prox),
                "max |batched − loop|": f"{diff:.1e}",
            }
        )
    table.notes += [
        "time: median over the timed runs after a warm-up (CUDA: synchronised around each run).",
        "loop: d separate MLPs (copies of the same weights, each its own parameters) evaluated one after the "
        "other in Python, d small products per layer; "
        "speed-up: loop time / batched time.",
        "max |batched − loop|: the two compute the same field (round-off only).",
        "prox step: one group soft-thresholding of every input group (GroupLassoProx(λ=1e-3, lr=1e-2)).",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
