"""Fuzz catalogue, third round: inputs that used to give a silent wrong answer, a hang or an error that did not
name its cause (a raw torch / pathlib message, the wrong argument named), each now a clear error.

Each row: an id, a callable, the exception type and a regex of its message. Every case runs under a time
limit (``limit`` fixture of ``conftest.py``), so a hang fails the case instead of blocking the run.
"""

from __future__ import annotations

import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from physnode import NonFiniteError, fit, load_result, odeint, odeint_event, solve
from physnode.data import Boluses, Inputs, Trajectories, load, save, solver_ready_times
from physnode.datasets import make

F64 = torch.float64


# ---------------------------------------------------------------------------------------------- events
def fall(t: Tensor, y: Tensor) -> Tensor:
    """A ball in free fall: y = (height, velocity)."""
    return torch.stack([y[:, 1], torch.full_like(y[:, 0], -9.81)], dim=-1)


def height(t: Tensor, y: Tensor) -> Tensor:
    return y[:, 0]


def event(**kw: Any) -> Any:
    args: dict[str, Any] = dict(func=fall, y0=torch.tensor([[1.0, 0.0], [2.0, 0.0]], dtype=F64), t0=0.0)
    args.update(event_fn=height, t_end=2.0)
    args.update(kw)
    return odeint_event(args.pop("func"), args.pop("y0"), args.pop("t0"), args.pop("event_fn"), **args)


# ---------------------------------------------------------------------------------------------- solve
Y0 = torch.ones(2, 3, dtype=F64)
T = torch.linspace(0.0, 1.0, 5, dtype=F64)


def decay(t: Tensor, y: Tensor) -> Tensor:
    return -y


STEP = Inputs(torch.tensor([0.0, 1.0], dtype=F64), torch.ones(2, 1, dtype=F64))  # u = 1, one channel


# ---------------------------------------------------------------------------------------------- data
def traj(D: int = 3, **kw: Any) -> Trajectories:
    """Two trajectories, five times on [0, 1], ``D`` channels."""
    t = torch.linspace(0.0, 1.0, 5, dtype=F64)
    return Trajectories(t, torch.arange(2 * 5 * D, dtype=F64).reshape(2, 5, D), **kw)


# ---------------------------------------------------------------------------------------------- fit
class Decay(nn.Module):
    """dy/dt = -k y with one learnable rate."""

    def __init__(self) -> None:
        super().__init__()
        self.k = nn.Parameter(torch.tensor(0.5, dtype=F64))

    def forward(self, t: Tensor, y: Tensor) -> Tensor:
        return -self.k * y


def decay_data(**meta: Any) -> Trajectories:
    """Two trajectories x = exp(-1.3 t) with their initial states (replaced or extended by ``meta``)."""
    y = torch.exp(-1.3 * T)[None, :, None].expand(2, -1, -1).clone()
    return Trajectories(T, y, channels=["x"], metadata=[{"initial_state": [1.0], **meta}] * 2)


def quick_fit(data: Trajectories | None = None, **kw: Any) -> Any:
    return fit(Decay(), decay_data() if data is None else data, epochs=1, progress=False, uncertainty=False, **kw)


