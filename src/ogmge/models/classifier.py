"""A multimodal classifier over named modalities that returns fused *and* per-modality logits.

Per-modality logits come from a :class:`LogitEstimator` (DESIGN §2) and feed
OGM-GE's scores (Peng et al., CVPR 2022, Eq. 8) in training and the
per-modality accuracy in evaluation. With ``opm``, the forward pass applies
On-the-fly Prediction Modulation (Wei, Hu, Du, Wen, TPAMI 2024): in training
mode with labels, the discrepancy ratios of the current batch (from the
detached per-modality logits) set each modality's drop probability; sampled
per-sample masks drop and rescale features before fusion, and ``sample_keep``
tells the loss which samples kept at least one modality.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from ..modulation import OPM, OPMMasks, batch_scores, discrepancy_ratios
from .estimators import EstimatorName, LogitEstimator


@dataclass(frozen=True)
class ModelOutput:
    """What :meth:`MultimodalClassifier.forward` returns (docs/architecture.md).

    ``logits`` (B, C) fused; ``modality_logits`` {name: (B, C)} detached
    estimates; ``features`` {name: (B, D)} encoder outputs before any OPM
    masking; ``sample_keep`` (B,) bool or None (OPM). ``probe_loss``: the probe
    heads' cross-entropy when the estimator is ``"probe"`` and labels were
    given (add it to the loss); ``opm``: the sampled masks, when OPM ran.
    """

    logits: Tensor
    modality_logits: dict[str, Tensor]
    features: dict[str, Tensor]
    sample_keep: Tensor | None = None
    probe_loss: Tensor | None = None
    opm: OPMMasks | None = None


@dataclass(frozen=True)
class Prediction:
    """Inference output: class ``probabilities`` (B, C), ``classes`` (B,), and per-modality probabilities."""

    probabilities: Tensor
    classes: Tensor
    modality_probabilities: dict[str, Tensor]


class MultimodalClassifier(nn.Module):
    """Encoders keyed by modality name, a fusion head and a per-modality logit estimator.

    ``encoders``: {name: module with ``forward(x, lengths=None) -> (B, out_dim)``};
    stored as ``nn.ModuleDict`` so ``OGMGE(encoders=model.encoders, ...)`` works.
    ``fusion``: a head with ``forward(features) -> logits``, ``in_dims`` and ``num_classes``.
    ``estimator``: ``"linear"``, ``"masking"``, ``"shapley"``, ``"probe"``, a
    :class:`LogitEstimator`, or None for the head's default (linear for sum and
    concat, Shapley otherwise). ``opm``: an :class:`ogmge.OPM`, True for the
    released defaults, or None.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: nn.Module,
        estimator: EstimatorName | LogitEstimator | None = None,
        opm: OPM | bool | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(encoders, Mapping) or not encoders:
            raise ValueError(f"encoders must be a non-empty dict of modality name -> module, got {encoders!r}")
        self.encoders = encoders if isinstance(encoders, nn.ModuleDict) else nn.ModuleDict(dict(encoders))
        if not isinstance(fusion, nn.Module):
            raise TypeError(f"fusion must be an nn.Module, got {type(fusion).__name__}")
        in_dims = getattr(fusion, "in_dims", None)
        if not isinstance(in_dims, Mapping):
            raise TypeError(f"fusion {type(fusion).__name__} must expose in_dims ({{name: size}})")
        if set(in_dims) != set(self.encoders):
            raise ValueError(f"fusion takes modalities {sorted(in_dims)}, encoders are {sorted(self.encoders)}")
        for name, enc in self.encoders.items():
            out_dim = getattr(enc, "out_dim", None)
            if out_dim is not None and out_dim != in_dims[name]:
                raise ValueError(
                    f"encoder {name!r} has out_dim {out_dim} but the fusion expects {in_dims[name]} features"
                )
        self.fusion = fusion
        self.modalities = tuple(in_dims)
        if estimator is None:
            estimator = getattr(fusion, "default_estimator", "shapley")
        if isinstance(estimator, str):
            estimator = LogitEstimator(estimator)
        if not isinstance(estimator, LogitEstimator):
            raise TypeError(f"estimator must be a name or a LogitEstimator, got {type(estimator).__name__}")
        self.estimator = estimator.bind(fusion)
        if opm is True:
            opm = OPM()
        elif opm is False:
            opm = None
        if opm is not None and not isinstance(opm, OPM):
            raise TypeError(f"opm must be an ogmge.OPM, True or None, got {type(opm).__name__}")
        if opm is not None and len(self.modalities) < 2:
            raise ValueError(f"opm needs at least two modalities, got {list(self.modalities)}")
        self.opm = opm

    @property
    def num_classes(self) -> int:
        return int(cast(int, self.fusion.num_classes))

    def get_extra_state(self) -> dict:
        return {"opm": None if self.opm is None else self.opm.state_dict()}

    def set_extra_state(self, state) -> None:
        if self.opm is not None and isinstance(state, Mapping) and state.get("opm") is not None:
            self.opm.load_state_dict(state["opm"])

    def encode(self, inputs: Mapping[str, Tensor], lengths: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Features ``{name: (B, D)}``, one encoder per modality."""
        missing = [n for n in self.modalities if n not in inputs]
        if missing:
            raise KeyError(f"inputs are missing modalities {missing}")
        lengths = lengths or {}
        return {n: self.encoders[n](inputs[n], lengths=lengths.get(n)) for n in self.modalities}

    def forward(
        self,
        inputs: Mapping[str, Tensor],
        lengths: Mapping[str, Tensor] | None = None,
        labels: Tensor | None = None,
    ) -> ModelOutput:
        features = self.encode(inputs, lengths)
        estimate = self.estimator(self.fusion, features, labels)
        fused_in: Mapping[str, Tensor] = features
        masks = None
        if self.opm is not None and self.training and labels is not None:
            scores = batch_scores(estimate.modality_logits, labels)
            ratios = discrepancy_ratios(scores)
            first = features[self.modalities[0]]
            masks = self.opm.sample(ratios, first.shape[0], device=first.device)
            fused_in = masks.apply(features)
        logits = self.fusion(fused_in)
        return ModelOutput(
            logits=logits,
            modality_logits=estimate.modality_logits,
            features=features,
            sample_keep=None if masks is None else masks.sample_keep,
            probe_loss=estimate.probe_loss,
            opm=masks,
        )

    def predict(self, inputs: Mapping[str, Tensor], lengths: Mapping[str, Tensor] | None = None) -> Prediction:
        """Inference in eval mode without gradients (the mode is restored afterwards):
        :func:`predict` on this model."""
        return predict(self, inputs, lengths)


@torch.no_grad()
def predict(
    model: nn.Module, inputs: Mapping[str, Tensor], lengths: Mapping[str, Tensor] | None = None
) -> Prediction:
    """The one inference path: ``model`` (any module returning the :class:`ModelOutput`
    fields ``logits`` and ``modality_logits``) in eval mode, without gradients, on
    ``inputs`` (``{modality: (B, ...)}``, moved to the model's device); the mode is
    restored afterwards. Probabilities are softmaxes in float32, on the model's device.
    ``ogmge.training.predict`` gives the same numbers as a dict of CPU tensors."""
    device = next(model.parameters()).device
    x = {k: torch.as_tensor(v).to(device) for k, v in inputs.items()}
    lens = {k: torch.as_tensor(v).to(device) for k, v in (lengths or {}).items()} or None
    was_training = model.training
    model.eval()
    try:
        out = model(x, lengths=lens)
    finally:
        model.train(was_training)
    probs = torch.softmax(out.logits.float(), dim=-1)
    return Prediction(
        probabilities=probs,
        classes=probs.argmax(dim=-1),
        modality_probabilities={n: torch.softmax(v.float(), dim=-1)
                                for n, v in (out.modality_logits or {}).items()},
    )
