"""The paper's measurement protocol of bound_report (delta over candidates, ARD over all)."""

from __future__ import annotations

import numpy as np
import pytest

from densecore import KCenterGreedy, bound_report
from densecore.synthetic import gaussian_mixture


def _ref(x, centres, labels, cand):
    x = np.asarray(x, np.float64)
    d = np.sqrt(((x[:, None] - x[centres][None]) ** 2).sum(-1))
    a = d.argmin(1)
    dist = d.min(1)
    ard = np.array([dist[a == k].mean() if (a == k).any() else 0.0
                    for k in range(len(centres))])
    loss = float((labels[np.asarray(centres)][a] != labels).mean())
    return dist[cand].max(), ard, loss


def test_paper_protocol_against_brute_force():
    x, y = gaussian_mixture(600, dim=3, n_components=5, seed=0)
    cand = np.random.default_rng(0).choice(600, 120, replace=False)
    sel_local = KCenterGreedy().select(x[cand], 15).indices
    sel = cand[sel_local]
    lab = np.setdiff1d(np.arange(0, 600, 97), sel)
    rep = bound_report(x, sel, y, candidates=cand, labeled=lab)
    delta, ard, loss = _ref(x, np.r_[lab, sel], y, cand)
    assert rep.protocol == "paper"
    assert rep.delta == pytest.approx(delta)
    np.testing.assert_allclose(rep.ard, ard, rtol=1e-9)
    assert rep.max_ard == pytest.approx(ard.max())
    assert rep.coreset_loss == pytest.approx(loss)
    assert rep.counts.sum() == 600 and len(rep.ard) == len(lab) + 15


def test_delta_below_max_ard_is_possible_only_in_the_paper_protocol():
    # candidates in a tight cluster, the rest of the image far away: Table 4's pattern
    x = np.r_[np.zeros((10, 1)), np.linspace(0, 0.1, 10)[:, None], np.full((5, 1), 5.0)]
    cand = np.arange(20)
    same = bound_report(x, [0, 19])
    paper = bound_report(x, [0, 19], candidates=cand)
    assert same.max_ard <= same.delta
    assert paper.delta < paper.max_ard
    assert same.protocol == "same"


def test_bad_protocol_inputs():
    x = np.arange(10.0)[:, None]
    with pytest.raises(ValueError, match="disjoint"):
        bound_report(x, [1, 2], labeled=[2, 3])
    with pytest.raises(ValueError, match="candidates"):
        bound_report(x, [1, 2], candidates=[])
    with pytest.raises(ValueError, match="candidates"):
        bound_report(x, [1, 2], candidates=[11])
