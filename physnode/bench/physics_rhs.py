"""Cost of the compiled physics right-hand sides against hand-written torch references.

For each system the compiled model (:mod:`physnode.physics`) and an independent hand-written torch function
of the same equations are called on the same batch of states; the table gives the median time per call
(forward only, and forward plus backward to the parameters), the ratio compiled / hand-written and the
largest difference of the outputs. Target: ratio <= 1.5 for the Hamiltonian systems.

Run with ``python -m physnode.bench physics-rhs [--batch 1024] [--repeats 7]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..physics import Hamiltonian, Lagrangian, NBodyGravity, Param
from ._common import ACA_MASSES, K1, K2, Table, ThreeBody, fmt_float, fmt_seconds, make_parser, setup, time_median

__all__ = ["run"]

RHS = Callable[[Tensor, Tensor], Tensor]


def _kepler(device: torch.device) -> tuple[torch.nn.Module, RHS, int]:
    m, k = 0.8, 1.5
    model = Hamiltonian(
        "(px**2 + py**2)/(2*m) - k*m/sqrt(x**2 + y**2)",
        ["x", "y"],
        ["px", "py"],
        {"m": Param(m, positive=True), "k": Param(k, positive=True)},
    )
    m_t = torch.tensor(m, dtype=torch.float64, device=device, requires_grad=True)
    k_t = torch.tensor(k, dtype=torch.float64, device=device, requires_grad=True)

    def ref(t: Tensor, y: Tensor) -> Tensor:
        q, p = y[..., :2], y[..., 2:]
        r3 = q.square().sum(-1, keepdim=True).pow(1.5)
        return torch.cat([p / m_t, -k_t * m_t * q / r3], -1)

    ref.params = (m_t, k_t)  # type: ignore[attr-defined]
    return model, ref, 4


def _chain(device: torch.device, n: int = 16) -> tuple[torch.nn.Module, RHS, int]:
    k, m = 2.0, 0.5
    qs, ps = [f"q{i}" for i in range(n)], [f"p{i}" for i in range(n)]
    walls = ["0", *qs, "0"]
    kinetic = " + ".join(f"{p}**2" for p in ps)
    springs = " + ".join(f"({walls[i + 1]} - {walls[i]})**2" for i in range(n + 1))
    H = f"({kinetic})/(2*m) + k*({springs})/2"
    model = Hamiltonian(H, qs, ps, {"k": Param(k, positive=True), "m": Param(m, positive=True)})
    k_t = torch.tensor(k, dtype=torch.float64, device=device, requires_grad=True)
    m_t = torch.tensor(m, dtype=torch.float64, device=device, requires_grad=True)

    def ref(t: Tensor, y: Tensor) -> Tensor:
        q, p = y[..., :n], y[..., n:]
        padded = torch.nn.functional.pad(q, (1, 1))
        return torch.cat([p / m_t, k_t * (padded[..., :-2] - 2 * q + padded[..., 2:])], -1)

    ref.params = (k_t, m_t)  # type: ignore[attr-defined]
    return model, ref, 2 * n


def _double_pendulum(device: torch.device) -> tuple[torch.nn.Module, RHS, int]:
    vals = {"m1": 1.0, "m2": 0.6, "l1": 1.1, "l2": 0.8, "g": 9.81}
    L = (
        "(m1 + m2)*l1**2*a_dot**2/2 + m2*l2**2*b_dot**2/2 + m2*l1*l2*a_dot*b_dot*cos(a - b)"
        " + (m1 + m2)*g*l1*cos(a) + m2*g*l2*cos(b)"
    )
    model = Lagrangian(L, ["a", "b"], {k: Param(v, positive=True) for k, v in vals.items()})
    m1, m2, l1, l2, g = (torch.tensor(v, dtype=torch.float64, device=device, requires_grad=True) for v in vals.values())

    def ref(t: Tensor, y: Tensor) -> Tensor:
        a, b, w1, w2 = y.unbind(-1)
        den = 2 * m1 + m2 - m2 * torch.cos(2 * a - 2 * b)
        s = torch.sin(a - b)
        c = torch.cos(a - b)
        a_dd = (
            -g * (2 * m1 + m2) * torch.sin(a)
            - m2 * g * torch.sin(a - 2 * b)
            - 2 * s * m2 * (w2**2 * l2 + w1**2 * l1 * c)
        ) / (l1 * den)
        b_dd = 2 * s * (w1**2 * l1 * (m1 + m2) + g * (m1 + m2) * torch.cos(a) + w2**2 * l2 * m2 * c) / (l2 * den)
        return torch.stack([w1, w2, a_dd, b_dd], -1)

    ref.params = (m1, m2, l1, l2, g)  # type: ignore[attr-defined]
    return model, ref, 4


def _three_body(device: torch.device) -> tuple[torch.nn.Module, RHS, int]:
    model = NBodyGravity(3, dim=3, masses=Param(list(ACA_MASSES), positive=True), k_r=K2, k_v=K1)
    ref = ThreeBody().to(device)
    ref.params = tuple(ref.parameters())  # type: ignore[attr-defined]
    return model, ref, 18


SYSTEMS = {
    "kepler (Hamiltonian)": _kepler,
    "harmonic chain, 16 masses (Hamiltonian)": _chain,
    "double pendulum (Lagrangian)": _double_pendulum,
    "three-body (NBodyGravity)": _three_body,
}


def _per_call(fn: Callable[[], object], calls: int, repeats: int, device: torch.device) -> float:
    def block() -> None:
        for _ in range(calls):
            fn()

    seconds, _ = time_median(block, repeats, device)
    return seconds / calls


def _measure(
    model: torch.nn.Module, ref: RHS, t: Tensor, y: Tensor, w: Tensor, calls: int, repeats: int, device: torch.device
) -> tuple[float, float, float, float, float]:
    with torch.no_grad():
        diff = float((model(t, y) - ref(t, y)).abs().max())
        fwd_c = _per_call(lambda: model(t, y), calls, repeats, device)
        fwd_r = _per_call(lambda: ref(t, y), calls, repeats, device)
    params_c = [p for p in model.parameters() if p.requires_grad]
    params_r = list(ref.params)  # type: ignore[attr-defined]
    fb_c = _per_call(lambda: torch.autograd.grad((model(t, y) * w).sum(), params_c), calls, repeats, device)
    fb_r = _per_call(lambda: torch.autograd.grad((ref(t, y) * w).sum(), params_r), calls, repeats, device)
    return diff, fwd_c, fwd_r, fb_c, fb_r


def run(argv: list[str] | None = None) -> int:
    """Time the compiled right-hand sides against hand-written references and print a table.

    Parameters
    ----------
    argv
        Command-line options (see ``--help``); ``None`` reads none.

    Returns
    -------
    int
        Exit status (0).
    """
    parser = make_parser("physnode bench physics-rhs", __doc__.splitlines()[0], repeats=7)
    parser.add_argument("--batch", type=int, default=1024, help="batch size (default 1024)")
    parser.add_argument("--calls", type=int, default=200, help="calls per timed repeat (default 200)")
    args = parser.parse_args([] if argv is None else argv)
    device = setup(args)
    batch, calls, repeats = args.batch, args.calls, args.repeats
    if args.quick:
        batch, calls, repeats = min(batch, 64), 5, 1
    if batch < 1 or calls < 1:
        raise SystemExit("--batch and --calls must be >= 1.")
    table = Table(
        f"Compiled physics RHS vs hand-written torch (batch {batch}, float64, {torch.get_num_threads()} thread(s))",
        [
            "system",
            "D",
            "compiled",
            "hand-written",
            "ratio",
            "compiled f+b",
            "hand-written f+b",
            "ratio f+b",
            "max diff",
        ],
    )
    table.notes.append(f"median over {repeats} repeats of {calls} calls each, after a warm-up; per-call times.")
    table.notes.append("f+b: forward plus backward of sum(dy/dt * w) to the physical parameters.")
    gen = torch.Generator().manual_seed(0)
    for name, build in SYSTEMS.items():
        model, ref, D = build(device)
        model = model.to(device=device, dtype=torch.float64)
        y = (torch.randn(batch, D, generator=gen, dtype=torch.float64) * 0.3 + 0.7).to(device)
        if D == 18:
            y[:, :9] = y[:, :9] + torch.arange(9, dtype=torch.float64, device=device) * 0.5
        t = torch.zeros(batch, dtype=torch.float64, device=device)
        w = torch.randn(batch, D, generator=gen, dtype=torch.float64).to(device)
        diff, fwd_c, fwd_r, fb_c, fb_r = _measure(model, ref, t, y, w, calls, repeats, device)
        table.add_row(
            {
                "system": name,
                "D": D,
                "compiled": fmt_seconds(fwd_c),
                "hand-written": fmt_seconds(fwd_r),
                "ratio": f"{fwd_c / fwd_r:.2f}",
                "compiled f+b": fmt_seconds(fb_c),
                "hand-written f+b": fmt_seconds(fb_r),
                "ratio f+b": f"{fb_c / fb_r:.2f}",
                "max diff": fmt_float(diff),
            }
        )
    print(table.render(markdown=args.markdown))
    return 0


if __name__ == "__main__":
    raise SystemExit(run())
