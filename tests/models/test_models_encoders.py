"""Every kind's encoder: shapes, and padding never changes a sample's output."""

import pytest
import torch

from ogmge.contracts import ModalitySpec
from ogmge.models import VisualEncoder, build_encoder

OUT = 12


def _pad(x: torch.Tensor, axis: int, extra: int) -> torch.Tensor:
    shape = list(x.shape)
    shape[axis] = extra
    return torch.cat([x, torch.zeros(shape)], dim=axis)


VARIABLE = [
    # (spec, per-sample shapes of two samples, padded axis per sample, options)
    (ModalitySpec("s", "sequence", (None, 5)), [(7, 5), (4, 5)], 0, {"sequence_model": "conv"}),
    (ModalitySpec("s", "sequence", (None, 5)), [(7, 5), (4, 5)], 0, {"sequence_model": "gru"}),
    (ModalitySpec("v", "video", (None, 3, 12, 12)), [(4, 3, 12, 12), (2, 3, 12, 12)], 0, {"video_model": "frames"}),
    (ModalitySpec("v", "video", (None, 3, 12, 12)), [(4, 3, 12, 12), (2, 3, 12, 12)], 0, {"video_model": "3d"}),
    (ModalitySpec("w", "waveform", (None,)), [(900,), (530,)], 0, {}),
    (ModalitySpec("w", "waveform", (2, None)), [(2, 900), (2, 530)], 1, {}),
]


@pytest.mark.parametrize("spec, shapes, axis, options", VARIABLE, ids=lambda v: str(v) if isinstance(v, dict) else None)
def test_padding_does_not_change_a_sample(spec, shapes, axis, options):
    torch.manual_seed(1)
    enc = build_encoder(spec, out_dim=OUT, hidden=8, **options).eval()
    assert enc.out_dim == OUT
    long, short = (torch.randn(s) for s in shapes)
    extra = long.shape[axis] - short.shape[axis]
    batch = torch.stack([long, _pad(short, axis, extra)])
    lengths = torch.tensor([long.shape[axis], short.shape[axis]])
    with torch.no_grad():
        out = enc(batch, lengths=lengths)
        alone = enc(short.unsqueeze(0), lengths=lengths[1:])
        alone_no_lengths = enc(short.unsqueeze(0))
        long_alone = enc(long.unsqueeze(0))
        unmasked = enc(batch)
    assert out.shape == (2, OUT)
    torch.testing.assert_close(out[1], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[1], alone_no_lengths[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0], long_alone[0], atol=1e-5, rtol=1e-5)
    # Without lengths the padding is pooled: the mask is what makes the two agree.
    assert (unmasked[1] - alone[0]).abs().max() > 1e-4


def test_paper_visual_encoder_masks_padded_frames():
    torch.manual_seed(2)
    enc = VisualEncoder(width=2).eval()
    clip = torch.randn(2, 3, 16, 16)
    padded = torch.cat([clip, torch.zeros(2, 3, 16, 16)]).unsqueeze(0)
    with torch.no_grad():
        torch.testing.assert_close(enc(padded, lengths=torch.tensor([2]))[0], enc(clip.unsqueeze(0))[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "spec, batch_shape",
    [
        (ModalitySpec("x", "vector", (10,)), (3, 10)),
        (ModalitySpec("x", "image", (3, 20, 16)), (3, 3, 20, 16)),
        (ModalitySpec("x", "spectrogram", (1, 24, 30)), (3, 1, 24, 30)),
    ],
)
def test_fixed_size_kinds(spec, batch_shape):
    enc = build_encoder(spec, out_dim=OUT, hidden=8)
    assert enc(torch.randn(batch_shape)).shape == (3, OUT)
    with pytest.raises(ValueError, match="lengths"):
        enc(torch.randn(batch_shape), lengths=torch.ones(3, dtype=torch.long))


def test_build_encoder_validates_options():
    spec = ModalitySpec("s", "sequence", (None, 5))
    with pytest.raises(ValueError, match="sequence_model"):
        build_encoder(spec, sequence_model="lstm")
    with pytest.raises(ValueError, match="out_dim"):
        build_encoder(spec, out_dim=0)
    with pytest.raises(ValueError, match="feature axis"):
        build_encoder(ModalitySpec("s", "sequence", (None, None)))
