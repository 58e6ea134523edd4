"""AUROC, AUPRC and SHD against hand-computed cases and a brute-force pairwise count."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from physnode.causal import auprc, auroc, graph_metrics, shd, threshold

TRUTH = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]])  # edges 2->1, 3->2, 1->3 (A[i, j]: j -> i)


def test_perfect_and_reversed_rankings() -> None:
    good = TRUTH * 2.0 + 0.1
    assert auroc(good, TRUTH) == 1.0 and auprc(good, TRUTH) == 1.0
    bad = 1.0 - TRUTH
    assert auroc(bad, TRUTH) == 0.0


def test_hand_computed_case() -> None:
    # off-diagonal scores in row-major order: (0,1) .9 edge, (0,2) .8, (1,0) .7, (1,2) .1 edge, (2,0) .6 edge, (2,1) .2
    est = np.array([[5.0, 0.9, 0.8], [0.7, 5.0, 0.1], [0.6, 0.2, 5.0]])
    # positives .9 .1 .6, negatives .8 .7 .2: pairs won = 3 (.9) + 0 (.1) + 1 (.6 > .2) = 4 of 9
    assert math.isclose(auroc(est, TRUTH), 4 / 9, rel_tol=1e-15)
    # ranking .9(+) .8 .7 .6(+) .2 .1(+): precision at each recall step 1/1, 2/4, 3/6
    assert math.isclose(auprc(est, TRUTH), (1 + 2 / 4 + 3 / 6) / 3, rel_tol=1e-15)


def test_ties_count_half() -> None:
    est = np.ones((3, 3))
    assert auroc(est, TRUTH) == 0.5
    assert math.isclose(auprc(est, TRUTH), 0.5, rel_tol=1e-15)  # all entries enter at once: precision 3/6


def test_auroc_equals_brute_force_pairs() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        truth = rng.random((6, 6)) < 0.3
        est = np.round(rng.random((6, 6)), 1)  # rounding makes ties
        keep = ~np.eye(6, dtype=bool)
        s, y = est[keep], truth[keep]
        pos, neg = s[y], s[~y]
        ref = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)) / (len(pos) * len(neg))
        assert math.isclose(auroc(est, truth), ref, rel_tol=1e-12)


def test_shd_threshold_and_summary() -> None:
    est = np.array([[0, 1, 1], [0, 0, 0], [1, 0, 0]])  # one extra (3 -> 1), one missing (3 -> 2)
    assert shd(est, TRUTH) == 2
    assert shd(TRUTH.T, TRUTH) == 6  # every edge reversed: a deletion and an insertion each
    assert shd(np.eye(3), np.zeros((3, 3))) == 0  # self-edges ignored by default
    assert shd(np.eye(3), np.zeros((3, 3)), include_diagonal=True) == 3
    g = threshold(torch.tensor([[0.0, 0.5], [0.04, 0.0]]), 0.1, relative=True)
    assert g.tolist() == [[False, True], [False, False]]
    m = graph_metrics(TRUTH * 1.0, TRUTH)
    assert m == {"auroc": 1.0, "auprc": 1.0, "shd": 0, "n_edges": 3}


def test_undefined_and_bad_inputs() -> None:
    assert math.isnan(auroc(np.ones((3, 3)), np.zeros((3, 3))))
    with pytest.raises(ValueError, match=r"square \(d, d\) matrix"):
        auroc(np.ones(3), TRUTH)
    with pytest.raises(ValueError, match="same shape"):
        auroc(np.ones((2, 2)), TRUTH)
