"""Properties of Eqs. 8-10 and of ``OGMGE``, checked with hypothesis on float32 as it is.

Tolerances are stated per property and follow from float32 rounding
(``EPS32 = 2**-24``, the unit roundoff): no property is loosened to hide a bug, and the
ones float32 cannot meet exactly are stated with their bound.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ogmge import OGMGE
from ogmge.modulation import batch_scores, discrepancy_ratios, modulation_coefficients

EPS32 = 2.0**-24
NAMES = ("audio", "visual", "text", "depth", "imu", "flow")
RULES = ("paper", "continuous")
REDUCES = ("mean", "min", "max")

#: Positive scores: ``s_u`` is a sum of probabilities over a batch, so (0, batch size].
scores_f32 = st.floats(min_value=2.0**-10, max_value=2.0**10, width=32)
alphas = st.floats(min_value=0.01, max_value=5.0)


def _t(x: float) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def _ratios64(values: list[float], reduce: str) -> list[float]:
    """Eq. 9 in float64, the reference for float32."""
    out = []
    for i, s in enumerate(values):
        others = values[:i] + values[i + 1:]
        den = {"mean": sum(others) / len(others), "min": min(others), "max": max(others)}[reduce]
        out.append(s / den)
    return out


@given(s_a=scores_f32, s_v=scores_f32, reduce=st.sampled_from(REDUCES))
def test_two_modality_ratios_are_reciprocal(s_a, s_v, reduce):
    """rho_a * rho_v = 1 up to float32 rounding. Each ratio is one division (error <= EPS32),
    but the mean reduction recovers the other score as ``(s_a + s_v) - s_u``, which loses
    up to EPS32 * (s_a + s_v) absolutely: relative tolerance 4 * EPS32 * (1 + max/min)."""
    r = discrepancy_ratios({"audio": _t(s_a), "visual": _t(s_v)}, reduce=reduce)
    product = float(r["audio"]) * float(r["visual"])
    tol = 4 * EPS32 * (1 + max(s_a, s_v) / min(s_a, s_v))
    assert product == pytest.approx(1.0, rel=tol)
    assert float(r["visual"]) == pytest.approx(s_v / s_a, rel=tol)  # the paper's s_v / s_a


@given(rho=st.floats(min_value=0.0, max_value=1e6, width=32), alpha=alphas, rule=st.sampled_from(RULES))
def test_coefficient_lies_in_zero_one(rho, alpha, rule):
    """k in [0, 1]; float32 tanh saturates to 1, so k is exactly 0 once alpha * rho is large."""
    k = float(modulation_coefficients({"m": _t(rho)}, alpha=alpha, rule=rule)["m"])
    assert 0.0 <= k <= 1.0
    if rho <= 1:
        assert k == 1.0
    arg = alpha * (rho if rule == "paper" else rho - 1)
    if rho > 1 and arg > 10:  # tanh(10) rounds to 1 in float32
        assert k == 0.0


@given(r1=st.floats(min_value=0.0, max_value=100.0, width=32), r2=st.floats(min_value=0.0, max_value=100.0, width=32),
       alpha=alphas, rule=st.sampled_from(RULES))
def test_coefficient_is_non_increasing_in_the_ratio(r1, r2, alpha, rule):
    lo, hi = min(r1, r2), max(r1, r2)
    k = modulation_coefficients({"lo": _t(lo), "hi": _t(hi)}, alpha=alpha, rule=rule)
    assert float(k["lo"]) >= float(k["hi"])


@st.composite
def named_scores(draw, min_n=2, max_n=6, low=1.0, high=64.0):
    n = draw(st.integers(min_value=min_n, max_value=max_n))
    values = draw(st.lists(st.floats(min_value=low, max_value=high, width=32), min_size=n, max_size=n))
    return dict(zip(NAMES[:n], values))


@given(scores=named_scores(), order=st.randoms(use_true_random=False), reduce=st.sampled_from(REDUCES),
       alpha=alphas, rule=st.sampled_from(RULES))
def test_invariant_to_the_order_of_the_modalities(scores, order, reduce, alpha, rule):
    """Shuffling the modalities changes nothing but float32 summation order: min/max are
    exact; the mean's ratios agree within rtol 1e-4 (scores in [1, 64], N <= 6: the sum's
    rounding, (N + 2) EPS32 relative to the sum, is at most 64 * 8 EPS32 < 4e-5 of a
    ratio), and so do the coefficients (|dk/drho| <= alpha), away from the jump at rho = 1."""
    names = list(scores)
    shuffled = names[:]
    order.shuffle(shuffled)
    ref = _ratios64([scores[n] for n in names], reduce)
    assume(all(abs(r - 1) > 1e-3 for r in ref))

    def run(keys):
        mod = OGMGE({k: torch.nn.Linear(1, 1) for k in keys}, mode="OGM", alpha=alpha, coefficient=rule,
                    ratio_reduce=reduce)
        return mod.coefficients_from_scores({k: _t(scores[k]) for k in keys})

    (ra, ka), (rb, kb) = run(names), run(shuffled)
    for i, n in enumerate(names):
        if reduce == "mean":
            assert float(ra[n]) == pytest.approx(float(rb[n]), rel=1e-4)
            assert float(ka[n]) == pytest.approx(float(kb[n]), abs=1e-4 * alpha * max(1.0, ref[i]))
        else:
            assert torch.equal(ra[n], rb[n]) and torch.equal(ka[n], kb[n])
        assert float(ra[n]) == pytest.approx(ref[i], rel=1e-4)  # and both match float64


@st.composite
def logits_and_labels(draw):
    n = draw(st.integers(min_value=2, max_value=4))
    batch = draw(st.integers(min_value=2, max_value=16))
    classes = draw(st.integers(min_value=2, max_value=5))
    elems = st.floats(min_value=-6.0, max_value=6.0, width=32)
    logits = {m: torch.from_numpy(draw(arrays(np.float32, (batch, classes), elements=elems))) for m in NAMES[:n]}
    labels = torch.from_numpy(draw(arrays(np.int64, (batch,), elements=st.integers(0, classes - 1))))
    cuts = sorted(draw(st.sets(st.integers(min_value=1, max_value=batch - 1), max_size=batch - 1)))
    return logits, labels, cuts


def _modulator(names, alpha):
    torch.manual_seed(0)
    encoders = {m: torch.nn.Linear(3, 2) for m in names}
    for enc in encoders.values():
        for p in enc.parameters():
            p.grad = torch.ones_like(p)
    return OGMGE(encoders, mode="OGM", alpha=alpha), encoders


@given(data=logits_and_labels(), alpha=alphas)
def test_micro_batches_give_the_same_coefficients(data, alpha):
    """``accumulate`` per micro-batch then ``apply_`` equals one ``accumulate`` of the whole
    batch, up to the order of a float32 sum of at most 16 probabilities: scores within
    rtol 1e-5, coefficients and modulated gradients within 1e-5 * alpha * max(1, rho) (Eq. 10's
    slope), for ratios at least 1e-3 away from the jump at rho = 1."""
    logits, labels, cuts = data
    names = list(logits)
    whole = batch_scores(logits, labels)
    ref = _ratios64([float(whole[n]) for n in names], "mean")
    assume(all(abs(r - 1) > 1e-3 for r in ref))

    one, enc_one = _modulator(names, alpha)
    one.accumulate(logits, labels)
    stats_one = one.apply_(epoch=0)

    split, enc_split = _modulator(names, alpha)
    bounds = [0, *cuts, len(labels)]
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        split.accumulate({n: v[lo:hi] for n, v in logits.items()}, labels[lo:hi])
    stats_split = split.apply_(epoch=0)

    for i, n in enumerate(names):
        assert float(stats_split.scores[n]) == pytest.approx(float(stats_one.scores[n]), rel=1e-5)
        tol = 1e-5 * alpha * max(1.0, ref[i])
        assert float(stats_split.coefficients[n]) == pytest.approx(float(stats_one.coefficients[n]), abs=tol)
        for p, q in zip(enc_one[n].parameters(), enc_split[n].parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=0, atol=tol)


@given(score=scores_f32, n=st.integers(min_value=2, max_value=6), reduce=st.sampled_from(REDUCES),
       alpha=alphas, rule=st.sampled_from(RULES))
def test_equal_scores_give_k_one_exactly(score, n, reduce, alpha, rule):
    """Balanced modalities are left alone: k = 1 exactly, for any N (DESIGN §6)."""
    scores = {m: _t(score) for m in NAMES[:n]}
    k = modulation_coefficients(discrepancy_ratios(scores, reduce=reduce), alpha=alpha, rule=rule)
    assert all(float(v) == 1.0 for v in k.values()), {m: float(v) for m, v in k.items()}


def test_the_stated_float32_bounds_are_not_vacuous():
    """The reciprocal tolerance is tight enough to catch a wrong ratio: s_a / s_v swapped for
    s_v / s_a, or an off-by-one mean, fails it."""
    s_a, s_v = 3.0, 5.0
    tol = 4 * EPS32 * (1 + 5 / 3)
    assert abs((s_a / s_v) * (s_a / s_v) - 1) > tol
    assert abs((3.0 / 2.5) * (5.0 / 3.0) - 1) > tol
    assert math.tanh(10.0) == 1.0 or float(torch.tanh(_t(10.0))) == 1.0
