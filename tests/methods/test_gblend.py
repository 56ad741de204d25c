"""G-Blending (online): weights against float64 hand computations; the blended loss."""

import pytest
import torch
import torch.nn.functional as F

from ogmge.methods import GBlending, blending_weights, floor_weights
from support.method_helpers import batch, tiny_model

# per head (L_train, L_val)
START = {"fused": (1.0, 1.1), "audio": (1.0, 1.0), "visual": (1.2, 1.2)}
END = {"fused": (0.5, 0.8), "audio": (0.6, 0.7), "visual": (1.1, 1.19)}
UNIFORM = {"fused": 1 / 3, "audio": 1 / 3, "visual": 1 / 3}


def test_weights_by_hand_without_floor():
    # dG = 0.3, 0.3, 0.01; dO = 0.2, 0.1, 0.09; raw = dG / dO^2 = 7.5, 30, 0.01/0.0081
    raw = {"fused": 0.3 / 0.2**2, "audio": 0.3 / 0.1**2, "visual": 0.01 / 0.09**2}
    total = sum(raw.values())
    w, info, fallback = blending_weights(START, END, UNIFORM, w_min=0.0, delta_o_min=1e-3)
    assert not fallback
    for h in raw:
        assert w[h] == pytest.approx(raw[h] / total, rel=1e-12, abs=0)
    assert info["visual"]["dO"] == pytest.approx(0.09, abs=1e-12)
    assert sum(w.values()) == pytest.approx(1.0, abs=1e-15)


def test_floor_gives_w_min_and_shares_the_rest():
    # visual's normalised weight (0.0319) is below 0.05: it gets 0.05, the others share 0.95 as 7.5 : 30
    w, _, _ = blending_weights(START, END, UNIFORM, w_min=0.05, delta_o_min=1e-3)
    assert w["visual"] == 0.05
    assert w["fused"] == pytest.approx(0.95 * 7.5 / 37.5, rel=1e-12)
    assert w["audio"] == pytest.approx(0.95 * 30 / 37.5, rel=1e-12)


def test_floor_repeats_until_no_head_is_below():
    w = floor_weights({"a": 0.9, "b": 0.06, "c": 0.04}, 0.1)
    # c -> 0.1, then b's share 0.9 * 0.06/0.96 = 0.05625 < 0.1 -> 0.1; a gets 0.8
    assert w == {"a": pytest.approx(0.8, abs=1e-15), "b": 0.1, "c": 0.1}


def test_negative_gain_gets_zero_raw_weight_then_the_floor():
    end = dict(END, visual=(1.1, 1.3))  # visual's validation loss grew: dG < 0
    w, info, fallback = blending_weights(START, end, UNIFORM, w_min=0.0, delta_o_min=1e-3)
    assert info["visual"]["dG"] < 0 and w["visual"] == 0.0 and not fallback
    w, _, _ = blending_weights(START, end, UNIFORM, w_min=0.1, delta_o_min=1e-3)
    assert w["visual"] == 0.1


def test_every_gain_non_positive_keeps_the_previous_weights():
    end = {h: (t, v + 0.05) for h, (t, v) in START.items()}
    prev = {"fused": 0.5, "audio": 0.3, "visual": 0.2}
    w, _, fallback = blending_weights(START, end, prev, w_min=0.05, delta_o_min=1e-3)
    assert fallback and w == prev


def test_tiny_overfitting_change_is_guarded():
    # audio: dO = 1e-4; the guard replaces dO^2 = 1e-8 by delta_o_min^2 = 1e-4
    start = {"fused": (1.0, 1.1), "audio": (1.0, 1.0), "visual": (1.0, 1.0)}
    end = {"fused": (0.8, 1.0), "audio": (0.8, 0.8001), "visual": (0.9, 0.95)}
    w, info, _ = blending_weights(start, end, UNIFORM, w_min=0.0, delta_o_min=1e-2)
    d_o = {"fused": 0.1, "audio": 1e-4, "visual": 0.05}
    raw = {"fused": 0.1 / max(d_o["fused"] ** 2, 1e-4), "audio": 0.1999 / 1e-4, "visual": 0.05 / max(0.05**2, 1e-4)}
    total = sum(raw.values())
    assert info["audio"]["dO"] == pytest.approx(1e-4, abs=1e-12)
    for h in raw:
        assert w[h] == pytest.approx(raw[h] / total, rel=1e-9)


def test_online_schedule_estimates_every_super_epoch_from_the_initial_model():
    gb = GBlending(["audio", "visual"], estimate="online", super_epoch=2, w_min=0.0, delta_o_min=1e-3)
    train0 = {h: t for h, (t, _) in START.items()}
    val0 = {h: v for h, (_, v) in START.items()}
    gb.begin(train_losses=train0, val_losses=val0)
    mid = {h: 0.9 for h in START}
    gb.end_epoch(0, train_losses=mid, val_losses=mid)  # inside the interval: no estimate
    assert gb.weights == pytest.approx(UNIFORM) and gb.estimates == 0
    gb.end_epoch(1, train_losses={h: t for h, (t, _) in END.items()}, val_losses={h: v for h, (_, v) in END.items()})
    expected, _, _ = blending_weights(START, END, UNIFORM, w_min=0.0, delta_o_min=1e-3)
    assert gb.weights == expected and gb.estimates == 1
    assert gb.start == {h: tuple(END[h]) for h in END}  # the next interval starts here
    state = gb.state_dict()
    other = GBlending(["audio", "visual"], estimate="online", super_epoch=2, w_min=0.0, delta_o_min=1e-3)
    other.load_state_dict(state)
    assert other.state_dict() == state


def test_blended_loss_is_the_weighted_sum_of_head_cross_entropies():
    names = ("audio", "visual")
    model = tiny_model(names, dtype=torch.float32)
    x, y = batch(names, dtype=torch.float32)
    gb = GBlending(list(names), estimate="online", w_min=0.0, weights={"fused": 0.5, "audio": 0.3, "visual": 0.2})
    out = model(x, labels=y)
    total, terms = gb.loss(out.logits, y, head_logits=out.head_logits)
    expected = (0.5 * F.cross_entropy(out.logits, y) + 0.3 * F.cross_entropy(out.head_logits["audio"], y)
                + 0.2 * F.cross_entropy(out.head_logits["visual"], y))
    assert abs(float(total.detach()) - float(expected.detach())) <= 1e-6
    assert set(terms) == {"fused", "audio", "visual"}
    total.backward()
    assert all(model.heads[n].weight.grad is not None for n in names)  # heads are trained


def test_non_finite_losses_keep_the_previous_weights():
    """An empty validation half gives NaN losses: the estimate falls back instead of spreading NaN."""
    from ogmge.methods.gblend import blending_weights

    previous = {"fused": 0.5, "a": 0.25, "b": 0.25}
    start = {h: (1.0, 1.2) for h in previous}
    end = {"fused": (0.8, float("nan")), "a": (0.9, 1.0), "b": (0.9, 1.1)}
    weights, _, fallback = blending_weights(start, end, previous, w_min=0.05)
    assert fallback is True and weights == previous


def test_a_one_sample_validation_split_is_refused_for_methods_fitted_on_it():
    import pytest

    from ogmge.methods import GBlending
    from ogmge.training.balancing import check_method

    with pytest.raises(ValueError, match="at least 2 validation samples, got 1"):
        check_method(GBlending(["a", "b"]), distributed=False, has_val=True, val_size=1)
    check_method(GBlending(["a", "b"]), distributed=False, has_val=True, val_size=2)
