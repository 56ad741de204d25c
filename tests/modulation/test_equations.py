"""Scores, ratios and coefficients (Eqs. 8-10) against hand computations."""

import math

import pytest
import torch

from ogmge import OGMGE
from ogmge.modulation import batch_scores, discrepancy_ratios, modulation_coefficients
from ogmge.modulation.scores import RATIO_EPS


def _softmax_row(row):
    m = max(row)
    e = [math.exp(x - m) for x in row]
    return [x / sum(e) for x in e]


def _hand_scores(rows, labels):
    return sum(_softmax_row(r)[y] for r, y in zip(rows, labels))


AUDIO = [[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [1.5, -0.5, 0.0], [0.0, 3.0, 1.0]]
VISUAL = [[0.2, 0.1, 0.0], [0.0, 0.0, 0.4], [0.3, 0.1, 0.2], [0.1, 0.5, 0.3]]
LABELS = [0, 2, 0, 1]


@pytest.mark.parametrize("dominant", ["audio", "visual"])
def test_two_modality_hand_computation_both_branches(dominant):
    audio, visual = (AUDIO, VISUAL) if dominant == "audio" else (VISUAL, AUDIO)
    alpha = 0.8
    s_a, s_v = _hand_scores(audio, LABELS), _hand_scores(visual, LABELS)
    rho_v = s_v / s_a
    rho_a = 1 / rho_v
    k_v = 1 - math.tanh(alpha * rho_v) if rho_v > 1 else 1.0
    k_a = 1 - math.tanh(alpha * rho_a) if rho_a > 1 else 1.0
    assert (k_a < 1) == (dominant == "audio") and (k_v < 1) == (dominant == "visual")

    enc = {"audio": torch.nn.Conv1d(1, 1, 1), "visual": torch.nn.Conv1d(1, 1, 1)}
    mod = OGMGE(enc, mode="OGM", alpha=alpha)
    logits = {"audio": torch.tensor(audio, dtype=torch.float64), "visual": torch.tensor(visual, dtype=torch.float64)}
    stats = mod.step(modality_logits=logits, labels=torch.tensor(LABELS), epoch=0)
    assert abs(float(stats.scores["audio"]) - s_a) < 1e-6
    assert abs(float(stats.scores["visual"]) - s_v) < 1e-6
    assert abs(float(stats.ratios["visual"]) - rho_v) < 1e-6
    assert abs(float(stats.ratios["audio"]) - rho_a) < 1e-6
    assert abs(float(stats.coefficients["audio"]) - k_a) < 1e-6
    assert abs(float(stats.coefficients["visual"]) - k_v) < 1e-6


def test_float32_logits_match_hand_computation():
    s = batch_scores({"a": torch.tensor(AUDIO)}, torch.tensor(LABELS))["a"]
    assert abs(float(s) - _hand_scores(AUDIO, LABELS)) < 1e-6


def test_equal_scores_give_unit_coefficients():
    for scores in ({"a": torch.tensor(3.7), "b": torch.tensor(3.7)},
                   {"a": torch.tensor(2.0), "b": torch.tensor(2.0), "c": torch.tensor(2.0)}):
        ratios = discrepancy_ratios(scores)
        assert all(float(r) == 1.0 for r in ratios.values())
        for rule in ("paper", "continuous"):
            k = modulation_coefficients(ratios, alpha=5.0, rule=rule)
            assert all(float(v) == 1.0 for v in k.values())


def test_paper_jump_and_continuous_option():
    just_above = {"a": torch.tensor(1.0 + 1e-6, dtype=torch.float64)}
    paper = modulation_coefficients(just_above, alpha=0.8)["a"]
    cont = modulation_coefficients(just_above, alpha=0.8, rule="continuous")["a"]
    assert abs(float(paper) - (1 - math.tanh(0.8 * (1 + 1e-6)))) < 1e-12
    assert abs(float(cont) - (1 - math.tanh(0.8 * 1e-6))) < 1e-12
    at_one = modulation_coefficients({"a": torch.tensor(1.0)}, alpha=0.8)["a"]
    assert float(at_one) == 1.0


def test_two_modality_ratio_is_the_papers_for_every_reduction():
    s = {"audio": torch.tensor(2.5, dtype=torch.float64), "visual": torch.tensor(7.0, dtype=torch.float64)}
    for reduce in ("mean", "min", "max"):
        r = discrepancy_ratios(s, reduce=reduce)
        assert float(r["visual"]) == pytest.approx(7.0 / 2.5, rel=1e-12)
        assert float(r["audio"]) == pytest.approx(2.5 / 7.0, rel=1e-12)


def test_three_modality_ratio_uses_mean_of_others():
    s = {"a": torch.tensor(6.0, dtype=torch.float64), "b": torch.tensor(2.0, dtype=torch.float64),
         "c": torch.tensor(4.0, dtype=torch.float64)}
    r = discrepancy_ratios(s)
    assert float(r["a"]) == pytest.approx(6.0 / 3.0)
    assert float(r["b"]) == pytest.approx(2.0 / 5.0)
    assert float(r["c"]) == pytest.approx(4.0 / 4.0)
    r_min = discrepancy_ratios(s, reduce="min")
    assert float(r_min["a"]) == pytest.approx(6.0 / 2.0)
    r_max = discrepancy_ratios(s, reduce="max")
    assert float(r_max["b"]) == pytest.approx(2.0 / 6.0)


def test_zero_score_gives_finite_ratio():
    r = discrepancy_ratios({"a": torch.tensor(0.0), "b": torch.tensor(5.0)})
    assert torch.isfinite(r["a"]) and torch.isfinite(r["b"])
    assert float(r["a"]) == 0.0
    assert float(r["b"]) == pytest.approx(5.0 / RATIO_EPS, rel=1e-5)
    both = discrepancy_ratios({"a": torch.tensor(0.0), "b": torch.tensor(0.0)})
    k = modulation_coefficients(both, alpha=0.8)
    assert float(k["a"]) == 1.0 and float(k["b"]) == 1.0


def test_sample_weight_excludes_samples():
    logits = {"a": torch.tensor(AUDIO)}
    w = torch.tensor([1.0, 0.0, 1.0, 0.0])
    s = batch_scores(logits, torch.tensor(LABELS), sample_weight=w)["a"]
    expected = _hand_scores([AUDIO[0], AUDIO[2]], [LABELS[0], LABELS[2]])
    assert abs(float(s) - expected) < 1e-6


def test_half_precision_logits_are_promoted():
    s16 = batch_scores({"a": torch.tensor(AUDIO, dtype=torch.float16)}, torch.tensor(LABELS))["a"]
    assert s16.dtype == torch.float32
    assert abs(float(s16) - _hand_scores(AUDIO, LABELS)) < 2e-3
