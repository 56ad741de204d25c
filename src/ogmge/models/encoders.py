"""Encoders: one modality's batch ``(B, ...)`` -> features ``(B, out_dim)``.

The paper's two (Peng et al., CVPR 2022, Sec. 4.1): a ResNet-18 on the
1-channel audio spectrogram and a ResNet-18 shared over T RGB frames, features
average-pooled over time and space. For bring-your-own data (DESIGN §3), one
encoder per declared modality kind (``ogmge.contracts``), chosen by
:func:`build_encoder`. Every encoder takes ``forward(x, lengths=None)`` and
exposes ``out_dim``; padded samples (``lengths``) give the same output as the
unpadded sample: padded steps/frames are never pooled, masked to zero between
convolutions (so they act like the convolution's own zero padding), skipped
by the per-frame CNNs and packed away for the GRU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence

from ..contracts import ModalitySpec
from ..validation import check_choice, check_positive_int
from .resnet import ResNet18

SEQUENCE_MODELS = ("conv", "gru")
VIDEO_MODELS = ("frames", "3d")


# --------------------------------------------------------------------------- helpers
def _check_lengths(lengths: Tensor, batch: int, steps: int, what: str) -> Tensor:
    if not isinstance(lengths, Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.shape != (batch,):
        raise ValueError(f"lengths of {what} must have shape ({batch},), got {tuple(lengths.shape)}")
    return lengths.clamp(max=steps)


def length_mask(lengths: Tensor, steps: int, device: torch.device | None = None) -> Tensor:
    """Bool mask ``(B, steps)``: True where step t < length."""
    lengths = torch.as_tensor(lengths, device=device)
    return torch.arange(steps, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)


def masked_mean(x: Tensor, mask: Tensor, dim: int) -> Tensor:
    """Mean of ``x`` over ``dim`` counting only positions where ``mask`` (broadcastable) is True."""
    m = mask.to(x.dtype)
    return (x * m).sum(dim) / m.sum(dim).clamp_min(1.0)


def _no_lengths(name: str, lengths) -> None:
    if lengths is not None:
        raise ValueError(f"{name} takes fixed-size inputs; got lengths, which it cannot use")


class SmallCNN2d(nn.Module):
    """Conv3x3(stride 2)-BN-ReLU blocks; returns the final feature map."""

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = check_positive_int("in_channels", in_channels)
        for c in channels:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            prev = c
        self.net = nn.Sequential(*layers)
        self.out_channels = prev
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class MaskedConv1d(nn.Module):
    """Conv1d-LayerNorm(channels)-ReLU blocks that keep padded positions at zero.

    After every block the positions at or beyond each sample's output length
    are zeroed, so a padded sample sees exactly the zeros that the unpadded
    one gets from the convolution's padding. Returns the masked mean over time.
    """

    def __init__(self, in_channels: int, channels: Sequence[int], kernels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        if not (len(channels) == len(kernels) == len(strides)) or not channels:
            raise ValueError(
                f"channels, kernels and strides must be non-empty and of equal length, got "
                f"{list(channels)}, {list(kernels)}, {list(strides)}"
            )
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        prev = in_channels
        for c, k, s in zip(channels, kernels, strides):
            self.convs.append(nn.Conv1d(prev, c, k, stride=s, padding=k // 2))
            self.norms.append(nn.LayerNorm(c))
            prev = c
        self.out_channels = prev

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            for conv, norm in zip(self.convs, self.norms):
                x = torch.relu(norm(conv(x).transpose(1, 2)).transpose(1, 2))
            return x.mean(dim=2)
        lengths = lengths.to(x.device)
        mask = length_mask(lengths, x.shape[2]).unsqueeze(1)
        x = x * mask.to(x.dtype)
        for conv, norm in zip(self.convs, self.norms):
            conv = cast(nn.Conv1d, conv)
            k, s, p = conv.kernel_size[0], conv.stride[0], cast(tuple, conv.padding)[0]
            x = torch.relu(norm(conv(x).transpose(1, 2)).transpose(1, 2))
            lengths = torch.div(lengths + 2 * p - k, s, rounding_mode="floor") + 1
            mask = length_mask(lengths, x.shape[2]).unsqueeze(1)
            x = x * mask.to(x.dtype)
        return masked_mean(x, mask, dim=2)  # the last layer's mask


def _frames_forward(backbone: nn.Module, x: Tensor, lengths: Tensor | None) -> Tensor:
    """Shared 2-D backbone over frames ``(B, T, C, H, W)``; mean over valid frames and space.

    With ``lengths``, only the valid frames go through the backbone (padded
    frames neither reach the output nor BatchNorm's batch statistics).
    """
    b, t = x.shape[:2]
    frames = x.reshape(b * t, *x.shape[2:])
    if lengths is None:
        fmap = backbone(frames)  # (B*T, C', h, w)
        return fmap.reshape(b, t, fmap.shape[1], -1).mean(dim=(1, 3))
    lengths = _check_lengths(lengths, b, t, "frames").to(x.device)
    valid = length_mask(lengths, t).reshape(-1)
    fmap = backbone(frames[valid])
    pooled = fmap.flatten(2).mean(dim=2)  # (n_valid, C')
    out = pooled.new_zeros(b * t, pooled.shape[1])
    out[valid] = pooled
    return masked_mean(out.reshape(b, t, -1), valid.reshape(b, t, 1), dim=1)


def _as_frames(x: Tensor, name: str) -> Tensor:
    if x.dim() == 4:  # (B, C, H, W): a single frame
        return x.unsqueeze(1)
    if x.dim() != 5:
        raise ValueError(f"{name} expects frames (B, T, C, H, W), got shape {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------- paper encoders
class AudioEncoder(nn.Module):
    """Paper audio encoder: ResNet-18 on a spectrogram ``(B, 1, F, T)``, global average pool.

    ``out_dim = 8 * width`` (512 at the paper's width 64).
    """

    def __init__(self, *, width: int = 64, in_channels: int = 1) -> None:
        super().__init__()
        self.backbone = ResNet18(in_channels=in_channels, width=width)
        self.out_dim = self.backbone.out_channels

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _no_lengths("AudioEncoder", lengths)
        if x.dim() != 4:
            raise ValueError(f"AudioEncoder expects (B, C, F, T), got shape {tuple(x.shape)}")
        return self.backbone(x).flatten(2).mean(dim=2)


#: ImageNet per-channel mean and std of RGB values in [0, 1] (as ``ogmge.data.transforms``).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VisualEncoder(nn.Module):
    """Paper visual encoder: one ResNet-18 shared by T frames ``(B, T, 3, H, W)``,
    features average-pooled over time and space; ``lengths`` masks padded frames.

    Frames may be float (already normalised; used as given) or uint8 RGB in 0..255 (e.g.
    the paper datasets read from a ``prepare`` cache): uint8 frames are normalised here,
    ``(x / 255 - mean) / std`` with the ImageNet mean and std, computed as
    ``x * (1 / (255 std)) + (-mean / std)`` in the encoder's dtype on its device (bit for bit
    what ``ogmge.data.transforms.normalize`` gives for uint8 frames; within 1e-6 of the
    float formula) -- the dataset then loads and moves a quarter of the bytes.
    """

    pixel_scale: Tensor  # buffers
    pixel_shift: Tensor

    def __init__(self, *, width: int = 64, in_channels: int = 3) -> None:
        super().__init__()
        self.backbone = ResNet18(in_channels=in_channels, width=width)
        self.out_dim = self.backbone.out_channels
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
        # not in the state dict (checkpoints are unchanged); they follow .to(device / dtype)
        self.register_buffer("pixel_scale", 1.0 / (255.0 * std), persistent=False)
        self.register_buffer("pixel_shift", -mean / std, persistent=False)

    def normalize(self, x: Tensor) -> Tensor:
        """uint8 frames ``(..., 3, H, W)`` -> ``(x / 255 - mean) / std`` (ImageNet) as a new tensor
        of the encoder's dtype; tensors of any other dtype are returned unchanged."""
        if x.dtype != torch.uint8:
            return x
        if x.dim() < 3 or x.shape[-3] != 3:
            raise ValueError(f"VisualEncoder normalises uint8 RGB frames (..., 3, H, W), got shape {tuple(x.shape)}")
        return x.to(self.pixel_scale.dtype).mul_(self.pixel_scale).add_(self.pixel_shift)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return _frames_forward(self.backbone, _as_frames(self.normalize(x), "VisualEncoder"), lengths)


# --------------------------------------------------------------------------- kind encoders
class VectorEncoder(nn.Module):
    """``vector`` kind ``(B, D)``: a two-layer MLP with ReLU."""

    def __init__(self, in_dim: int, *, hidden: int = 64, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(check_positive_int("in_dim", in_dim), check_positive_int("hidden", hidden)),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, check_positive_int("out_dim", out_dim)),
            nn.ReLU(inplace=True),
        )
        self.out_dim = out_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _no_lengths("VectorEncoder", lengths)
        return self.net(x.flatten(1))


