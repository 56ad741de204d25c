"""OPM applied in the classifier's forward pass as its feature transform (Wei et al., TPAMI 2024)."""

import pytest
import torch
import torch.nn.functional as F

from ogmge import OPM, batch_scores, discrepancy_ratios
from ogmge.modulation import opm_drop_probabilities
from support.model_helpers import NUM_CLASSES, opm_masks, tiny_model

N = 10_000


def dominant_audio_batch(model, generator):
    x = {"audio": torch.randn(N, 8, generator=generator), "visual": torch.randn(N, 8, generator=generator)}
    with torch.no_grad():
        model.fusion.fc["audio"].weight.mul_(8.0)  # sharpen audio's logits
        y = model.eval()(x).modality_logits["audio"].argmax(dim=1)  # labels that audio predicts
    return x, y


def test_drop_rate_matches_q_and_rescaling_keeps_the_mean():
    g = torch.Generator().manual_seed(0)
    model = tiny_model("sum", opm=OPM(p_exe=1.0, seed=0))
    x, y = dominant_audio_batch(model, g)
    model.train()
    out = model(x, labels=y)
    ratios = discrepancy_ratios(batch_scores(out.modality_logits, y))
    q = opm_drop_probabilities(ratios)
    assert ratios["audio"].item() > 1.5 and ratios["visual"].item() < 1
    assert opm_masks(model) is not None and bool(opm_masks(model).executed)
    drop_rate = 1 - opm_masks(model).keep["audio"].float().mean().item()
    assert 0.5 < q["audio"].item() <= 0.75
    assert abs(drop_rate - q["audio"].item()) <= 0.02
    # the weaker modality (rho <= 1) is never dropped
    assert bool(opm_masks(model).keep["visual"].all())
    assert torch.equal(out.sample_keep, opm_masks(model).keep["audio"] | opm_masks(model).keep["visual"])
    # one shared factor 1 / (1 - theta), theta = sum_u d_u q_u / sum_u d_u (equal widths here):
    # the expected number of surviving feature entries times the factor is the total width
    theta = (q["audio"].item() * 16 + 0.0 * 16) / 32
    scales = opm_masks(model).scales
    assert abs(scales["audio"].item() - 1 / (1 - theta)) <= 1e-6 and scales["visual"].item() == scales["audio"].item()
    kept_entries = sum(16 * opm_masks(model).keep[n].float().mean().item() for n in ("audio", "visual"))
    assert abs(kept_entries * scales["audio"].item() - 32) / 32 <= 0.02
    masked = opm_masks(model).apply(out.features)["audio"].detach()
    unmasked = out.features["audio"].detach()
    # the dominant modality's mean shrinks to (1 - q_a) / (1 - theta) of its own: the rebalancing
    ratio = (masked.mean() / unmasked.mean()).item()
    assert abs(ratio - (1 - q["audio"].item()) / (1 - theta)) <= 0.03
    # the fusion head saw the masked features, not the raw ones
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model.fusion(opm_masks(model).apply(out.features)))
        assert (out.logits - model.fusion(out.features)).abs().max() > 1e-3
    # dropped samples' features are zero before fusion
    dropped = ~opm_masks(model).keep["audio"]
    assert masked[dropped].abs().sum().item() == 0


def test_no_drops_when_ratios_are_at_most_one():
    model = tiny_model("sum", opm=OPM(p_exe=1.0, seed=0), names=("a", "b"))
    model.encoders["b"].load_state_dict(model.encoders["a"].state_dict())
    model.fusion.fc["b"].load_state_dict(model.fusion.fc["a"].state_dict())
    g = torch.Generator().manual_seed(0)
    xa = torch.randn(N, 8, generator=g)
    y = torch.randint(0, NUM_CLASSES, (N,), generator=g)
    out = model.train()({"a": xa, "b": xa.clone()}, labels=y)
    ratios = discrepancy_ratios(batch_scores(out.modality_logits, y))
    assert ratios["a"].item() == ratios["b"].item() == 1.0
    assert bool(opm_masks(model).keep["a"].all()) and bool(opm_masks(model).keep["b"].all())
    assert bool(out.sample_keep.all())


def test_opm_only_in_training_with_labels_and_seeded():
    g = torch.Generator().manual_seed(0)
    model = tiny_model("concat", opm=True)
    x = {"audio": torch.randn(16, 8, generator=g), "visual": torch.randn(16, 8, generator=g)}
    y = torch.randint(0, NUM_CLASSES, (16,), generator=g)
    assert model.train()(x).sample_keep is None
    assert model.eval()(x, labels=y).sample_keep is None
    a = tiny_model("concat", opm=OPM(seed=3))
    b = tiny_model("concat", opm=OPM(seed=3))
    b.load_state_dict(a.state_dict())
    ka = [a(x, labels=y).sample_keep for _ in range(4)]
    kb = [b(x, labels=y).sample_keep for _ in range(4)]
    assert all(torch.equal(p, q) for p, q in zip(ka, kb))
    # the generator state is saved with the model: a restored copy continues the stream
    c = tiny_model("concat", opm=OPM(seed=99))
    c.load_state_dict(a.state_dict())
    c(x, labels=y)
    a(x, labels=y)
    assert torch.equal(opm_masks(c).keep["audio"], opm_masks(a).keep["audio"])


