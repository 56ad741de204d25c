"""Ready-made models: the paper's audio-visual model and any set of declared modalities."""

from __future__ import annotations

from collections.abc import Mapping

from ..data.kinds import ModalitySpec
from ..modulation import OPM
from .classifier import MultimodalClassifier
from .encoders import AudioEncoder, VisualEncoder, build_encoder
from .estimators import LogitEstimator
from .fusion import build_fusion


def build_paper_model(
    *,
    fusion: str = "concat",
    num_classes: int,
    width: int = 64,
    estimator: str | LogitEstimator | None = None,
    opm: OPM | bool | None = None,
    fusion_options: Mapping | None = None,
    heads: bool = False,
    prediction: str = "fused",
    feature_transform=None,
) -> MultimodalClassifier:
    """The OGM-GE paper's model (Peng et al., CVPR 2022, Sec. 4.1): modalities ``"audio"``
    (ResNet-18 on a 1-channel spectrogram) and ``"visual"`` (ResNet-18 shared over
    frames ``(B, T, 3, H, W)``), ``8 * width`` features each (512 at width 64), and a
    fusion head (``sum``, ``concat``, ``film``, ``gated``, ``attention``; FiLM and
    gated are conditioned on audio, as in the official code). ``heads``, ``prediction``
    and ``feature_transform`` go to :class:`MultimodalClassifier` (balancing methods)."""
    encoders = {"audio": AudioEncoder(width=width), "visual": VisualEncoder(width=width)}
    in_dims = {n: e.out_dim for n, e in encoders.items()}
    head = build_fusion(fusion, in_dims, num_classes, **dict(fusion_options or {}))
    return MultimodalClassifier(encoders, head, estimator=estimator, opm=opm, heads=heads, prediction=prediction,
                                feature_transform=feature_transform)


def build_model(
    modalities: Mapping[str, ModalitySpec],
    *,
    num_classes: int,
    fusion: str = "concat",
    estimator: str | LogitEstimator | None = None,
    hidden: int = 64,
    out_dim: int = 128,
    opm: OPM | bool | None = None,
    encoder_options: Mapping | None = None,
    fusion_options: Mapping | None = None,
    heads: bool = False,
    prediction: str = "fused",
    feature_transform=None,
) -> MultimodalClassifier:
    """A classifier for any named modalities: one encoder per declared kind
    (:func:`build_encoder`), ``out_dim`` features each, and the named fusion head.
    ``encoder_options`` (e.g. ``sequence_model="gru"``, ``video_model="3d"``) go to
    every :func:`build_encoder` call; ``fusion_options`` to the head; ``heads``,
    ``prediction``, ``feature_transform`` to :class:`MultimodalClassifier`."""
    if not isinstance(modalities, Mapping) or not modalities:
        raise ValueError(f"modalities must be a non-empty dict of name -> ModalitySpec, got {modalities!r}")
    encoders = {}
    for name, spec in modalities.items():
        if not isinstance(spec, ModalitySpec):
            raise TypeError(f"modalities[{name!r}] must be a ModalitySpec, got {type(spec).__name__}")
        encoders[name] = build_encoder(spec, out_dim=out_dim, hidden=hidden, **dict(encoder_options or {}))
    in_dims = {n: e.out_dim for n, e in encoders.items()}
    head = build_fusion(fusion, in_dims, num_classes, **dict(fusion_options or {}))
    return MultimodalClassifier(encoders, head, estimator=estimator, opm=opm, heads=heads, prediction=prediction,
                                feature_transform=feature_transform)
