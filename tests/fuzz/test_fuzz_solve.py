"""A catalogue of bad inputs to :func:`physnode.odeint` / :func:`physnode.solve`: each must raise a clear error
(exception type plus a fragment of the message that says what was received or what to change) within a time
limit, never hang, never return a wrong result. A second table holds calls that must succeed and be right.

Each row is ``(id, call, exception type, message regex)``; ``call`` is a zero-argument lambda so the inputs are
built inside the time limit. Add a row for every new failure mode.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import pytest
import torch
from torch import nn

import physnode
from physnode import MaxStepsError, NonFiniteError, StepSizeUnderflowError, StiffnessError

F64 = torch.float64
#: The ``limit`` fixture of ``tests/fuzz/conftest.py``: ``with limit(seconds): ...`` (SIGALRM-based).
Limit = Callable[[float], AbstractContextManager[None]]
LIMIT_S = 10.0  # every case is a quick check (well under a second); 10 s only catches hangs and runaway solves


def decay(t, y):
    return -y


def y0() -> torch.Tensor:
    return torch.ones(2, 3, dtype=F64)


def ts() -> torch.Tensor:
    return torch.linspace(0, 1, 5, dtype=F64)


def ode(**kw):
    """``odeint(decay, y0(), ts(), ...)`` with the keyword overrides ``func=``, ``y0=``, ``t=`` and any option."""
    func = kw.pop("func", decay)
    y = kw.pop("y0", None)
    t = kw.pop("t", None)
    return physnode.odeint(func, y0() if y is None else y, ts() if t is None else t, **kw)


def shape_changes_after(n: int, dtype: bool = False):
    calls = [0]

    def f(t, y):
        calls[0] += 1
        if calls[0] <= n:
            return -y
        return (-y).float() if dtype else -y[..., :1]

    return f


class NaNRate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rate = nn.Parameter(torch.tensor([1.0, float("nan"), 1.0], dtype=F64))

    def forward(self, t, y):
        return -self.rate * y


def fast_relaxation(t, y):
    return -1e6 * (y - torch.cos(t))


def neg_sqrt(t, y):
    return -torch.sqrt(torch.tensor(-1.0, dtype=F64)) * y


BAD: list[tuple[str, Callable[[], object], type[BaseException], str]] = [
    # --- func ---
    ("func-int", lambda: ode(func=3), TypeError, r"func must be callable as func\(t, y\), got int"),
    ("func-none", lambda: ode(func=None), TypeError, r"func must be callable.*got NoneType"),
    ("func-returns-none", lambda: ode(func=lambda t, y: None), ValueError, r"shape of y, \(2, 3\); got NoneType"),
    ("func-returns-list", lambda: ode(func=lambda t, y: [0.0]), ValueError, r"must return dy/dt.*got list"),
    ("func-wrong-shape", lambda: ode(func=lambda t, y: y[:, :2]), ValueError, r"shape of y, \(2, 3\); got \(2, 2\)"),
    ("func-wrong-dtype", lambda: ode(func=lambda t, y: y.float()), TypeError, r"func returned torch.float32"),
    (
        "func-shape-changes-later",
        lambda: ode(func=shape_changes_after(3)),
        ValueError,
        r"on every call; evaluation 4 returned \(2, 1\)",
    ),
    (
        "func-dtype-changes-later",
        lambda: ode(func=shape_changes_after(3, dtype=True)),
        ValueError,
        r"shape and dtype of y, \(2, 3\) torch.float64.*returned \(2, 3\) torch.float32",
    ),
    ("func-raises-propagates", lambda: ode(func=lambda t, y: {}["missing"]), KeyError, r"missing"),
    # --- y0 ---
    ("y0-list", lambda: ode(y0=[1.0, 2.0]), TypeError, r"y0 must be a torch.Tensor, got list"),
    ("y0-numpy", lambda: ode(y0=np.ones(3)), TypeError, r"y0 must be a torch.Tensor, got ndarray"),
    ("y0-int64", lambda: ode(y0=torch.ones(3, dtype=torch.long)), TypeError, r"float32 or float64, got torch.int64"),
    ("y0-bool", lambda: ode(y0=torch.ones(3, dtype=torch.bool)), TypeError, r"float32 or float64, got torch.bool"),
    ("y0-float16", lambda: ode(y0=torch.ones(3).half()), TypeError, r"float32 or float64, got torch.float16"),
    ("y0-complex", lambda: ode(y0=torch.ones(3, dtype=torch.complex128)), TypeError, r"must be real.*y0.real"),
    ("y0-0d", lambda: ode(y0=torch.tensor(1.0, dtype=F64)), ValueError, r"\(D,\) or \(B, D\).*got \(\)"),
    ("y0-3d", lambda: ode(y0=torch.ones(2, 3, 4, dtype=F64)), ValueError, r"\(D,\) or \(B, D\).*got \(2, 3, 4\)"),
    ("y0-zero-dim", lambda: ode(y0=torch.ones(2, 0, dtype=F64)), ValueError, r"B, D >= 1, got \(2, 0\)"),
    ("y0-zero-batch", lambda: ode(y0=torch.ones(0, 3, dtype=F64)), ValueError, r"B, D >= 1, got \(0, 3\)"),
    ("y0-nan", lambda: ode(y0=torch.tensor([1.0, math.nan], dtype=F64)), ValueError, r"y0 contains NaN.*\(1,\)"),
    ("y0-inf", lambda: ode(y0=torch.tensor([math.inf, 1.0], dtype=F64)), ValueError, r"y0 contains NaN or Inf"),
    ("y0-meta", lambda: ode(y0=torch.ones(3, device="meta")), ValueError, r"y0 is a meta tensor"),
    # --- t ---
    ("t-list", lambda: ode(t=[0.0, 1.0]), TypeError, r"t must be a torch.Tensor.*got list"),
    ("t-float", lambda: ode(t=1.0), TypeError, r"t must be a torch.Tensor.*got float"),
    ("t-int64", lambda: ode(t=torch.arange(3)), TypeError, r"floating-point dtype, got torch.int64"),
    ("t-complex", lambda: ode(t=torch.ones(3, dtype=torch.complex64)), TypeError, r"floating-point dtype"),
    ("t-empty", lambda: ode(t=torch.zeros(0, dtype=F64)), ValueError, r"T >= 1.*got \(0,\)"),
    ("t-0d", lambda: ode(t=torch.tensor(1.0, dtype=F64)), ValueError, r"t must have shape \(T,\) or \(B, T\)"),
    ("t-3d", lambda: ode(t=torch.zeros(2, 2, 2, dtype=F64)), ValueError, r"got \(2, 2, 2\)"),
    ("t-nan", lambda: ode(t=torch.tensor([0.0, math.nan, 1.0], dtype=F64)), ValueError, r"t contains NaN.*\(1,\)"),
    ("t-inf", lambda: ode(t=torch.tensor([0.0, math.inf], dtype=F64)), ValueError, r"t contains NaN or Inf"),
    (
        "t-duplicate",
        lambda: ode(t=torch.tensor([0.0, 0.5, 0.5, 1.0], dtype=F64)),
        ValueError,
        r"strictly monotonic.*remove duplicates",
    ),
    (
        "t-not-monotonic",
        lambda: ode(t=torch.tensor([0.0, 0.4, 0.3, 1.0], dtype=F64)),
        ValueError,
        r"t\[2\] = 0.3.*t\[1\] = 0.4",
    ),
    (
        "t-per-trajectory-not-increasing",
        lambda: ode(t=torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.7, 0.6]], dtype=F64)),
        ValueError,
        r"t\[1, 2\] = 0.6",
    ),
    (
        "t-batch-mismatch",
        lambda: ode(t=torch.linspace(0, 1, 4, dtype=F64).repeat(3, 1)),
        ValueError,
        r"t of shape \(3, 4\) need y0 of shape \(B, D\) with B = 3; got y0 of shape \(2, 3\)",
    ),
    (
        "t-2d-unbatched-y0",
        lambda: ode(y0=torch.ones(3, dtype=F64), t=ts().repeat(1, 1)),
        ValueError,
        r"need y0 of shape \(B, D\) with B = 1; got y0 of shape \(3,\)",
    ),
    ("t-meta", lambda: ode(t=torch.zeros(3, device="meta")), ValueError, r"t is on meta but y0 is on cpu"),
    (
        "t-overflows-float32",
        lambda: ode(y0=torch.ones(3), t=torch.tensor([0.0, 1e300], dtype=F64)),
        ValueError,
        r"t overflows y0's dtype torch.float32",
    ),
    # --- rtol / atol ---
    ("rtol-bool", lambda: ode(rtol=True), TypeError, r"rtol must be a non-negative float.*got True \(bool\)"),
    ("rtol-str", lambda: ode(rtol="1e-6"), TypeError, r"rtol must be .*got '1e-6' \(str\)"),
    ("rtol-none", lambda: ode(rtol=None), TypeError, r"rtol must be .*got None \(NoneType\)"),
    ("rtol-negative", lambda: ode(rtol=-1e-6), ValueError, r"rtol must be a non-negative finite number"),
    ("rtol-nan", lambda: ode(rtol=math.nan), ValueError, r"rtol must be a non-negative finite number, got nan"),
    ("rtol-inf", lambda: ode(rtol=math.inf), ValueError, r"rtol must be a non-negative finite number, got inf"),
    (
        "rtol-below-float32-resolution",
        lambda: ode(y0=torch.ones(3), t=ts().float(), rtol=1e-12),
        ValueError,
        r"rtol = 1e-12 is below the resolution of torch.float32.*rtol >= 1.2e-06.*float64",
    ),
    (
        "rtol-below-float64-resolution",
        lambda: ode(rtol=1e-20),
        ValueError,
        r"below the resolution of torch.float64.*rtol >= 2.2e-15",
    ),
    ("atol-bool", lambda: ode(atol=False), TypeError, r"atol must be .*got False \(bool\)"),
    ("atol-list", lambda: ode(atol=[1e-9, 1e-9, 1e-9]), TypeError, r"atol must be .*tensor of shape \(D,\).*list"),
    (
        "atol-wrong-length",
        lambda: ode(atol=torch.full((2,), 1e-9, dtype=F64)),
        ValueError,
        r"atol of shape \(2,\) does not fit the state of dimension D = 3.*shape \(3,\)",
    ),
    (
        "atol-2d",
        lambda: ode(atol=torch.full((2, 3), 1e-9, dtype=F64)),
        ValueError,
        r"atol of shape \(2, 3\) does not fit",
    ),
    (
        "atol-negative-component",
        lambda: ode(atol=torch.tensor([1e-9, -1e-9, 1e-9], dtype=F64)),
        ValueError,
        r"atol must be non-negative and finite in every component",
    ),
    ("atol-int-tensor", lambda: ode(atol=torch.ones(3, dtype=torch.long)), TypeError, r"atol must be .*torch.int64"),
    (
        "atol-subnormal-float32",
        lambda: ode(y0=torch.ones(3), t=ts().float(), atol=1e-40),
        ValueError,
        r"atol = 1e-40 is below the smallest normal torch.float32",
    ),
    ("rtol-atol-both-zero", lambda: ode(rtol=0.0, atol=0.0), ValueError, r"rtol and atol cannot both be zero"),
    # --- step_size ---
    ("fixed-without-step", lambda: ode(method="rk4"), ValueError, r"takes fixed steps here and needs step_size"),
    ("step-negative", lambda: ode(method="rk4", step_size=-0.1), ValueError, r"step_size must be a positive finite"),
    ("step-zero", lambda: ode(method="rk4", step_size=0.0), ValueError, r"step_size must be a positive finite"),
    ("step-nan", lambda: ode(method="rk4", step_size=math.nan), ValueError, r"step_size must be a positive finite"),
    ("step-str", lambda: ode(method="rk4", step_size="0.1"), TypeError, r"step_size must be a positive float.*str"),
    ("step-bool", lambda: ode(method="rk4", step_size=True), TypeError, r"step_size must be .*True \(bool\)"),
    # --- max_steps ---
    ("max-steps-zero", lambda: ode(max_steps=0), ValueError, r"max_steps must be a positive integer, got 0"),
    ("max-steps-negative", lambda: ode(max_steps=-1), ValueError, r"max_steps must be a positive integer, got -1"),
    ("max-steps-float", lambda: ode(max_steps=100.0), TypeError, r"max_steps must be a positive integer.*float"),
    ("max-steps-bool", lambda: ode(max_steps=True), TypeError, r"max_steps must be .*True \(bool\)"),
    ("max-steps-str", lambda: ode(max_steps="100"), TypeError, r"max_steps must be .*'100' \(str\)"),
    (
        "max-steps-below-intervals",
        lambda: ode(t=torch.linspace(0, 1, 10, dtype=F64), max_steps=5),
        ValueError,
        r"max_steps = 5 cannot cover the 9 observation intervals.*at least 9",
    ),
    # --- method / grad ---
    ("method-typo", lambda: ode(method="dopri6"), ValueError, r"unknown method='dopri6'.*Did you mean 'dopri[58]'"),
    ("method-short", lambda: ode(method="tsit"), ValueError, r"Did you mean 'tsit5'"),
    ("method-upper-case", lambda: ode(method="DOPRI5"), ValueError, r"Did you mean 'dopri5'"),
    ("method-int", lambda: ode(method=5), TypeError, r"method must be a name .*or a Solver instance, got int"),
    ("method-none", lambda: ode(method=None), TypeError, r"method must be a name.*got NoneType"),
    ("grad-typo", lambda: ode(grad="adjiont"), ValueError, r"unknown grad='adjiont'.*Did you mean 'adjoint'"),
    ("grad-int", lambda: ode(grad=1), TypeError, r"grad must be a name.*got int"),
    ("grad-mali-wrong-method", lambda: ode(grad="mali"), ValueError, r"grad='mali'.*pass method='alf'"),
    # --- options ---
    ("options-list", lambda: ode(options=[("adaptive", False)]), TypeError, r"options must be a dict.*list"),
    (
        "options-unknown",
        lambda: ode(options={"safety_factor": 0.5}),
        ValueError,
        r"unknown option 'safety_factor' for method='dopri5', grad='direct'; accepted: adaptive, compile, "
        r"error_estimate, integral_controller, step_grad, "
        r"stiffness_check\.",
    ),
    # Gradient methods without options used to advertise object's (*args, **kwargs) as options.
    ("options-args", lambda: ode(options={"args": 5}), ValueError, r"unknown option 'args'.*stiffness_check\.$"),
    ("options-kwargs", lambda: ode(grad="aca", options={"kwargs": {}}), ValueError, r"accepted: adaptive, compile,"),
    (
        "option-adaptive-string",
        lambda: ode(options={"adaptive": "no"}),
        TypeError,
        r"option 'adaptive' of method='dopri5' must be True/False or None, got 'no' \(str\)",
    ),
    ("option-adaptive-rk4", lambda: ode(method="rk4", options={"adaptive": True}), ValueError, r"no embedded error"),
    ("option-eta-string", lambda: ode(method="alf", options={"eta": "0.9"}), ValueError, r"eta must be a finite"),
    (
        "option-mu-bool",
        lambda: ode(method="nag", step_size=0.1, options={"mu": True}),
        ValueError,
        r"mu must be a finite number in \[0, 1\).*got True",
    ),
    (
        "option-adjoint-rtol-string",
        lambda: ode(grad="adjoint", options={"adjoint_rtol": "1e-3"}),
        ValueError,
        r"adjoint_rtol must be a non-negative finite number",
    ),
    (
        "option-stiffness-check-string",
        lambda: ode(options={"stiffness_check": "off"}),
        TypeError,
        r"option 'stiffness_check' must be True or False",
    ),
    # --- params / raise_on_failure ---
    ("params-int", lambda: ode(params=5), TypeError, r"params must be a list of the tensors .*got 5 \(int\)"),
    ("params-str", lambda: ode(params="k"), TypeError, r"params must be a list.*\(str\)"),
    ("params-float-entry", lambda: ode(params=[1.0]), TypeError, r"params\[0\] must be a tensor, got float"),
    (
        "raise-on-failure-string",
        lambda: physnode.solve(decay, y0(), ts(), raise_on_failure="yes"),
        TypeError,
        r"raise_on_failure must be True or False, got 'yes'",
    ),
    # --- failures during the solve: the right error, early, with the cause ---
    (
        "stiff-fails-fast",
        lambda: ode(func=fast_relaxation, y0=torch.zeros(1, dtype=F64), t=torch.tensor([0.0, 10.0], dtype=F64)),
        StiffnessError,
        r"this looks stiff.*h·\|λ\| = 3\.\d",
    ),
    (
        "max-steps-exceeded",
        lambda: ode(t=torch.tensor([0.0, 100.0], dtype=F64), max_steps=5),
        MaxStepsError,
        r"exceeded max_steps.*max_steps = 5 .* for 1 observation interval",
    ),
    (
        "finite-time-blow-up",
        lambda: ode(func=lambda t, y: y**2, y0=torch.ones(1, dtype=F64), t=torch.tensor([0.0, 2.0], dtype=F64)),
        (StepSizeUnderflowError, NonFiniteError),
        r"trajectory 0 at t = (0\.99|1\.00)",
    ),
    ("nan-parameter", lambda: ode(func=NaNRate()), NonFiniteError, r"the parameter 'rate' of func contains NaN"),
    (
        "rhs-undefined-at-start",
        lambda: ode(func=neg_sqrt),
        NonFiniteError,
        r"func\(t0, y0\) is already NaN or Inf at the first evaluation although y0 is finite",
    ),
    (
        "rhs-undefined-at-start-fixed-step",
        lambda: ode(func=neg_sqrt, method="rk4", step_size=0.1),
        NonFiniteError,
        r"already NaN or Inf at the first evaluation",
    ),
    (
        "options-for-a-built-grad-object",
        lambda: ode(grad=physnode.GRADIENTS.build("adjoint"), options={"adjoint_rtol": 1e-6}),
        ValueError,
        r"cannot be applied to an already built grad object .*set them on the object instead",
    ),
]


@pytest.mark.parametrize(("call", "exc", "fragment"), [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_input_raises_a_clear_error(call, exc, fragment, limit: Limit) -> None:
    with limit(LIMIT_S), pytest.raises(exc, match=fragment):
        call()


def test_catalogue_is_large_and_ids_unique() -> None:
    ids = [row[0] for row in BAD]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 60


# --- calls that must succeed and be right ---------------------------------------------------------------------


def _fast_oscillator(t, y):
    return torch.stack([300.0 * y[..., 1], -300.0 * y[..., 0]], -1)


def float32_late_start_lands_on_the_final_time() -> None:
    # float32 state, t0 = 1000 (float32 spacing 6e-5), ~1000 steps of ~1e-3: the float64 clock keeps the phase;
    # a float32 clock ended at x = -0.75 instead of cos(300) = -0.02. 1e-3: rtol 1e-5 accumulated over ~1000 steps.
    ys = physnode.odeint(
        _fast_oscillator, torch.tensor([1.0, 0.0]), torch.tensor([1000.0, 1001.0]), rtol=1e-5, atol=1e-6
    )
    assert ys.dtype == torch.float32
    torch.testing.assert_close(
        ys[-1].double(), torch.tensor([math.cos(300.0), -math.sin(300.0)], dtype=F64), atol=1e-3, rtol=0
    )


def plain_function_without_grad() -> None:
    # A plain function, nothing requires grad, no params=: works for every gradient method (nothing to do).
    for grad in ("direct", "aca", "symplectic", "adjoint"):
        ys = physnode.odeint(decay, y0(), ts(), grad=grad, rtol=1e-9, atol=1e-12)
        expected = y0()[:, None, :] * torch.exp(-ts())[None, :, None]
        torch.testing.assert_close(ys, expected, rtol=1e-7, atol=0)  # 100x the solver tolerance


def nfe_counts_every_call() -> None:
    calls = [0]

    def f(t, y):
        calls[0] += 1
        return -y

    sol = physnode.solve(f, y0(), ts())
    assert sol.stats.nfe == calls[0]


def numpy_and_tensor_scalars_are_numbers() -> None:
    ys = ode(rtol=np.float64(1e-6), atol=torch.tensor(1e-9), max_steps=np.int64(1000))
    torch.testing.assert_close(ys[:, -1], torch.full((2, 3), math.exp(-1), dtype=F64), rtol=1e-5, atol=0)


def per_component_atol() -> None:
    ys = ode(atol=torch.tensor([1e-9, 1e-6, 1e-3], dtype=F64))
    assert torch.isfinite(ys).all()


def pure_relative_tolerance_with_a_zero_component() -> None:
    # atol = 0 and a component that stays 0 gave a 0/0 error norm (a NonFiniteError blaming func).
    ys = ode(
        func=lambda t, y: y * torch.tensor([0.0, -1.0, -1.0], dtype=F64),
        y0=torch.tensor([0.0, 1.0, 1.0], dtype=F64),
        atol=0.0,
    )
    torch.testing.assert_close(ys[-1, 0], torch.tensor(0.0, dtype=F64))


def float64_times_with_float32_state() -> None:
    ys = ode(y0=torch.ones(3), t=ts())
    assert ys.dtype == torch.float32
    torch.testing.assert_close(ys[-1], torch.full((3,), math.exp(-1)), rtol=1e-5, atol=0)


def backwards_and_single_time() -> None:
    ys = ode(t=ts().flip(0))
    torch.testing.assert_close(ys[:, -1], torch.full((2, 3), math.e, dtype=F64), rtol=1e-6, atol=0)
    assert ode(t=torch.zeros(1, dtype=F64)).shape == (2, 1, 3)


def mildly_stiff_van_der_pol_is_solved() -> None:
    def vdp(t, y):
        return torch.stack([y[..., 1], 10.0 * (1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0]], -1)

    sol = physnode.solve(vdp, torch.tensor([2.0, 0.0], dtype=F64), torch.linspace(0, 20, 3, dtype=F64), rtol=1e-3)
    assert sol.stats.success


def stiffness_check_off_is_accepted() -> None:
    assert ode(options={"stiffness_check": False}).shape == (2, 5, 3)


GOOD = [
    float32_late_start_lands_on_the_final_time,
    plain_function_without_grad,
    nfe_counts_every_call,
    numpy_and_tensor_scalars_are_numbers,
    per_component_atol,
    pure_relative_tolerance_with_a_zero_component,
    float64_times_with_float32_state,
    backwards_and_single_time,
    mildly_stiff_van_der_pol_is_solved,
    stiffness_check_off_is_accepted,
]


@pytest.mark.parametrize("case", GOOD, ids=[f.__name__.replace("_", "-") for f in GOOD])
def test_good_input_succeeds(case: Callable[[], None], limit: Limit) -> None:
    with limit(LIMIT_S):
        case()
