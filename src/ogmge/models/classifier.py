"""A multimodal classifier over named modalities that returns fused *and* per-modality logits.

Per-modality logits come from a :class:`LogitEstimator` (DESIGN §2) and feed
OGM-GE's scores (Peng et al., CVPR 2022, Eq. 8) in training and the
per-modality accuracy in evaluation.

The model holds no balancing method. What methods need from it: ``heads=True``
adds a trainable linear head per modality on its encoder's features, returned
as ``head_logits`` (not detached); ``prediction`` picks the prediction rule
(:class:`~ogmge.models.combiner.Combiner`: ``"fused"``, ``"ensemble"``,
``"blend"``), whose fitted weights live in ``model.combiner``; ``parts`` holds
extra modules a method supplies (trained and checkpointed with the model).
``forward(..., transform=fn)`` lets the caller change the features the fusion
head sees in training (``fn(features, labels=, modality_logits=, baseline=)``:
the trainer passes the method's ``transform_features``); ``feature_transform``
is the same hook held by the model, for plain loops.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from .combiner import FUSED_MEMBER, PREDICTIONS, Combiner
from .estimators import EstimatorName, LogitEstimator


@dataclass(frozen=True)
class ModelOutput:
    """What :meth:`MultimodalClassifier.forward` returns (docs/architecture.md).

    ``logits`` (B, C) fused; ``modality_logits`` {name: (B, C)} detached
    estimates; ``features`` {name: (B, D)} encoder outputs before any OPM
    masking; ``sample_keep`` (B,) bool or None (OPM). ``probe_loss``: the probe
    heads' cross-entropy when the estimator is ``"probe"`` and labels were
    given (add it to the loss); ``opm``: the sampled masks, when OPM ran.
    ``head_logits`` {name: (B, C)}: the trainable per-modality heads' logits
    (with gradients), when the model has heads. ``fused_logits``: the fusion
    head's logits when ``logits`` is something else (``prediction="blend"`` in
    evaluation), else None.
    """

    logits: Tensor
    modality_logits: dict[str, Tensor]
    features: dict[str, Tensor]
    sample_keep: Tensor | None = None
    probe_loss: Tensor | None = None
    head_logits: dict[str, Tensor] | None = None
    fused_logits: Tensor | None = None


__all__ = ["FUSED_MEMBER", "PREDICTIONS", "ModelOutput", "MultimodalClassifier", "Prediction", "predict"]


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
    concat, Shapley otherwise). ``heads``: a trainable linear head per modality
    (``head_logits``). ``prediction``: the prediction rule
    (:mod:`ogmge.models.combiner`; ``"ensemble"`` and ``"blend"`` need heads; under
    ``"ensemble"`` the fusion head and estimator are frozen and the per-modality
    logits are the heads'). ``parts``: extra modules ``{name: module}`` (a method's
    model parts). ``feature_transform``: an object with ``transform_features(features,
    labels=, modality_logits=, baseline=)`` applied before fusion in training mode.
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: nn.Module,
        estimator: EstimatorName | LogitEstimator | None = None,
        *,
        heads: bool = False,
        prediction: str = "fused",
        parts: Mapping[str, nn.Module] | None = None,
        feature_transform=None,
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
        if not isinstance(heads, bool):
            raise TypeError(f"heads must be true or false, got {heads!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
        if prediction != "fused" and not heads:
            raise ValueError(f"prediction={prediction!r} needs heads=True (it combines the per-modality heads)")
        if (heads or prediction != "fused") and len(self.modalities) < 2:
            raise ValueError(f"per-modality heads need at least two modalities, got {list(self.modalities)}")
        self.heads = (nn.ModuleDict({n: nn.Linear(in_dims[n], self.num_classes) for n in self.modalities})
                      if heads else None)
        self.combiner = Combiner(prediction, self.modalities)
        if prediction == "ensemble":
            # the ensemble never runs the fusion head or the estimator: frozen, so optimisers and DDP skip them
            for p in (*self.fusion.parameters(), *self.estimator.parameters()):
                p.requires_grad_(False)
        parts = dict(parts or {})
        for key, part in parts.items():
            if not isinstance(part, nn.Module):
                raise TypeError(f"model part {key!r} must be an nn.Module, got {type(part).__name__}")
        self.parts = nn.ModuleDict(parts)
        if feature_transform is not None and not callable(getattr(feature_transform, "transform_features", None)):
            raise TypeError(f"feature_transform must have transform_features(), got {type(feature_transform).__name__}")
        self.feature_transform = feature_transform

    @property
    def prediction(self) -> str:
        """The prediction rule (``model.combiner.rule``)."""
        return self.combiner.rule

    @property
    def prediction_members(self) -> tuple[str, ...]:
        """The outputs a combined prediction weighs, in weight order (``"fused"`` first in a blend)."""
        return self.combiner.members

    @property
    def ensemble_weights(self) -> Tensor:
        """The combined prediction's weights (``model.combiner.weights``)."""
        return self.combiner.weights

    def set_ensemble_weights(self, weights) -> None:
        """Set the combined prediction's weights ``w`` in ``prediction_members`` order (or ``{member: w}``)."""
        self.combiner.set_weights(weights)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints before the combiner kept the weights in the buffer "ensemble_weights"
        old = prefix + "ensemble_weights"
        if old in state_dict:
            state_dict[prefix + "combiner.weights"] = state_dict.pop(old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def num_classes(self) -> int:
        return int(cast(int, self.fusion.num_classes))

    def get_extra_state(self) -> dict:
        state: dict = {}
        ft = self.feature_transform
        if ft is not None and hasattr(ft, "state_dict"):  # e.g. modality dropout's generator streams
            state["feature_transform"] = ft.state_dict()
        return state

    def set_extra_state(self, state) -> None:
        # older checkpoints also carry "opm" here: the trainer hands it to the method (checkpoint migration)
        ft = self.feature_transform
        if ft is not None and isinstance(state, Mapping) and state.get("feature_transform") is not None:
            ft.load_state_dict(state["feature_transform"])

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
        transform: Callable[..., Mapping[str, Tensor]] | None = None,
    ) -> ModelOutput:
        features = self.encode(inputs, lengths)
        head_logits = None if self.heads is None else {n: self.heads[n](features[n]) for n in self.modalities}
        if not self.combiner.uses_fusion:  # the fusion head is not part of this model's prediction
            assert head_logits is not None  # prediction != "fused" needs heads (checked in __init__)
            return ModelOutput(
                logits=self.combiner(None, head_logits),
                modality_logits={n: v.detach() for n, v in head_logits.items()},
                features=features,
                head_logits=head_logits,
            )
        estimate = self.estimator(self.fusion, features, labels)
        fused_in: Mapping[str, Tensor] = features
        sample_keep = None
        if transform is None and self.feature_transform is not None:
            transform = self.feature_transform.transform_features
            holder = self.feature_transform
        else:
            holder = None
        if transform is not None and self.training:
            baseline = self.estimator.baseline_features(features) if self.estimator.baseline == "mean" else None
            fused_in = transform(features, labels=labels, modality_logits=estimate.modality_logits, baseline=baseline)
            sample_keep = getattr(holder, "sample_keep", None) if holder is not None else None
        logits = self.fusion(fused_in)
        fused_logits = None
        if self.combiner.fitted and not self.training:
            fused_logits = logits
            logits = self.combiner(logits, head_logits)
        return ModelOutput(
            logits=logits,
            fused_logits=fused_logits,
            modality_logits=estimate.modality_logits,
            features=features,
            sample_keep=sample_keep,
            probe_loss=estimate.probe_loss,
            head_logits=head_logits,
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
