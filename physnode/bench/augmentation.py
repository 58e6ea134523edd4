"""Augmentation benchmark: the toy tasks of *Dissecting Neural ODEs* (and ANODE) per neural-ODE design block.

Two binary classification tasks a plain neural ODE cannot solve exactly: **annuli** (2-D: the disc ``|x| < 0.5``
against the annulus ``1 < |x| < 1.5``) and **nested spheres** (3-D: the ball against the spherical shell). The
flow of ``dz/dt = f(z)`` on the data's own space is a homeomorphism, so it cannot move the inner class out of the
outer one, and a linear read-out of ``z(1)`` cannot separate them. Each model is ``lift → solve on [0, 1] →
linear read-out``, trained with full-batch Adam and cross-entropy; the rows differ only in the design block:

- ``plain``: ``z(0) = x``, ``f(z)`` an MLP (fails at this budget);
- ``galerkin``: the same with depth-variant weights ``θ(t)`` on a Fourier basis (still a homeomorphism of the
  data space, but a time-dependent one: it learns the squeeze faster than ``plain``);
- ``zero-augment``: ANODE, ``z(0) = [x, 0]`` with ``A`` extra zeros;
- ``input-augment``: a learned linear lift into ``R^(D + A)``;
- ``second-order``: ``z'' = a(z, z')`` from ``z(0) = x``, ``z'(0) = 0`` (state ``2 D``);
- ``data-controlled``: ``dz/dt = f(z, x)`` with ``z(0) = x``, read-out of ``z(1)`` only (state ``D``).

All rows get the same budget of Adam steps. Reported per row: test accuracy (fresh samples), the NFE of the
adaptive solve of the test set and the mean NFE per training step (forward and backward, counted on the field),
and the training time. torchdyn (its ``odeint`` and its ``Augmenter`` / ``DataControl`` layers, same networks,
same initial weights, same optimiser) runs the rows it has a layer for, when installed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import physnode
from physnode.nn import DataControlled, Fourier, GalerkinLinear, InputAugment, SecondOrder, TimeSequential, ZeroAugment

from ._common import Counted, Table, error_cell, fmt_seconds, make_parser, now, optional_import, setup

__all__ = ["MODELS", "TASKS", "make_task", "run"]

#: Task name -> dimension of the data.
TASKS: dict[str, int] = {"annuli": 2, "spheres": 3}
#: Radii of the classes: inner ball ``|x| < R1``, outer shell ``R2 < |x| < R3`` (Dupont et al. 2019).
R1, R2, R3 = 0.5, 1.0, 1.5
MODELS = ("plain", "galerkin", "zero-augment", "input-augment", "second-order", "data-controlled")
#: The rows torchdyn has layers for (its Augmenter and DataControl).
TORCHDYN_MODELS = ("plain", "zero-augment", "data-controlled")
COLUMNS = ("task", "model", "library", "state dim", "params", "test acc", "NFE test", "NFE/step", "train time")
RTOL = ATOL = 1e-3
#: Default training budget: enough for every augmented and the data-controlled model to pass 99% test accuracy on
#: both tasks, and the same for every row. Given many more steps a plain model creeps towards (never to) 100% by
#: squeezing a sliver of the outer class through a gap between the training samples.
EPOCHS = 80


def make_task(
    dim: int, n: int, generator: torch.Generator, dtype: torch.dtype = torch.float32
) -> tuple[Tensor, Tensor]:
    """``n`` points ``(n, dim)`` and labels ``(n,)``: half uniform in the ball ``|x| < R1`` (label 0), half uniform
    in the shell ``R2 < |x| < R3`` (label 1), shuffled."""
    n0 = n // 2
    direction = torch.randn(n, dim, generator=generator, dtype=torch.float64)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    r_in = R1 * u[:n0] ** (1 / dim)  # uniform in volume
    r_out = (R2**dim + u[n0:] * (R3**dim - R2**dim)) ** (1 / dim)
    x = direction * torch.cat([r_in, r_out]).unsqueeze(-1)
    y = torch.cat([torch.zeros(n0, dtype=torch.long), torch.ones(n - n0, dtype=torch.long)])
    perm = torch.randperm(n, generator=generator)
    return x[perm].to(dtype), y[perm]


def _mlp(n_in: int, n_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), nn.Tanh(), nn.Linear(hidden, n_out))


class _Autonomous(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return self.net(y)


class _Concat(nn.Module):
    """``f(t, z, x) = net([z, x])``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, t: Tensor, z: Tensor, x: Tensor) -> Tensor:
        return self.net(torch.cat([z, x], dim=-1))


