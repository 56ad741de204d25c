"""OPM in the classifier's forward pass (Wei et al., TPAMI 2024)."""

import pytest
import torch
import torch.nn.functional as F
from model_helpers import NUM_CLASSES, tiny_model

from ogmge import OPM, batch_scores, discrepancy_ratios
from ogmge.modulation import opm_drop_probabilities

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
    assert out.opm is not None and bool(out.opm.executed)
    drop_rate = 1 - out.opm.keep["audio"].float().mean().item()
    assert 0.5 < q["audio"].item() <= 0.75
    assert abs(drop_rate - q["audio"].item()) <= 0.02
    # the weaker modality (rho <= 1) is never dropped
    assert bool(out.opm.keep["visual"].all())
    assert torch.equal(out.sample_keep, out.opm.keep["audio"] | out.opm.keep["visual"])
    # rescaled features keep the mean of the unmasked features
    masked = out.opm.apply(out.features)["audio"].detach()
    unmasked = out.features["audio"].detach()
    rel = (masked.mean() - unmasked.mean()).abs() / unmasked.mean().abs()
    assert rel.item() <= 0.02
    # the fusion head saw the masked features, not the raw ones
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model.fusion(out.opm.apply(out.features)))
        assert (out.logits - model.fusion(out.features)).abs().max() > 1e-3
    # dropped samples' features are zero before fusion
    dropped = ~out.opm.keep["audio"]
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
    assert bool(out.opm.keep["a"].all()) and bool(out.opm.keep["b"].all())
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
    assert torch.equal(c(x, labels=y).opm.keep["audio"], a(x, labels=y).opm.keep["audio"])


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
