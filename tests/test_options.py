"""``SolveOptions``: defaults defined once, every check in one place, round trips through dicts, JSON and TOML,
and the keywords of ``odeint`` / ``solve`` / ``forecast`` validated into it."""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import tomllib

import pytest
import torch

import physnode
from physnode.options import (
    DEFAULT_ATOL,
    DEFAULT_GRAD,
    DEFAULT_MAX_STEPS,
    DEFAULT_METHOD,
    DEFAULT_RTOL,
    FIT_GRAD,
    MissingStepSizeError,
    SolveOptions,
)

F64 = torch.float64


def _decay(t, y):
    return -y


def _y0() -> torch.Tensor:
    return torch.ones(2, 3, dtype=F64)


def _t() -> torch.Tensor:
    return torch.linspace(0.0, 1.0, 5, dtype=F64)


def test_defaults_are_defined_once():
    """The dataclass and every entry point's keyword defaults are the constants of physnode.options."""
    o = SolveOptions()
    assert (o.method, o.grad, o.rtol, o.atol, o.step_size, o.max_steps) == (
        DEFAULT_METHOD,
        DEFAULT_GRAD,
        DEFAULT_RTOL,
        DEFAULT_ATOL,
        None,
        DEFAULT_MAX_STEPS,
    )
    assert (DEFAULT_METHOD, DEFAULT_GRAD, FIT_GRAD, DEFAULT_RTOL, DEFAULT_ATOL) == (
        "dopri5",
        "direct",
        "aca",
        1e-7,
        1e-9,
    )
    for fn in (physnode.odeint, physnode.solve, physnode.forecast, physnode.fit):
        sig = inspect.signature(fn).parameters
        assert sig["method"].default is DEFAULT_METHOD, fn.__name__
        assert sig["rtol"].default is DEFAULT_RTOL and sig["atol"].default is DEFAULT_ATOL, fn.__name__
    assert inspect.signature(physnode.odeint).parameters["grad"].default is DEFAULT_GRAD
    assert inspect.signature(physnode.fit).parameters["grad"].default is FIT_GRAD


def test_three_body_command_uses_the_library_tolerances():
    """The CLI's three-body job leaves the tolerances to SolveOptions (1e-7 / 1e-9) unless given."""
    from physnode.commands.fit import _three_body_options, _three_body_parser

    opts = _three_body_options(_three_body_parser().parse_args([]))
    assert (opts.rtol, opts.atol, opts.method, opts.grad) == (DEFAULT_RTOL, DEFAULT_ATOL, "dopri5", "direct")
    opts = _three_body_options(_three_body_parser().parse_args(["--optimizer", "adam", "--rtol", "1e-6"]))
    assert (opts.rtol, opts.grad) == (1e-6, FIT_GRAD)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rtol": True}, TypeError, r"rtol must be a non-negative float.*got True \(bool\)"),
        ({"rtol": -1e-6}, ValueError, r"rtol must be a non-negative finite number"),
        ({"atol": math.nan}, ValueError, r"atol must be a non-negative finite number, got nan"),
        ({"atol": [1e-9]}, TypeError, r"atol must be .*tensor of shape \(D,\).*list"),
        ({"atol": torch.tensor([1e-9, -1.0])}, ValueError, r"atol must be non-negative and finite in every component"),
        ({"atol": torch.ones(3, dtype=torch.long)}, TypeError, r"atol must be .*torch.int64"),
        ({"rtol": 0.0, "atol": 0.0}, ValueError, r"rtol and atol cannot both be zero"),
        ({"method": "rk4"}, MissingStepSizeError, r"method='rk4' takes fixed steps here and needs step_size"),
        ({"method": "rk4", "step_size": 0.0}, ValueError, r"step_size must be a positive finite number"),
        ({"step_size": "0.1"}, TypeError, r"step_size must be a positive float.*'0.1' \(str\)"),
        ({"max_steps": 0}, ValueError, r"max_steps must be a positive integer, got 0"),
        ({"max_steps": 10.0}, TypeError, r"max_steps must be a positive integer or None.*10.0 \(float\)"),
        ({"method": "dopri9"}, ValueError, r"unknown method='dopri9'.*Did you mean 'dopri8'"),
        ({"grad": "acaa"}, ValueError, r"unknown grad='acaa'"),
        ({"method": 5}, TypeError, r"method must be a name"),
        ({"options": {"etta": 0.9}}, ValueError, r"unknown option 'etta' for method='dopri5', grad='direct'"),
        ({"options": {"stiffness_check": "no"}}, TypeError, r"option 'stiffness_check' must be True or False"),
        ({"options": [("eta", 1.0)]}, TypeError, r"options must be a dict"),
    ],
    ids=[
        "rtol-bool",
        "rtol-negative",
        "atol-nan",
        "atol-list",
        "atol-negative-component",
        "atol-int-tensor",
        "both-zero",
        "fixed-without-step",
        "step-zero",
        "step-str",
        "max-steps-zero",
        "max-steps-float",
        "unknown-method",
        "unknown-grad",
        "method-int",
        "unknown-option",
        "loop-option-type",
        "options-not-dict",
    ],
)
def test_validation_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        SolveOptions(**kwargs)


def test_missing_step_size_is_a_value_error():
    assert issubclass(MissingStepSizeError, ValueError)