@dataclass
class Parts:
    """A classifier ``head(readout(solve(field, lift(x))))`` and the state dimension of its ODE."""

    lift: Callable[[Tensor], Tensor]
    field: nn.Module
    head: nn.Module
    readout: Callable[[Tensor], Tensor]
    state_dim: int
    modules: tuple[nn.Module, ...]

    def parameters(self) -> list[nn.Parameter]:
        seen: list[nn.Parameter] = []
        for m in self.modules:
            seen += [p for p in m.parameters() if not any(p is q for q in seen)]
        return seen


def build(model: str, dim: int, hidden: int, augment: int, dtype: torch.dtype) -> Parts:
    """The physnode classifier of one row (parameters drawn from the global generator)."""
    identity = lambda z: z  # noqa: E731
    if model == "plain":
        field = _Autonomous(_mlp(dim, dim, hidden))
        head = nn.Linear(dim, 2)
        parts = Parts(identity, field, head, identity, dim, (field, head))
    elif model == "galerkin":
        basis = Fourier(2, period=1.0)
        field = TimeSequential(GalerkinLinear(dim, hidden, basis), nn.Tanh(), GalerkinLinear(hidden, dim, basis))
        head = nn.Linear(dim, 2)
        parts = Parts(identity, field, head, identity, dim, (field, head))
    elif model == "zero-augment":
        aug = ZeroAugment(augment)
        field = _Autonomous(_mlp(dim + augment, dim + augment, hidden))
        head = nn.Linear(dim + augment, 2)
        parts = Parts(aug, field, head, identity, dim + augment, (field, head))
    elif model == "input-augment":
        aug = InputAugment(dim, dim + augment, out_dim=2)
        field = _Autonomous(_mlp(dim + augment, dim + augment, hidden))
        parts = Parts(aug, field, aug.head, identity, dim + augment, (aug, field))
    elif model == "second-order":
        field = SecondOrder(_Autonomous(_mlp(2 * dim, dim, hidden)))
        head = nn.Linear(2 * dim, 2)
        parts = Parts(SecondOrder.initial_state, field, head, identity, 2 * dim, (field, head))
    elif model == "data-controlled":
        field = DataControlled(_Concat(_mlp(2 * dim, dim, hidden)), input_dim=dim)
        head = nn.Linear(dim, 2)
        parts = Parts(lambda x: field.initial_state(x, x), field, head, lambda y: y[..., :dim], dim, (field, head))
    else:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(MODELS)}.")
    for m in parts.modules:
        m.to(dtype)
    return parts


def _physnode_solve(field: nn.Module, y0: Tensor) -> tuple[Tensor, int]:
    t = torch.tensor([0.0, 1.0], dtype=y0.dtype, device=y0.device)
    sol = physnode.solve(field, y0, t, method="dopri5", rtol=RTOL, atol=ATOL, grad="direct")
    return sol.ys[:, -1], sol.stats.nfe


class _TorchdynSolve:
    """torchdyn's ``odeint`` (backprop through its dopri5) on the same field; data control through its layer."""

    def __init__(self, torchdyn_numerics) -> None:
        self.odeint = torchdyn_numerics.odeint

    def __call__(self, field: nn.Module, y0: Tensor) -> tuple[Tensor, int]:
        counted = Counted(field)
        t_span = torch.tensor([0.0, 1.0], dtype=y0.dtype, device=y0.device)
        _, ys = self.odeint(counted, y0, t_span, solver="dopri5", atol=ATOL, rtol=RTOL)
        return ys[-1], counted.n