CASES: list[tuple[str, Callable[[], Any], type[Exception], str]] = [
    # Before: NotImplementedError "Could not run 'aten::ne.Scalar' with arguments from the 'SparseCPU' backend".
    ("solve-y0-sparse", lambda: odeint(decay, Y0.to_sparse(), T), TypeError, r"y0 must be a dense tensor.*to_dense"),
    ("solve-t-sparse", lambda: odeint(decay, Y0, T.to_sparse()), TypeError, r"t must be a dense tensor.*to_dense"),
    # Before: torch's "Tensor on device meta is not on the expected device cpu!" from inside the first step.
    (
        "solve-func-other-device",
        lambda: odeint(lambda t, y: (-y).to("meta"), Y0, T),
        ValueError,
        r"func returned dy/dt on meta for y on cpu; create the tensors func uses on y's device",
    ),
    # Before: a NaN from the user's norm= was blamed on atol ("the scaled error norm overflowed ... atol is too small").
    (
        "solve-norm-returns-nan",
        lambda: odeint(decay, Y0, T, norm=lambda e: e.abs().amax(-1) * math.nan),
        NonFiniteError,
        r"the norm= function returned a non-finite or negative value",
    ),
    # Before: a negative norm accepted every step (norm <= 1), so the steps grew without bound and the answer was
    # silently wrong.
    (
        "solve-norm-returns-negative",
        lambda: odeint(decay, Y0, T, norm=lambda e: -e.abs().amax(-1)),
        NonFiniteError,
        r"the norm= function returned a non-finite or negative value",
    ),
    # Before: "Linear.forward() takes 2 positional arguments but 3 were given" (a network of y alone as func).
    (
        "solve-func-of-y-alone",
        lambda: odeint(nn.Linear(3, 3).double(), Y0, T),
        TypeError,
        r"func is called as func\(t, y\).*Linear does not take two positional arguments.*lambda t, y: net\(y\)",
    ),
    # Before: "<lambda>() takes 2 positional arguments but 3 were given", not saying where the third comes from.
    (
        "solve-inputs-func-without-u",
        lambda: odeint(decay, Y0, T, inputs=STEP),
        TypeError,
        r"with inputs=, func is called as func\(t, y, u\).*decay does not take three",
    ),
    (
        "solve-inputs-func-own-type-error",
        lambda: odeint(
            lambda t, y, u: y + "x", Y0, T, inputs=Inputs(torch.tensor([0.0, 1.0], dtype=F64), torch.ones(2, 1))
        ),
        TypeError,
        r"unsupported operand",
    ),
    # Before: NaN times gave NaN states silently (NaN passed the interval check).
    (
        "dense-interpolate-nan",
        lambda: solve(decay, Y0, T, dense=True).interpolate(torch.tensor([0.5, math.nan], dtype=F64)),
        ValueError,
        r"t\[0, 1\] = nan is not a finite time",
    ),
    # Before: a billion-point sample grid was allocated (a hang); now bounded.
    ("event-samples-huge", lambda: event(samples=10**9), ValueError, r"samples must be .* no larger than 1000"),
    # Before: "t contains NaN or Inf (first at index (0, 0))", naming a t the caller never passed.
    ("event-t0-nan", lambda: event(t0=math.nan), ValueError, r"t0 must be a finite time, got nan"),
    ("event-t_end-inf", lambda: event(t_end=math.inf), ValueError, r"t_end must be a finite time, got inf"),
    (
        "event-t0-tensor-nan",
        lambda: event(t0=torch.tensor([0.0, math.nan], dtype=F64)),
        ValueError,
        r"t0 must be a finite time, got \[0.0, nan\]",
    ),
    # Before: raw torch errors ("element 0 of tensors does not require grad", "Subtraction ... bool tensors").
    (
        "event-returns-bool",
        lambda: event(event_fn=lambda t, y: y[:, 0] > 0.5),
        TypeError,
        r"event_fn\(t, y\) must return real floating-point values.*torch.bool.*not a comparison",
    ),
    (
        "event-returns-int",
        lambda: event(event_fn=lambda t, y: (y[:, 0] > 0.5).long()),
        TypeError,
        r"floating-point values.*got torch.int64",
    ),
    # Before: a NaN event function silently found no event (n_events = 0, t_final = t_end).
    (
        "event-returns-nan",
        lambda: event(event_fn=lambda t, y: y[:, 0] * math.nan),
        ValueError,
        r"event_fn\(t, y\) returned NaN or Inf for trajectory 0 .*guard divisions",
    ),
    (
        "event-nan-later",
        lambda: event(event_fn=lambda t, y: torch.sqrt(y[:, 0] - 0.5)),
        ValueError,
        r"returned NaN or Inf for trajectory 0 on the step",
    ),
    # Before: AttributeError "'list' object has no attribute 'reshape'" for an unbatched y0.
    (
        "event-unbatched-returns-list",
        lambda: odeint_event(lambda t, y: -y, torch.ones(2, dtype=F64), 0.0, lambda t, y: [0.0], t_end=1.0),
        ValueError,
        r"event_fn\(t, y\) must return one value per trajectory.*got list",
    ),
    # Before: a.concat(b), a static method called on an instance, silently returned b's trajectories alone.
    (
        "traj-instance-concat",
        lambda: traj().concat(traj()),
        TypeError,
        r"static method.*Trajectories.concat\(\[a, b\]\)",
    ),
    ("traj-concat-int", lambda: Trajectories.concat(3), TypeError, r"concat takes a list of Trajectories, got int"),
    ("traj-concat-item", lambda: Trajectories.concat([traj(), 3]), TypeError, r"items\[1\] is a int"),
    # Before: a string was split into characters: channels="xyz" gave channels x, y, z; ids="ab" ids a, b.
    ("traj-channels-string", lambda: traj(channels="xyz"), TypeError, r"channels must be a list.*\['xyz'\]"),
    ("traj-units-string", lambda: traj(D=2, units="ms"), TypeError, r"units must be a list of D = 2 strings"),
    ("traj-ids-string", lambda: traj(ids="ab"), TypeError, r"ids must be a list of N = 2 strings"),
    # Before: raw errors "'float' object is not iterable" / "tensors used as indices must be long ...".
    ("traj-split-float", lambda: traj().split_by_trajectory(0.5), TypeError, r"fractions must be a sequence .*0.8"),
    ("traj-split-strings", lambda: traj().split_by_trajectory(["a"]), TypeError, r"fractions must be numbers"),
    ("traj-select-none", lambda: traj().select_channels([]), ValueError, r"select at least one channel"),
    ("traj-select-string", lambda: traj().select_channels("y0"), TypeError, r"write \['y0'\]"),
    ("traj-select-twice", lambda: traj().select_channels(["y0", "y0"]), ValueError, r"channels must be distinct"),
    ("traj-index-by-id-string", lambda: traj()["0"], TypeError, r"index Trajectories with an int.*got '0'"),
    ("traj-split-seed-text", lambda: traj().split_by_trajectory([0.5, 0.5], seed="a"), TypeError, r"seed must be"),
    ("traj-to-dtype-text", lambda: traj().to(dtype="float32"), TypeError, r"dtype must be a floating torch dtype"),
    ("inputs-to-nonsense-device", lambda: STEP.to("gpu"), ValueError, r"'gpu' is not a torch device"),
    # Before: units="mg" for two channels gave units m and g; names="ab" names a and b.
    (
        "inputs-units-string",
        lambda: Inputs(T[:2], torch.ones(2, 2, dtype=F64), units="mg"),
        TypeError,
        r"units must be a list of 2 strings",
    ),
    ("inputs-names-string", lambda: Inputs(T[:2], torch.ones(2, 2, dtype=F64), names="ab"), TypeError, r"write"),
    # Before: torch's "new(): invalid data type 'str'".
    ("boluses-index-text", lambda: Boluses([0.5], [1.0], index=["x"]), TypeError, r"index must hold integers"),
    # Before: raw torch errors ("Expected one of cpu, cuda, ... device type", "Torch not compiled with CUDA").
    ("traj-to-nonsense-device", lambda: traj().to("gpu"), ValueError, r"'gpu' is not a torch device"),
    # Before: "index 5 is out of bounds for dimension 1 with size 5" from deep inside.
    (
        "ready-times-lengths-too-long",
        lambda: solver_ready_times(torch.zeros(2, 5, dtype=F64), torch.tensor([6, 5])),
        ValueError,
        r"lengths must hold .* between 1 and T = 5.*\[6, 5\]",
    ),
    # Before: pathlib's "expected str, bytes or os.PathLike object, not int".
    ("data-load-int-path", lambda: load(3), TypeError, r"path must be a str or os.PathLike .* got int"),
    ("data-save-none-path", lambda: save(traj(), None), TypeError, r"path must be a str .* got NoneType"),
    # Before: a non-bool flag was read by truth value: random_initial="no" drew random initial states.
    ("dataset-flag-string", lambda: make("pendulum", random_initial="no"), TypeError, r"random_initial must be True"),
    ("dataset-irregular-int", lambda: make("pendulum", irregular=1), TypeError, r"irregular must be True or False"),
    # Before: observe="theta" was split into the characters t, h, e, t, a.
    ("dataset-observe-string", lambda: make("pendulum", observe="theta"), TypeError, r"write \['theta'\]"),
    # Before: torch's "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8000000000000 bytes".
    ("dataset-too-large", lambda: make("pendulum", n_trajectories=10**12), ValueError, r"generate the data in parts"),
    # Before: Python's "float division by zero" from inside the first right-hand-side evaluation.
    ("dataset-zero-length", lambda: make("pendulum", length=0.0), ValueError, r"length must be a positive finite"),
    # Before: "object of type 'float' has no len()".
    ("dataset-t-span-number", lambda: make("pendulum", t_span=5.0), ValueError, r"t_span must be \(t0, t1\)"),
    # Before: ValueError "y0 contains NaN or Inf (first at index (0, 0))", naming a y0 the caller never passed.
    (
        "fit-initial-state-nan",
        lambda: quick_fit(decay_data(initial_state=[math.nan])),
        ValueError,
        r"metadata 'initial_state' of trajectory 0 .* not finite",
    ),
    (
        "fit-initial-time-nan",
        lambda: quick_fit(decay_data(initial_time=math.nan)),
        ValueError,
        r"metadata 'initial_time' must be one finite number per trajectory",
    ),
    # Before: the NaN of an observation map was reported as "the parameter 'k' of func contains NaN" after Adam's
    # step had spread it into the parameters.
    (
        "fit-observe-returns-nan",
        lambda: quick_fit(observe=lambda y: y * math.nan),
        ValueError,
        r"observe\(y\) returned NaN or Inf for finite states",
    ),
    # Before: torch's "new(): invalid data type 'str'" / "Tensor.item() cannot be called on meta tensors".
    ("fit-time-weight-text", lambda: quick_fit(time_weight=lambda t: "late"), TypeError, r"time_weight\(t\) must"),
    # Before: "y0 must be float32 or float64, got torch.float16", naming a y0 the caller never passed.
    (
        "fit-data-float16",
        lambda: quick_fit(decay_data().to(dtype=torch.float16)),
        TypeError,
        r"the data are torch.float16; .*data.to\(dtype=torch.float64\)",
    ),
    ("fit-device-meta", lambda: quick_fit(device="meta"), ValueError, r"device 'meta' holds shapes only"),
    # Before: IsADirectoryError "[Errno 21] Is a directory: '/tmp/.tmpXXXX.tmp' -> '/tmp'" after the first epoch.
    (
        "fit-checkpoint-folder",
        lambda: quick_fit(checkpoint=Path(tempfile.gettempdir())),
        ValueError,
        r"is a folder; give the path of",
    ),
    # Before: pathlib's "expected str, bytes or os.PathLike object, not int".
    ("result-load-int-path", lambda: load_result(3), TypeError, r"path must be a str or os.PathLike .* got int"),
]