@pytest.mark.parametrize("fusion", ["concat", "attention"])
def test_loss_uses_only_kept_samples(fusion):
    model = tiny_model(fusion, opm=OPM(p_exe=1.0, q_base=1.0, seed=0))
    g = torch.Generator().manual_seed(0)
    x = {"audio": torch.randn(32, 8, generator=g), "visual": torch.randn(32, 8, generator=g)}
    y = torch.randint(0, NUM_CLASSES, (32,), generator=g)
    out = model.train()(x, labels=y)
    # q_base = 1: the modality with rho > 1 is dropped everywhere, the other kept
    assert bool(out.sample_keep.all())
    loss = F.cross_entropy(out.logits[out.sample_keep], y[out.sample_keep])
    assert torch.isfinite(loss)


# ---------------------------------------------------------------- N = 3
# With two modalities one of them always has rho <= 1 and is never dropped, so no sample can
# lose every modality and the "loss uses only kept samples" test above cannot fail. Three
# modalities, two of them dominant (rho > 1), make the masks interesting. Note that with
# rho_u = s_u / reduce_{w != u} s_w (mean, min or max) the lowest-scoring modality always has
# rho <= 1, so through the classifier's own ratios a sample still keeps that one; a sample
# loses *every* modality only when every ratio handed to OPM exceeds 1 (ratios from another
# measure). Both cases are tested.

B3 = 4096


def three_modality_batch(model, generator):
    """``a`` and ``b`` identical and confident (labels = their argmax), ``c`` noise."""
    x = torch.randn(B3, 8, generator=generator)
    inputs = {"a": x, "b": x.clone(), "c": torch.randn(B3, 8, generator=generator)}
    with torch.no_grad():
        model.encoders["b"].load_state_dict(model.encoders["a"].state_dict())
        model.fusion.fc["a"].weight.mul_(8.0)
        model.fusion.fc["b"].load_state_dict(model.fusion.fc["a"].state_dict())
        y = model.eval()(inputs).modality_logits["a"].argmax(dim=1)
    return inputs, y


def test_three_modalities_two_dominant_sample_keep_is_the_union_of_the_masks():
    model = tiny_model("sum", names=("a", "b", "c"), opm=OPM(p_exe=1.0, q_base=0.6, lam=0.5, seed=0))
    x, y = three_modality_batch(model, torch.Generator().manual_seed(0))
    out = model.train()(x, labels=y)
    ratios = discrepancy_ratios(batch_scores(out.modality_logits, y))
    assert ratios["a"].item() > 1 and ratios["b"].item() > 1 and ratios["c"].item() < 1
    keep = opm_masks(model).keep
    q = opm_drop_probabilities(ratios, q_base=0.6, lam=0.5)
    for m in ("a", "b"):  # both dominant modalities are dropped at their rate q_m (4096 draws: +-0.03)
        assert abs((1 - keep[m].float().mean().item()) - q[m].item()) <= 0.03
    lost_both = ~keep["a"] & ~keep["b"]
    assert lost_both.sum().item() > 0.3 * B3  # q_a * q_b > 0.36
    assert bool(keep["c"].all())  # rho_c <= 1: never dropped
    assert torch.equal(out.sample_keep, keep["a"] | keep["b"] | keep["c"])
    assert bool(out.sample_keep.all())  # so nobody loses every modality through the classifier's ratios


class _GivenRatiosOPM(OPM):
    """OPM fed fixed ratios (standing in for a caller's own measure) instead of the classifier's."""

    def __init__(self, ratios, **kwargs):
        super().__init__(**kwargs)
        self.given = {k: torch.tensor(v) for k, v in ratios.items()}

    def sample(self, ratios, batch_size, device=None, **kwargs):
        return super().sample(self.given, batch_size, device=device, **kwargs)


def test_three_modalities_samples_losing_every_modality_leave_the_loss():
    from ogmge.training.loop import _batch_loss

    opm = _GivenRatiosOPM({"a": 1.8, "b": 1.4, "c": 1.2}, p_exe=1.0, q_base=0.5, lam=0.5, seed=0)
    model = tiny_model("concat", names=("a", "b", "c"), opm=opm)
    g = torch.Generator().manual_seed(1)
    x = {n: torch.randn(64, 8, generator=g) for n in ("a", "b", "c")}
    y = torch.randint(0, NUM_CLASSES, (64,), generator=g)
    out = model.train()(x, labels=y)
    keep = opm_masks(model).keep
    lost_all = ~keep["a"] & ~keep["b"] & ~keep["c"]
    # exactly the samples that lost every modality are False in sample_keep
    assert torch.equal(out.sample_keep, ~lost_all)
    assert 0 < lost_all.sum().item() < 64
    # the fusion head saw zeros for every modality of those samples: their logits are the bias
    torch.testing.assert_close(out.logits[lost_all], model.fusion.fc.bias.expand(int(lost_all.sum()), -1))

    # the training loop's loss: mean cross-entropy over the kept samples only, by hand (float64)
    loss = _batch_loss(out, y)
    z = out.logits.detach().double()
    per = [torch.log(torch.exp(z[i]).sum()) - z[i, y[i]] for i in range(64) if out.sample_keep[i]]
    by_hand = sum(per) / len(per)
    assert abs(loss.item() - by_hand.item()) <= 1e-6
    # ... which is not the full-batch mean (so this test can tell the two apart)
    full = F.cross_entropy(out.logits.detach(), y).item()
    assert abs(full - by_hand.item()) > 1e-3
    # and its gradient reaches no dropped sample's logits
    (grad,) = torch.autograd.grad(loss, out.logits)
    assert grad[lost_all].abs().sum().item() == 0 and grad[~lost_all].abs().sum().item() > 0
