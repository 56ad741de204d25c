"""Ready-made models: the paper's audio-visual model and any set of declared modalities."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from ..contracts import ModalitySpec
from .classifier import MultimodalClassifier
from .encoders import AudioEncoder, VisualEncoder, build_encoder
from .estimators import EstimatorName, LogitEstimator
from .fusion import FusionName, build_fusion


def build_paper_model(
    *,
    fusion: FusionName = "concat",
    num_classes: int,
    width: int = 64,
    estimator: EstimatorName | LogitEstimator | None = None,
    fusion_options: Mapping | None = None,
    heads: bool = False,
    prediction: str = "fused",
    parts=None,
    feature_transform=None,
) -> MultimodalClassifier:
    """The OGM-GE paper's model (Peng et al., CVPR 2022, Sec. 4.1): modalities ``"audio"``
    (ResNet-18 on a 1-channel spectrogram) and ``"visual"`` (ResNet-18 shared over
    frames ``(B, T, 3, H, W)``), ``8 * width`` features each (512 at width 64), and a
    fusion head (``sum``, ``concat``, ``film``, ``gated``, ``attention``; FiLM and
    gated are conditioned on audio, as in the official code). ``heads``, ``prediction``,
    ``parts`` and ``feature_transform`` go to :class:`MultimodalClassifier` (balancing methods).

    >>> import torch
    >>> model = build_paper_model(fusion="concat", num_classes=6, width=4)  # tiny: the paper uses width 64
    >>> out = model({"audio": torch.randn(2, 1, 32, 32), "visual": torch.randn(2, 1, 3, 32, 32)})
    >>> out.logits.shape, sorted(out.modality_logits)
    (torch.Size([2, 6]), ['audio', 'visual'])
    """
    encoders: dict[str, AudioEncoder | VisualEncoder] = {"audio": AudioEncoder(width=width),
                                                         "visual": VisualEncoder(width=width)}
    in_dims = {n: e.out_dim for n, e in encoders.items()}
    head = build_fusion(fusion, in_dims, num_classes, **dict(fusion_options or {}))
    return MultimodalClassifier(encoders, head, estimator=estimator, heads=heads, prediction=prediction,
                                parts=parts, feature_transform=feature_transform)


def build_model(
    modalities: Mapping[str, ModalitySpec],
    *,
    num_classes: int,
    fusion: FusionName = "concat",
    estimator: EstimatorName | LogitEstimator | None = None,
    hidden: int = 64,
    out_dim: int = 128,
    encoder_options: Mapping | None = None,
    fusion_options: Mapping | None = None,
    heads: bool = False,
    prediction: str = "fused",
    parts=None,
    feature_transform=None,
) -> MultimodalClassifier:
    """A classifier for any named modalities: one encoder per declared kind
    (:func:`build_encoder`), ``out_dim`` features each, and the named fusion head.
    ``encoder_options`` (e.g. ``sequence_model="gru"``, ``video_model="3d"``) go to
    every :func:`build_encoder` call; ``fusion_options`` to the head; ``heads``,
    ``prediction``, ``parts``, ``feature_transform`` to :class:`MultimodalClassifier`.

    >>> import torch
    >>> from ogmge.contracts import ModalitySpec
    >>> specs = {"imu": ModalitySpec("imu", "sequence", (None, 6)), "image": ModalitySpec("image", "image", (3, 16, 16))}
    >>> model = build_model(specs, num_classes=4, fusion="attention", hidden=8, out_dim=16)
    >>> out = model({"imu": torch.randn(2, 10, 6), "image": torch.randn(2, 3, 16, 16)},
    ...             lengths={"imu": torch.tensor([10, 7])})
    >>> out.logits.shape, out.modality_logits["imu"].shape
    (torch.Size([2, 4]), torch.Size([2, 4]))
    """
    if not isinstance(modalities, Mapping) or not modalities:
        raise ValueError(f"modalities must be a non-empty dict of name -> ModalitySpec, got {modalities!r}")
    encoders = {}
    for name, spec in modalities.items():
        if not isinstance(spec, ModalitySpec):
            raise TypeError(f"modalities[{name!r}] must be a ModalitySpec, got {type(spec).__name__}")
        encoders[name] = build_encoder(spec, out_dim=out_dim, hidden=hidden, **dict(encoder_options or {}))
    in_dims = {n: cast(int, e.out_dim) for n, e in encoders.items()}
    head = build_fusion(fusion, in_dims, num_classes, **dict(fusion_options or {}))
    return MultimodalClassifier(encoders, head, estimator=estimator, heads=heads, prediction=prediction,
                                parts=parts, feature_transform=feature_transform)
