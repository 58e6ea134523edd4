"""FitResult.save / physnode.load_result: round trips without pickle, models that need ``model=``, bad files."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

import physnode
from physnode import FitResult, SolveOptions, load_result
from physnode.datasets import damped_oscillator
from physnode.fit.saving import FORMAT_VERSION, RESULT_FILE, ResultFileError, save_result
from physnode.physics import Hybrid, Param, SymbolicODE, from_config


def _physics_systems():
    """tests/physics/physics_systems.py (one example per physics class), imported by path from this folder."""
    if "physics_systems" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "physics_systems", Path(__file__).parents[1] / "physics" / "physics_systems.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["physics_systems"] = module
        spec.loader.exec_module(module)
    return sys.modules["physics_systems"]


PHYSICS_EXAMPLES = _physics_systems().PHYSICS_EXAMPLES

# A model rebuilt from its description runs the same compiled expressions on the same tensors; only a different
# order of floating-point operations in the re-parsed text could change the last bits.
ROUND_OFF = {"rtol": 1e-13, "atol": 1e-15}


def _result(model: nn.Module, **fields) -> FitResult:
    """A FitResult around ``model`` with small, known fields (no fit needed to test the file format)."""
    base = dict(
        params={"a": 1.5},
        uncertainty={"a": 0.1},
        history=[{"epoch": 1, "loss": 0.5, "params": {"a": 1.5}, "nfe": 10, "wall_time": 0.1}],
        model=model,
        solve_options=SolveOptions(method="tsit5", grad="aca", rtol=1e-8, atol=1e-10),
        loss=0.25,
        optimizer="adam",
        initial_states=torch.tensor([[1.0, 0.0]], dtype=torch.float64),
        covariance=torch.tensor([[0.01]], dtype=torch.float64),
        covariance_names=["a"],
    )
    base.update(fields)
    return FitResult(**base)


def _oscillator() -> SymbolicODE:
    params = {
        "omega0": Param(0.8, positive=True, units="rad s-1"),
        "zeta": Param(0.3, bounds=(0.0, 1.0)),
        "c": 0.1,
    }
    rhs = {"x": "v", "v": "-omega0**2*x - 2*zeta*omega0*v + c*sin(t) + 1/3*x**2"}
    return SymbolicODE(rhs, ["x", "v"], params)


def _states(model: nn.Module, x0: list[float], n: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    y = torch.tensor(x0, dtype=torch.float64) + 0.05 * torch.randn(n, len(x0), generator=g, dtype=torch.float64)
    return torch.linspace(0.0, 1.0, n, dtype=torch.float64), y


@pytest.mark.parametrize("cls", [c for c in PHYSICS_EXAMPLES if c is not Hybrid], ids=lambda c: c.__name__)
def test_physics_models_round_trip(cls, tmp_path):
    """Every describable physics class is rebuilt from its file alone: same class, parameters and right-hand side."""
    build, x0 = PHYSICS_EXAMPLES[cls]
    model = build()
    with torch.no_grad():  # move the learnable values off their initial guesses, as a fit would
        for p in model.parameters():
            p.add_(0.01)
    path = _result(model).save(tmp_path / "fit.pt")
    loaded = load_result(path)
    assert type(loaded.model) is cls
    t, y = _states(model, x0)
    torch.testing.assert_close(loaded.model(t, y), model(t, y), **ROUND_OFF)
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.model.state_dict()[k], v, rtol=0, atol=0)  # tensors are stored as such
    assert loaded.model.to_config() == model.to_config()


def test_fields_options_and_predictions_round_trip(tmp_path):
    """A real fit: every field comes back, and the loaded model's forecast equals the original's."""
    data = damped_oscillator(n_trajectories=2, n_times=8)
    model = from_config(
        {"kind": "ode", "state": ["x", "v"], "rhs": {"x": "v", "v": "-omega0**2*x - 2*zeta*omega0*v"},
         "params": {"omega0": {"value": 0.8, "positive": True, "units": "rad s-1"},
                    "zeta": {"value": 0.3, "bounds": [0.0, 1.0]}}}
    )  # fmt: skip
    result = physnode.fit(model, data, epochs=1, optimizer="gauss-newton", progress=False, rtol=1e-6, atol=1e-8)
    path = result.save(tmp_path)  # a folder: written as folder/result.pt
    assert path == tmp_path / RESULT_FILE
    loaded = FitResult.load(tmp_path)
    for f in dataclasses.fields(FitResult):
        if f.name in ("model", "solve_options"):
            continue
        a, b = getattr(result, f.name), getattr(loaded, f.name)
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(b, a, rtol=0, atol=0)
        else:
            assert b == a, f.name
    assert loaded.solve_options == result.solve_options
    assert loaded.provenance["data"]["digest"] == data.digest()
    assert loaded.provenance["data"]["units"] == ["m", "m s-1"]
    pred = physnode.forecast(result.model, data, data.times, options=result.solve_options)
    again = physnode.forecast(loaded.model, data, data.times, options=loaded.solve_options)
    torch.testing.assert_close(again.values, pred.values, **ROUND_OFF)


def test_own_module_needs_model(tmp_path):
    """A network physnode cannot describe is saved as its state dict; loading asks for the module."""
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    path = _result(net).save(tmp_path / "net.pt")
    with pytest.raises(ResultFileError, match=r"Sequential .*cannot rebuild.*model=MyModel"):
        load_result(path)
    fresh = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    loaded = load_result(path, model=fresh)
    y = torch.randn(3, 2, dtype=torch.float64)
    torch.testing.assert_close(loaded.model(y), net(y), rtol=0, atol=0)  # same weights, same operations
    with pytest.raises(ResultFileError, match="does not fit the model"):
        load_result(path, model=nn.Linear(2, 2))
    # A Hybrid's correction is a network too.
    build, _ = PHYSICS_EXAMPLES[Hybrid]
    hybrid_path = _result(build()).save(tmp_path / "hybrid.pt")
    with pytest.raises(ResultFileError, match="Hybrid.*no plain description"):
        load_result(hybrid_path)
    assert isinstance(load_result(hybrid_path, model=build()).model, Hybrid)


def test_unsavable_field_writes_nothing(tmp_path):
    target = tmp_path / "fit.pt"
    target.write_bytes(b"previous")
    bad = _result(_oscillator(), history=[{"epoch": 1, "callback": object()}])
    with pytest.raises(TypeError, match=r"FitResult.history\[0\]\['callback'\] holds a object"):
        bad.save(target)
    assert target.read_bytes() == b"previous"  # untouched
    assert [p.name for p in tmp_path.iterdir()] == ["fit.pt"]  # no temporary file left
    with pytest.raises(TypeError, match="saves a physnode.FitResult"):
        save_result({"params": {}}, tmp_path / "x.pt")
    with pytest.raises(OSError, match="does not exist"):
        _result(_oscillator()).save(tmp_path / "missing" / "fit.pt")


def _rewrite(path, change):
    """Load a result file's dict (plain data), change it and write it back."""
    doc = torch.load(path, weights_only=True)
    change(doc)
    torch.save(doc, path)


