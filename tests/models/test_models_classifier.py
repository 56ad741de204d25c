"""The classifier, its builders, predict and checkpoints."""

import pytest
import torch

from ogmge import OGMGE
from ogmge.contracts import ModalitySpec
from ogmge.models import (
    FUSIONS,
    ConcatFusion,
    LogitEstimator,
    ModelOutput,
    MultimodalClassifier,
    VectorEncoder,
    build_model,
    build_paper_model,
)
from support.model_helpers import NUM_CLASSES, tiny_model


@pytest.mark.parametrize("fusion", list(FUSIONS))
def test_paper_model_every_fusion(fusion):
    model = build_paper_model(fusion=fusion, num_classes=6, width=2)
    assert list(model.encoders) == ["audio", "visual"]
    expected = "linear" if fusion in ("sum", "concat") else "shapley"
    assert model.estimator.method == expected
    x = {"audio": torch.randn(3, 1, 40, 32), "visual": torch.randn(3, 2, 3, 32, 32)}
    y = torch.tensor([0, 5, 2])
    out = model(x, labels=y)
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 6)
    assert {n: v.shape for n, v in out.modality_logits.items()} == {"audio": (3, 6), "visual": (3, 6)}
    assert {n: v.shape for n, v in out.features.items()} == {"audio": (3, 16), "visual": (3, 16)}
    assert out.sample_keep is None
    # OGMGE on the paper's choice of parameters (conv kernels) accepts model.encoders
    OGMGE(model.encoders, select="conv")


def test_build_model_any_kinds_with_lengths():
    specs = {
        "vec": ModalitySpec("vec", "vector", (5,)),
        "seq": ModalitySpec("seq", "sequence", (None, 4)),
        "img": ModalitySpec("img", "image", (1, 12, 12)),
        "vid": ModalitySpec("vid", "video", (None, 3, 8, 8)),
        "wav": ModalitySpec("wav", "waveform", (None,)),
        "spec": ModalitySpec("spec", "spectrogram", (1, 16, 16)),
    }
    model = build_model(specs, num_classes=3, fusion="attention", hidden=8, out_dim=8,
                        fusion_options={"d_model": 8, "heads": 2})
    assert model.estimator.method == "shapley"
    x = {
        "vec": torch.randn(2, 5), "seq": torch.randn(2, 6, 4), "img": torch.randn(2, 1, 12, 12),
        "vid": torch.randn(2, 3, 3, 8, 8), "wav": torch.randn(2, 400), "spec": torch.randn(2, 1, 16, 16),
    }
    lengths = {"seq": torch.tensor([6, 3]), "vid": torch.tensor([3, 1]), "wav": torch.tensor([400, 200])}
    out = model(x, lengths=lengths, labels=torch.tensor([0, 2]))
    assert out.logits.shape == (2, 3)
    # six modalities: exact Shapley over 64 subsets is still efficient
    assert (sum(out.modality_logits.values()) - out.logits).abs().max() <= 1e-5


def test_predict_is_eval_no_grad_and_restores_mode():
    model = tiny_model("concat")
    x = {"audio": torch.randn(5, 8), "visual": torch.randn(5, 8)}
    model.train()
    pred = model.predict(x)
    assert model.training
    assert pred.probabilities.shape == (5, NUM_CLASSES) and not pred.probabilities.requires_grad
    torch.testing.assert_close(pred.probabilities.sum(1), torch.ones(5))
    assert torch.equal(pred.classes, pred.probabilities.argmax(1))
    assert set(pred.modality_probabilities) == {"audio", "visual"}


def test_checkpoint_round_trip_keeps_estimator_state():
    model = tiny_model("gated", LogitEstimator("probe"))
    state = model.state_dict()
    assert any(k.startswith("estimator.probes.audio") for k in state)
    clone = tiny_model("gated", LogitEstimator("probe"))
    clone.load_state_dict(state)
    x = {"audio": torch.randn(4, 8), "visual": torch.randn(4, 8)}
    a, b = model.eval()(x), clone.eval()(x)
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.modality_logits["visual"], b.modality_logits["visual"])


def test_classifier_validates_its_parts():
    enc = {"audio": VectorEncoder(4, out_dim=6), "visual": VectorEncoder(4, out_dim=6)}
    with pytest.raises(ValueError, match="out_dim 6"):
        MultimodalClassifier(enc, ConcatFusion({"audio": 5, "visual": 6}, 3))
    with pytest.raises(ValueError, match="modalities"):
        MultimodalClassifier(enc, ConcatFusion({"audio": 6, "text": 6}, 3))
    with pytest.raises(TypeError, match="opm"):
        MultimodalClassifier(enc, ConcatFusion({"audio": 6, "visual": 6}, 3), opm="yes")
    with pytest.raises(ValueError, match="fusion must be one of"):
        build_paper_model(fusion="bilinear", num_classes=3, width=2)
    with pytest.raises(ValueError, match="exactly 2"):
        tiny_model("film", names=("a", "b", "c"))
    with pytest.raises(ValueError, match="condition"):
        build_paper_model(fusion="film", num_classes=3, width=2, fusion_options={"condition": "text"})
    with pytest.raises(KeyError, match="visual"):
        tiny_model("concat")({"audio": torch.randn(2, 8)})


@pytest.mark.parametrize("order", [("audio", "visual"), ("visual", "audio")])
def test_film_and_gated_default_to_audio_by_name_not_position(order):
    """DESIGN §6: the conditioning/gating modality is chosen by name ("audio", as in the
    official code), whatever the order of the modalities."""
    from ogmge.models import FiLMFusion, GatedFusion

    dims = {n: {"audio": 6, "visual": 4}[n] for n in order}
    film, gated = FiLMFusion(dims, 3), GatedFusion(dims, 3)
    assert (film.condition, film.target) == ("audio", "visual")
    assert (gated.gate, gated.gated) == ("audio", "visual")
    # the layers are sized from audio's features (6) conditioning/gating visual's (4)
    assert film.film.weight.shape == (2 * 4, 6) and film.fc_out.weight.shape == (3, 4)
    assert gated.fc_gate.weight.shape == (4, 6) and gated.fc_value.weight.shape == (4, 4)
    # explicit names still win
    assert FiLMFusion(dims, 3, condition="visual").condition == "visual"
    assert GatedFusion(dims, 3, gate="visual").gate == "visual"


@pytest.mark.parametrize(("fusion", "arg"), [("film", "condition"), ("gated", "gate")])
def test_film_and_gated_without_audio_ask_for_the_modality(fusion, arg):
    with pytest.raises(ValueError, match=rf"{arg}= must name .*\['text', 'image'\].*{arg}=<name>"):
        tiny_model(fusion, names=("text", "image"))
    head = build_model({n: ModalitySpec(n, "vector", (8,)) for n in ("text", "image")}, num_classes=3,
                       fusion=fusion, hidden=4, out_dim=4, fusion_options={arg: "image"}).fusion
    assert getattr(head, arg) == "image"