class SequenceConvEncoder(nn.Module):
    """``sequence`` kind ``(B, T, F)``: 1-D convolutions over time, masked mean over valid steps."""

    def __init__(self, in_features: int, *, hidden: int = 64, out_dim: int = 128, layers: int = 2, kernel: int = 3) -> None:
        super().__init__()
        check_positive_int("layers", layers)
        channels = [hidden] * (layers - 1) + [out_dim]
        self.net = MaskedConv1d(check_positive_int("in_features", in_features), channels, [kernel] * layers, [1] * layers)
        self.out_dim = out_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"SequenceConvEncoder expects (B, T, F), got shape {tuple(x.shape)}")
        if lengths is not None:
            lengths = _check_lengths(lengths, x.shape[0], x.shape[1], "sequence")
        return self.net(x.transpose(1, 2), lengths)


class SequenceGRUEncoder(nn.Module):
    """``sequence`` kind ``(B, T, F)``: a GRU over packed sequences; the last layer's final state."""

    def __init__(self, in_features: int, *, out_dim: int = 128, layers: int = 1) -> None:
        super().__init__()
        self.gru = nn.GRU(
            check_positive_int("in_features", in_features), check_positive_int("out_dim", out_dim),
            num_layers=check_positive_int("layers", layers), batch_first=True,
        )
        self.out_dim = out_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"SequenceGRUEncoder expects (B, T, F), got shape {tuple(x.shape)}")
        if lengths is None:
            _, h = self.gru(x)
        else:
            lengths = _check_lengths(lengths, x.shape[0], x.shape[1], "sequence").clamp_min(1)
            packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
            _, h = self.gru(packed)
        return h[-1]


