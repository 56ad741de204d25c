"""VisualEncoder normalises uint8 frames itself; float frames pass through unchanged."""

import pytest
import torch

from ogmge.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from ogmge.models import VisualEncoder, build_paper_model


def _reference(u8: torch.Tensor) -> torch.Tensor:
    """``(x / 255 - mean) / std`` in float64, then float32."""
    m = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(3, 1, 1)
    s = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(3, 1, 1)
    return ((u8.double() / 255 - m) / s).float()


def test_uint8_normalisation_matches_normalising_beforehand():
    enc = VisualEncoder(width=2)
    u8 = torch.randint(0, 256, (3, 2, 3, 9, 7), dtype=torch.uint8)
    u8[0, 0] = 0
    u8[0, 1] = 255
    got = enc.normalize(u8)
    assert got.dtype == torch.float32 and got.shape == u8.shape
    torch.testing.assert_close(got, _reference(u8), atol=1e-6, rtol=0)
    torch.testing.assert_close(got, (u8.float() / 255 - torch.tensor(IMAGENET_MEAN).view(3, 1, 1))
                               / torch.tensor(IMAGENET_STD).view(3, 1, 1), atol=1e-6, rtol=0)
    assert torch.equal(got, normalize(u8))  # bit for bit the data pipeline's normalisation
    f = torch.randn(2, 3, 4, 4)
    assert enc.normalize(f) is f  # float input passes through


@pytest.mark.parametrize("with_lengths", [False, True])
def test_forward_on_uint8_equals_forward_on_normalised_float(with_lengths):
    torch.manual_seed(0)
    enc = VisualEncoder(width=4).eval()
    u8 = torch.randint(0, 256, (3, 2, 3, 32, 32), dtype=torch.uint8)
    lengths = torch.tensor([2, 1, 2]) if with_lengths else None
    with torch.no_grad():
        a = enc(u8, lengths)
        b = enc(_reference(u8), lengths)
        c = enc(u8[:, 0], None)  # (B, 3, H, W): a single frame
        d = enc(_reference(u8[:, 0]), None)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(c, d, atol=1e-5, rtol=1e-5)
    assert u8.dtype == torch.uint8  # the input is not modified


def test_uint8_training_step_and_checkpoint_keys():
    model = build_paper_model(fusion="concat", num_classes=3, width=2)
    assert not any("pixel" in k for k in model.state_dict())  # checkpoints unchanged
    x = {"audio": torch.randn(2, 1, 32, 20), "visual": torch.randint(0, 256, (2, 1, 3, 32, 32), dtype=torch.uint8)}
    out = model(x, labels=torch.tensor([0, 2]))
    torch.nn.functional.cross_entropy(out.logits, torch.tensor([0, 2])).backward()
    assert model.encoders["visual"].backbone.conv1.weight.grad is not None
    model.double()
    assert model.encoders["visual"].normalize(x["visual"]).dtype == torch.float64


def test_uint8_with_other_channel_counts_is_refused():
    enc = VisualEncoder(width=2, in_channels=1)
    with pytest.raises(ValueError, match="uint8 RGB"):
        enc(torch.zeros(1, 1, 1, 8, 8, dtype=torch.uint8))