def test_bad_files(tmp_path):
    good = _result(_oscillator()).save(tmp_path / "good.pt")
    raw = good.read_bytes()
    cases = {
        "truncated.pt": (raw[: len(raw) // 2], "not a physnode result .*truncated"),
        "text.pt": (b"params = 1\n", "not a physnode result"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ResultFileError, match=message):
            load_result(tmp_path / name)
    # A zip whose payload is damaged: the central directory is intact, a member is not.
    damaged = tmp_path / "damaged.pt"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(damaged, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(item, data[: len(data) // 3] if item.filename.endswith("data.pkl") else data)
    with pytest.raises(ResultFileError, match="cannot be read .*corrupt"):
        load_result(damaged)
    # A pickled module (what torch.save(result.model) would write) is refused, not executed.
    pickled = tmp_path / "pickled.pt"
    torch.save(nn.Linear(2, 2), pickled)
    with pytest.raises(ResultFileError, match="cannot be read"):
        load_result(pickled)
    other = tmp_path / "other.pt"
    torch.save({"format": "something.else", "w": torch.zeros(2)}, other)
    with pytest.raises(ResultFileError, match="not a physnode fit result .*something.else"):
        load_result(other)
    newer = tmp_path / "newer.pt"
    newer.write_bytes(raw)
    _rewrite(newer, lambda d: d.update(format_version=FORMAT_VERSION + 1, physnode_version="9.0"))
    with pytest.raises(ResultFileError, match=r"newer physnode \('9.0', format version 2\).*Upgrade physnode"):
        load_result(newer)
    broken = tmp_path / "broken.pt"
    broken.write_bytes(raw)
    _rewrite(broken, lambda d: d.pop("fields"))
    with pytest.raises(ResultFileError, match="lacks its 'fields'"):
        load_result(broken)
    with pytest.raises(OSError, match="does not exist"):
        load_result(tmp_path / "nowhere.pt")
    (tmp_path / "folder").mkdir()
    with pytest.raises(OSError, match="folder without result.pt"):
        load_result(tmp_path / "folder")


def test_to_config_round_trips_text_and_constraints():
    model = _oscillator()
    config = model.to_config()
    assert config["params"]["omega0"] == {"value": pytest.approx(0.8), "learnable": True, "positive": True,
                                          "units": "rad s-1"}  # fmt: skip
    assert config["params"]["zeta"]["bounds"] == [0.0, 1.0]
    assert config["params"]["c"] == {"value": 0.1, "learnable": False}
    assert from_config(config).rhs_exprs == model.rhs_exprs
    # A saturated bounded value is written inside its bounds (the exact raw tensor is in the state dict).
    with torch.no_grad():
        model.params["zeta"].raw.fill_(100.0)
    assert 0.0 < model.to_config()["params"]["zeta"]["value"] < 1.0


def test_nbody_config_errors():
    with pytest.raises(ValueError, match=r"unknown params \['mass'\]"):
        from_config({"kind": "nbody", "n_bodies": 2, "params": {"mass": 1.0}})
    with pytest.raises(ValueError, match="masses must be a table with a list value"):
        from_config({"kind": "nbody", "n_bodies": 2, "params": {"masses": 1.0}})
    with pytest.raises(ValueError, match="nbody config: .*n_bodies must be a positive integer"):
        from_config({"kind": "nbody", "n_bodies": 0})