class ImageEncoder(nn.Module):
    """``image`` / ``spectrogram`` kind ``(B, C, H, W)``: a small 2-D CNN, global average pool."""

    def __init__(self, in_channels: int, *, hidden: int = 64, out_dim: int = 128) -> None:
        super().__init__()
        self.cnn = SmallCNN2d(in_channels, (max(hidden // 2, 1), hidden, out_dim))
        self.out_dim = out_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        _no_lengths("ImageEncoder", lengths)
        if x.dim() != 4:
            raise ValueError(f"ImageEncoder expects (B, C, H, W), got shape {tuple(x.shape)}")
        return self.cnn(x).flatten(2).mean(dim=2)


class FrameCNNEncoder(nn.Module):
    """``video`` kind ``(B, T, C, H, W)``: a small 2-D CNN shared by frames, mean over valid frames and space."""

    def __init__(self, in_channels: int, *, hidden: int = 64, out_dim: int = 128) -> None:
        super().__init__()
        self.cnn = SmallCNN2d(in_channels, (max(hidden // 2, 1), hidden, out_dim))
        self.out_dim = out_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        return _frames_forward(self.cnn, _as_frames(x, "FrameCNNEncoder"), lengths)


class Video3dEncoder(nn.Module):
    """``video`` kind ``(B, T, C, H, W)``: a small 3-D CNN (stride 1 in time), padded frames
    zeroed after every block, masked mean over valid frames and space."""

    def __init__(self, in_channels: int, *, hidden: int = 64, out_dim: int = 128) -> None:
        super().__init__()
        check_positive_int("in_channels", in_channels)
        blocks = []
        prev = in_channels
        for c in (max(hidden // 2, 1), hidden, out_dim):
            blocks.append(nn.Sequential(
                nn.Conv3d(prev, c, 3, stride=(1, 2, 2), padding=1, bias=False), nn.BatchNorm3d(c), nn.ReLU(inplace=True)
            ))
            prev = c
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = out_dim
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        x = _as_frames(x, "Video3dEncoder").transpose(1, 2)  # (B, C, T, H, W)
        if lengths is None:
            for block in self.blocks:
                x = block(x)
            return x.flatten(2).mean(dim=2)
        lengths = _check_lengths(lengths, x.shape[0], x.shape[2], "frames").to(x.device)
        mask = length_mask(lengths, x.shape[2]).view(x.shape[0], 1, x.shape[2], 1, 1).to(x.dtype)
        x = x * mask
        for block in self.blocks:
            x = block(x) * mask
        pooled = x.mean(dim=(3, 4))  # (B, C, T)
        return masked_mean(pooled, mask.view(x.shape[0], 1, -1), dim=2)


class WaveformEncoder(nn.Module):
    """``waveform`` kind ``(B, L)`` or ``(B, C, L)``: strided 1-D convolutions, masked mean over time."""

    def __init__(
        self,
        in_channels: int = 1,
        *,
        hidden: int = 64,
        out_dim: int = 128,
        kernels: Sequence[int] = (11, 5, 5, 5),
        strides: Sequence[int] = (5, 4, 4, 4),
    ) -> None:
        super().__init__()
        n = len(kernels)
        channels = [max(hidden // 2, 1)] * (n > 1) + [hidden] * max(n - 2, 0) + [out_dim]
        self.in_channels = check_positive_int("in_channels", in_channels)
        self.net = MaskedConv1d(in_channels, channels, kernels, strides)
        self.out_dim = out_dim

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if x.dim() == 2:
            x = x.unsqueeze(1)
        if x.dim() != 3:
            raise ValueError(f"WaveformEncoder expects (B, L) or (B, C, L), got shape {tuple(x.shape)}")
        if lengths is not None:
            lengths = _check_lengths(lengths, x.shape[0], x.shape[2], "waveform")
        return self.net(x, lengths)


# --------------------------------------------------------------------------- factory
def build_encoder(
    spec: ModalitySpec,
    *,
    out_dim: int = 128,
    hidden: int = 64,
    sequence_model: str = "conv",
    video_model: str = "frames",
) -> nn.Module:
    """The encoder for a declared modality kind (``spec.kind``), its input size from ``spec.shape``.

    vector: MLP; sequence: 1-D conv (``sequence_model="conv"``) or GRU (``"gru"``);
    image and spectrogram: small 2-D CNN; video: per-frame 2-D CNN
    (``video_model="frames"``) or small 3-D CNN (``"3d"``); waveform: strided 1-D conv.
    """
    if not isinstance(spec, ModalitySpec):
        raise TypeError(f"spec must be a ModalitySpec, got {type(spec).__name__}")
    check_positive_int("out_dim", out_dim)
    check_positive_int("hidden", hidden)
    check_choice("sequence_model", sequence_model, SEQUENCE_MODELS)
    check_choice("video_model", video_model, VIDEO_MODELS)

    def size(axis: int, what: str) -> int:
        value = spec.shape[axis]
        if value is None:
            raise ValueError(f"modality {spec.name!r} of kind {spec.kind!r}: the {what} axis must have a fixed size, got shape {spec.shape}")
        return int(value)

    kind = spec.kind
    if kind == "vector":
        return VectorEncoder(size(0, "feature"), hidden=hidden, out_dim=out_dim)
    if kind == "sequence":
        features = size(1, "feature")
        if sequence_model == "gru":
            return SequenceGRUEncoder(features, out_dim=out_dim)
        return SequenceConvEncoder(features, hidden=hidden, out_dim=out_dim)
    if kind in ("image", "spectrogram"):
        return ImageEncoder(size(0, "channel"), hidden=hidden, out_dim=out_dim)
    if kind == "video":
        cls = FrameCNNEncoder if video_model == "frames" else Video3dEncoder
        return cls(size(1, "channel"), hidden=hidden, out_dim=out_dim)
    if kind == "waveform":
        channels = 1 if len(spec.shape) == 1 else size(0, "channel")
        return WaveformEncoder(channels, hidden=hidden, out_dim=out_dim)
    raise ValueError(f"modality {spec.name!r}: no encoder for kind {kind!r}")