def _torchdyn_parts(model: str, ref: Parts, dim: int, augment: int) -> Parts:
    """The torchdyn version of a physnode row, with the physnode networks' weights (same start)."""
    tdnn = optional_import("torchdyn.nn")
    if tdnn is None:
        raise ImportError("torchdyn.nn")
    identity = lambda z: z  # noqa: E731
    if model == "plain":
        return ref
    if model == "zero-augment":
        aug = tdnn.Augmenter(augment_idx=1, augment_dims=augment, order="last")
        return Parts(aug, ref.field, ref.head, identity, ref.state_dim, ref.modules)
    if model == "data-controlled":
        control = tdnn.DataControl()
        net = ref.field.field.net  # type: ignore[union-attr]
        field = _Autonomous(nn.Sequential(control, *net))

        def lift(x: Tensor) -> Tensor:
            control._control = x  # torchdyn's DataControl reads the batch's x from this attribute
            return x

        return Parts(lift, field, ref.head, identity, dim, (field, ref.head))
    raise ValueError(f"torchdyn has no layer for {model!r}")


def train(
    parts: Parts,
    solve: Callable[[nn.Module, Tensor], tuple[Tensor, int]],
    data: tuple[Tensor, Tensor, Tensor, Tensor],
    epochs: int,
    lr: float,
) -> dict[str, object]:
    """Full-batch Adam on cross-entropy; returns test accuracy, NFE of the test solve, NFE per step and time."""
    x_train, y_train, x_test, y_test = data
    opt = torch.optim.Adam(parts.parameters(), lr=lr)
    counter = Counted(parts.field)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    start = now()
    for _ in range(epochs):
        opt.zero_grad()
        z_t, _ = solve(counter, parts.lift(x_train))
        loss = nn.functional.cross_entropy(parts.head(parts.readout(z_t)), y_train)
        loss.backward()
        opt.step()
        sched.step()
    seconds = now() - start
    nfe_train = counter.n
    with torch.no_grad():
        z_t, nfe_test = solve(parts.field, parts.lift(x_test))
        acc = float((parts.head(parts.readout(z_t)).argmax(-1) == y_test).double().mean())
    return {
        "acc": acc,
        "nfe_test": nfe_test,
        "nfe_step": nfe_train / max(epochs, 1),
        "seconds": seconds,
    }


