"""The fit commands print the uncertainty note once: physnode.fit's UncertaintyWarning is not shown again."""

from __future__ import annotations

import importlib
import warnings

import pytest

from physnode.commands import fit as fit_command
from physnode.fit.uncertainty import UncertaintyWarning


def test_fit_api_silences_only_the_uncertainty_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_fit(*args: object, **kwargs: object) -> str:
        warnings.warn("standard errors at the solver's precision", UncertaintyWarning, stacklevel=2)
        warnings.warn("something else", UserWarning, stacklevel=2)
        return f"fitted {args} {kwargs}"

    # physnode.fit is also the name of the function exported by physnode: patch the sub-package module itself.
    monkeypatch.setattr(importlib.import_module("physnode.fit"), "fit", fake_fit)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = fit_command._fit_api()(1, lr=2)
    assert out == "fitted (1,) {'lr': 2}"
    assert [type(w.message) for w in caught] == [UserWarning]  # only the other warning reaches the user


def test_convergence_note_only_for_an_unconverged_gauss_newton_fit() -> None:
    from types import SimpleNamespace

    note = fit_command.convergence_note
    assert "after 7 epochs" in note(SimpleNamespace(optimizer="gauss-newton", converged=False, epochs=7))
    assert note(SimpleNamespace(optimizer="gauss-newton", converged=True, epochs=7)) is None
    assert note(SimpleNamespace(optimizer="adam", converged=False, epochs=300)) is None  # adam reports no convergence