@pytest.mark.parametrize(("call", "exc", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_a_clear_error(
    call: Callable[[], Any], exc: type[Exception], match: str, limit: Callable[[float], Any]
) -> None:
    with limit(30), pytest.raises(exc, match=match):
        call()


def test_catalogue_ids_are_unique() -> None:
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


def test_load_result_names_a_bad_map_location(tmp_path: Path, limit: Callable[[float], Any]) -> None:
    """Before: a nonsense map_location was reported as a corrupt result file ("save the result again")."""
    with limit(30):
        path = tmp_path / "result.pt"
        quick_fit().save(path)
        with pytest.raises(ValueError, match=r"map_location 'gpu' is not a torch device"):
            load_result(path, model=Decay(), map_location="gpu")
        with pytest.raises(TypeError, match=r"path must be a str or os.PathLike .* got list"):
            quick_fit().save([path])
        assert load_result(path, model=Decay(), map_location="cpu").params.keys() == {"k"}


# ---------------------------------------------------------------------------------------------- command line
CONFIG = """[model]
kind = "ode"
state = ["x"]
rhs = { x = "-k*x" }
[model.params]
k = { value = 0.5, positive = true }
[data]
file = "d.nc"
[fit]
epochs = 1
"""

CLI_CASES = [
    # Before: "expected str, bytes or os.PathLike object, not int" (pathlib's words, no file or key named).
    (
        "cli-config-output-dir-int",
        ["fit", "{tmp}/c.toml"],
        CONFIG + "[output]\ndir = 5\n",
        r"c.toml: \[output\] dir must be the path of the results folder as a string.*got 5",
    ),
    # Before: "[data] file ... does not exist" for a folder that does exist.
    ("cli-config-data-is-a-folder", ["fit", "{tmp}/c.toml"], CONFIG.replace('"d.nc"', '"."'), r"is a folder; give"),
    # Before: torch's "new(): invalid data type 'str'".
    (
        "cli-forecast-params-text",
        ["forecast", "three-body", "--params", "{tmp}/p.json", "--t-end", "2", "--out", "{tmp}/f.nc"],
        '{"params": {"masses": "heavy"}}',
        r"p.json: parameter 'masses' must be a number or a list of numbers, got 'heavy'",
    ),
    # Before: --observe "" generated every component (read as "not given"), while --observe "," was refused.
    (
        "cli-data-make-observe-empty",
        ["data", "make", "pendulum", "{tmp}/p.nc", "--observe", ""],
        "",
        r"observe must name distinct state components of pendulum",
    ),
    # Before: "no data file with the initial states: None does not exist".
    (
        "cli-forecast-without-data",
        ["forecast", "three-body", "--params", "{tmp}/p.json", "--t-end", "2", "--out", "{tmp}/f.nc"],
        '{"params": {"masses": [1.1, 1.1, 0.9]}}',
        r"three-body names no data file with the initial states of the forecast; pass --data FILE",
    ),
]


@pytest.mark.parametrize(("argv", "text", "stderr"), [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_command_line_names_the_cause(
    argv: list[str], text: str, stderr: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], limit: Any
) -> None:
    from physnode.cli import main

    (tmp_path / ("p.json" if "forecast" in argv else "c.toml")).write_text(text)
    decay_data().save(tmp_path / "d.nc")  # valid data, so that a fit case fails on its own fault only
    with limit(60):
        code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1, err
    assert re.search(stderr, err), err


def test_forecast_bounds_the_laplace_draws(limit: Callable[[float], Any]) -> None:
    """Before: n_samples=10**9 started a billion draws and solves (a hang); now bounded up front."""
    from physnode import forecast

    with limit(30):
        result = fit(Decay(), decay_data(), epochs=1, progress=False)
        with pytest.raises(ValueError, match=r"n_samples must be an integer from 2 to 100,000 .* got 1000000"):
            forecast(result, decay_data(), T, uncertainty="laplace", n_samples=10**6)


@pytest.mark.parametrize("wrt", ["parameter", "y0"])
def test_second_derivative_through_a_custom_backward_names_the_method(wrt: str, limit: Callable[[float], Any]) -> None:
    """Before: torch.autograd.grad(g, k) of a first-order aca gradient g stopped with torch's "One of the
    differentiated Tensors appears to not have been used in the graph"; now it reaches the method's message."""
    k = torch.tensor(0.7, dtype=F64, requires_grad=True)
    y0 = torch.ones(2, 3, dtype=F64, requires_grad=True)
    with limit(30):
        ys = odeint(lambda t, y: -k * y, y0, T, grad="aca", params=[k])
        x = k if wrt == "parameter" else y0
        (g,) = torch.autograd.grad(ys.sum(), x, create_graph=True)
        with pytest.raises(RuntimeError, match=r"double backward .* only with grad='direct'; grad='aca'"):
            torch.autograd.grad(g.sum(), x)