def test_state_dependent_checks_in_tolerances():
    """Shapes and the dtype's resolution need the state: SolveOptions.tolerances(y0) checks them."""
    o = SolveOptions(atol=torch.full((2,), 1e-9, dtype=F64))
    with pytest.raises(ValueError, match=r"atol of shape \(2,\) does not fit the state of dimension D = 3"):
        o.tolerances(_y0())
    with pytest.raises(ValueError, match=r"rtol = 1e-12 is below the resolution of torch.float32"):
        SolveOptions(rtol=1e-12).tolerances(torch.ones(3))
    rtol, atol = SolveOptions(atol=torch.full((3,), 1e-9)).tolerances(_y0())
    assert rtol == DEFAULT_RTOL and atol.dtype == F64 and atol.shape == (3,)


def test_frozen_and_replace_validates_again():
    o = SolveOptions(method="rk4", step_size=0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        o.rtol = 1e-3  # type: ignore[misc]
    with pytest.raises(TypeError):
        o.options["x"] = 1  # type: ignore[index]
    assert o.replace(step_size=0.05).step_size == 0.05 and o.step_size == 0.1
    with pytest.raises(MissingStepSizeError):
        o.replace(step_size=None)
    with pytest.raises(TypeError, match=r"SolveOptions has no field\(s\) \['tol'\]"):
        o.replace(tol=1e-3)


def test_numbers_are_normalised():
    """NumPy scalars and 0-d tensors become floats, so the options stay JSON-safe."""
    np = pytest.importorskip("numpy")
    o = SolveOptions(rtol=np.float64(1e-6), atol=torch.tensor(1e-8), max_steps=np.int64(50))
    assert type(o.rtol) is float and type(o.atol) is float and type(o.max_steps) is int


CASES = [
    SolveOptions(),
    SolveOptions(method="rk4", grad="aca", step_size=0.01, max_steps=500),
    SolveOptions(method="alf", grad="mali", options={"eta": 0.9, "stiffness_check": False}),
    SolveOptions(grad="adjoint", rtol=1e-6, atol=torch.tensor([1e-8, 1e-9, 0.0], dtype=F64)),
]


def _toml(table: dict) -> str:
    """A [solver] table as TOML text (numbers via repr; lists; one inline sub-table)."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    return "[solver]\n" + "".join(f"{k} = {value(v)}\n" for k, v in table.items())


@pytest.mark.parametrize("opts", CASES, ids=["defaults", "fixed-step", "alf-options", "tensor-atol"])
def test_round_trip_dict_json_toml(opts):
    d = opts.to_dict()
    assert SolveOptions.from_dict(d) == opts
    text = json.dumps(d, allow_nan=False)  # JSON-safe
    assert SolveOptions.from_dict(json.loads(text)) == opts
    assert SolveOptions.from_dict(tomllib.loads(_toml(d))["solver"]) == opts


def test_from_dict_errors():
    with pytest.raises(ValueError, match=r"unknown solve option key\(s\) \['tolerance'\]; known: method, grad"):
        SolveOptions.from_dict({"tolerance": 1e-3})
    with pytest.raises(TypeError, match=r"solve options must be a table"):
        SolveOptions.from_dict([("method", "rk4")])
    with pytest.raises(TypeError, match=r"atol must be .*\['a'\]"):
        SolveOptions.from_dict({"atol": ["a"]})


def test_objects_are_recorded_by_their_registered_names():
    o = SolveOptions(method=physnode.SOLVERS.build("tsit5"), grad=physnode.GRADIENTS.build("aca"))
    assert o.to_dict()["method"] == "tsit5" and o.to_dict()["grad"] == "aca"
    assert o.build_solver() is o.method  # the object itself is solved with


def test_without_gradient_drops_gradient_options():
    o = SolveOptions(grad="adjoint", options={"adjoint_rtol": 1e-4, "stiffness_check": False})
    plain = o.without_gradient()
    assert plain.grad == "direct" and dict(plain.options) == {"stiffness_check": False}


def test_odeint_keywords_and_options_object_agree():
    kw = {"method": "rk4", "step_size": 0.05}
    a = physnode.solve(_decay, _y0(), _t(), **kw)
    b = physnode.solve(_decay, _y0(), _t(), options=SolveOptions(**kw))
    torch.testing.assert_close(a.ys, b.ys, rtol=0, atol=0)  # the same solve, same steps
    assert a.stats.n_accepted.tolist() == b.stats.n_accepted.tolist() and a.stats.nfe == b.stats.nfe
    ys = physnode.odeint(_decay, _y0(), _t(), options=SolveOptions(rtol=1e-10, atol=1e-12))
    torch.testing.assert_close(ys, torch.exp(-_t())[None, :, None].expand(2, 5, 3), rtol=1e-8, atol=0)


def test_options_object_and_keywords_together_raise():
    with pytest.raises(ValueError, match=r"rtol given both as keyword\(s\) and in options=SolveOptions"):
        physnode.odeint(_decay, _y0(), _t(), rtol=1e-3, options=SolveOptions())
    with pytest.raises(ValueError, match=r"method given both"):
        physnode.forecast(torch.nn.Identity(), _y0(), _t(), method="tsit5", options=SolveOptions())


def test_forecast_takes_options_object():
    class Decay(torch.nn.Module):
        def forward(self, t, y):
            return -y

    pred = physnode.forecast(Decay(), _y0(), _t(), options=SolveOptions(method="rk4", step_size=0.01, grad="aca"))
    torch.testing.assert_close(pred.values, torch.exp(-_t())[None, :, None].expand(2, 5, 3), rtol=1e-9, atol=0)