def run(argv: list[str] | None = None) -> int:
    """Run the benchmark; ``argv`` holds the options (see ``--help``). Returns the exit status."""
    p = make_parser("physnode bench augmentation", __doc__.splitlines()[0], repeats=1)
    p.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated (default {','.join(TASKS)})")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})")
    p.add_argument("--epochs", type=int, default=None, help=f"Adam steps per model (default {EPOCHS}; --quick 3)")
    p.add_argument("--n-train", type=int, default=None, help="training points (default 1024; --quick 32)")
    p.add_argument("--n-test", type=int, default=None, help="test points (default 2048; --quick 32)")
    p.add_argument("--hidden", type=int, default=32, help="hidden width of the MLPs (default 32)")
    p.add_argument("--augment", type=int, default=2, help="augmented dimensions A (default 2)")
    p.add_argument("--lr", type=float, default=2e-2, help="Adam learning rate (default 2e-2, cosine decay)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the initial weights (default 0)")
    p.add_argument("--skip", default="", help="comma-separated peer libraries to skip (torchdyn)")
    args = p.parse_args(argv)
    device = setup(args)
    epochs = args.epochs if args.epochs is not None else (3 if args.quick else EPOCHS)
    n_train = args.n_train or (32 if args.quick else 1024)
    n_test = args.n_test or (32 if args.quick else 2048)
    for name, value in (("--epochs", epochs), ("--n-train", n_train), ("--n-test", n_test), ("--hidden", args.hidden)):
        if value < 1 or (name == "--n-train" and value < 2):
            raise SystemExit(f"{name} must be a positive integer (>= 2 points for --n-train), got {value}.")
    if args.augment < 1:
        raise SystemExit(f"--augment must be >= 1, got {args.augment}.")
    tasks = [s.strip() for s in args.tasks.split(",") if s.strip()]
    models = [s.strip() for s in args.models.split(",") if s.strip()]
    for flag, chosen, known in (("--tasks", tasks, tuple(TASKS)), ("--models", models, MODELS)):
        bad = [c for c in chosen if c not in known]
        if bad:
            raise SystemExit(f"{flag}: unknown {bad}; choose from {', '.join(known)}.")
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    numerics = None if "torchdyn" in skip else optional_import("torchdyn.numerics")
    dtype = torch.float32

    table = Table(
        f"Classification after an ODE on [0, 1]: dopri5 rtol=atol={RTOL:g}, float32, {epochs} full-batch Adam steps "
        f"on {n_train} points, test on {n_test}, hidden={args.hidden}, A={args.augment}, device={device}, "
        f"threads={args.threads}, clock={args.clock}",
        COLUMNS,
    )
    for task in tasks:
        dim = TASKS[task]
        gen = torch.Generator().manual_seed(args.seed)
        x_train, y_train = make_task(dim, n_train, gen, dtype)
        x_test, y_test = make_task(dim, n_test, gen, dtype)
        data = (x_train.to(device), y_train.to(device), x_test.to(device), y_test.to(device))
        for model in models:
            libraries = ["physnode"] + (["torchdyn"] if model in TORCHDYN_MODELS and "torchdyn" not in skip else [])
            for lib in libraries:
                torch.manual_seed(args.seed)
                parts = build(model, dim, args.hidden, args.augment, dtype)
                for m in parts.modules:
                    m.to(device)
                row: dict[str, object] = {"task": task, "model": model, "library": lib, "state dim": parts.state_dim}
                if lib == "torchdyn":
                    if numerics is None:
                        table.add_row({**row, "test acc": "not installed"})
                        continue
                    parts = _torchdyn_parts(model, parts, dim, args.augment)
                    solve: Callable[[nn.Module, Tensor], tuple[Tensor, int]] = _TorchdynSolve(numerics)
                else:
                    solve = _physnode_solve
                row["params"] = sum(p.numel() for p in parts.parameters())
                try:
                    res = train(parts, solve, data, epochs, args.lr)
                except Exception as exc:  # one failing row must not stop the table
                    table.add_row({**row, "test acc": error_cell(exc)})
                    continue
                row.update(
                    {
                        "test acc": f"{100 * float(res['acc']):.1f}%",
                        "NFE test": res["nfe_test"],
                        "NFE/step": f"{float(res['nfe_step']):.0f}",
                        "train time": fmt_seconds(float(res["seconds"])),
                    }
                )
                table.add_row(row)
                if not args.markdown:
                    print(f"  {task} {model} {lib}: {row['test acc']} ({row['train time']})", flush=True)
    table.notes += [
        "test acc: fresh samples of the same distribution. The flow of a plain (or Galerkin) neural ODE is a "
        "homeomorphism of the data space: it cannot separate the classes exactly, only squeeze a thinning sliver "
        "of the outer class through a gap between samples, which takes many more steps than lifting the inner "
        "class along an extra dimension.",
        "NFE test: right-hand-side evaluations of the adaptive solve of the test set; NFE/step: per training step, "
        "forward and backward (direct backprop: the backward pass evaluates nothing), counted on the field.",
        "torchdyn: torchdyn.numerics.odeint (backprop through its dopri5) with its Augmenter / DataControl layers, "
        "the same networks, initial weights and optimiser, on the rows wired to those layers (plain, zero-augment, "
        "data-controlled); its NeuralODE class (pytorch-lightning) is not used.",
        f"time: training only ({epochs} steps), on the --clock chosen; one run per row, not a median.",
    ]
    print(table.render(args.markdown), flush=True)
    return 0
