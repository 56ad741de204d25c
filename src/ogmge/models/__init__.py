"""ogmge.models: ResNet-18, encoders per modality kind, fusion heads, per-modality
logit estimators and the multimodal classifier (layer 2, docs/architecture.md)."""

from .builders import build_model, build_paper_model
from .classifier import ModelOutput, MultimodalClassifier, Prediction, predict
from .combiner import PREDICTIONS, Combiner
from .encoders import (
    AudioEncoder,
    FrameCNNEncoder,
    ImageEncoder,
    SequenceConvEncoder,
    SequenceGRUEncoder,
    VectorEncoder,
    Video3dEncoder,
    VisualEncoder,
    WaveformEncoder,
    build_encoder,
)
from .estimators import (
    BASELINES,
    ESTIMATORS,
    Estimate,
    EstimatorName,
    LogitEstimator,
    shapley_weights,
)
from .fusion import (
    FUSIONS,
    AttentionFusion,
    ConcatFusion,
    FiLMFusion,
    FusionHead,
    FusionName,
    GatedFusion,
    SumFusion,
    build_fusion,
)
from .resnet import BasicBlock, ResNet18

__all__ = [
    "Combiner",
    "PREDICTIONS",
    "BASELINES",
    "ESTIMATORS",
    "FUSIONS",
    "AttentionFusion",
    "AudioEncoder",
    "BasicBlock",
    "ConcatFusion",
    "Estimate",
    "EstimatorName",
    "FiLMFusion",
    "FrameCNNEncoder",
    "FusionHead",
    "FusionName",
    "GatedFusion",
    "ImageEncoder",
    "LogitEstimator",
    "ModelOutput",
    "MultimodalClassifier",
    "Prediction",
    "ResNet18",
    "SequenceConvEncoder",
    "SequenceGRUEncoder",
    "SumFusion",
    "VectorEncoder",
    "Video3dEncoder",
    "VisualEncoder",
    "WaveformEncoder",
    "build_encoder",
    "build_fusion",
    "build_model",
    "build_paper_model",
    "predict",
    "shapley_weights",
]
