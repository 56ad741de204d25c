"""A multimodal classifier over named modalities that returns fused *and* per-modality logits.

Per-modality logits come from a :class:`LogitEstimator` (DESIGN §2) and feed
OGM-GE's scores (Peng et al., CVPR 2022, Eq. 8) in training and the
per-modality accuracy in evaluation. With ``opm``, the forward pass applies
On-the-fly Prediction Modulation (Wei, Hu, Du, Wen, TPAMI 2024): in training
mode with labels, the discrepancy ratios of the current batch (from the
detached per-modality logits) set each modality's drop probability; sampled
per-sample masks drop and rescale features before fusion, and ``sample_keep``
tells the loss which samples kept at least one modality.

For the balancing methods of ``ogmge.methods`` (docs/methods.md): ``heads=True``
adds a trainable linear head per modality on its encoder's (unmasked) features,
returned as ``head_logits`` (not detached; G-Blending, MMPareto, the unimodal
ensemble train them); ``prediction="ensemble"`` makes the output logits the
unimodal ensemble's ``sum_u w_u log_softmax(head_u)`` with ``w`` a buffer
(``set_ensemble_weights``), so evaluation, prediction and checkpoints need no
other object; ``feature_transform`` (e.g. :class:`ogmge.methods.ModalityDropout`)
changes the features the fusion head sees in training mode only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

from ..methods.uni_ensemble import ensemble_logits
from ..modulation import OPM, OPMMasks, batch_scores
from ..modulation.opm import feature_widths
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
    opm: OPMMasks | None = None
    head_logits: dict[str, Tensor] | None = None
    fused_logits: Tensor | None = None


PREDICTIONS = ("fused", "ensemble", "blend")
#: Key of the fusion head among a blend's members (``ogmge.methods.FUSED``).
FUSED_MEMBER = "fused"


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
    released defaults, or None. ``heads``: a trainable linear head per modality
    (``head_logits``). ``prediction``: ``"fused"`` (the fusion head) or
    ``"ensemble"`` (needs heads; ``sum_u w_u log_softmax(head_u)``, ``w`` equal
    until ``set_ensemble_weights``; per-modality logits are then the heads') or
    ``"blend"`` (needs heads; in evaluation ``w_f log_softmax(fused) + sum_u w_u
    log_softmax(head_u)``, members ``("fused", *modalities)``; in training the
    fusion head's logits, which the loss trains).
    ``feature_transform``: an object with ``transform_features(features, labels=,
    modality_logits=, baseline=)`` applied before fusion in training mode.
    """

    ensemble_weights: Tensor  # a buffer, registered only when prediction != "fused"

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        fusion: nn.Module,
        estimator: EstimatorName | LogitEstimator | None = None,
        opm: OPM | bool | None = None,
        *,
        heads: bool = False,
        prediction: str = "fused",
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
        if opm is True:
            opm = OPM()
        elif opm is False:
            opm = None
        if opm is not None and not isinstance(opm, OPM):
            raise TypeError(f"opm must be an ogmge.OPM, True or None, got {type(opm).__name__}")
        if opm is not None and len(self.modalities) < 2:
            raise ValueError(f"opm needs at least two modalities, got {list(self.modalities)}")
        self.opm = opm
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
        self.prediction = prediction
        if prediction != "fused":
            members = len(self.prediction_members)
            self.register_buffer("ensemble_weights", torch.full((members,), 1.0 / members))
        if prediction == "ensemble":
            # the ensemble never runs the fusion head or the estimator: frozen, so optimisers and DDP skip them
            for p in (*self.fusion.parameters(), *self.estimator.parameters()):
                p.requires_grad_(False)
        if feature_transform is not None and not callable(getattr(feature_transform, "transform_features", None)):
            raise TypeError(f"feature_transform must have transform_features(), got {type(feature_transform).__name__}")
        self.feature_transform = feature_transform

    @property
    def prediction_members(self) -> tuple[str, ...]:
        """The outputs a combined prediction weighs, in weight order (``"fused"`` first in a blend)."""
        if self.prediction == "blend":
            return (FUSED_MEMBER, *self.modalities)
        return self.modalities if self.prediction == "ensemble" else (FUSED_MEMBER,)

    def set_ensemble_weights(self, weights) -> None:
        """Set the combined prediction's weights ``w`` in ``prediction_members`` order (or ``{member: w}``)."""
        if self.prediction == "fused":
            raise ValueError("set_ensemble_weights needs prediction='ensemble' or 'blend'")
        members = self.prediction_members
        if isinstance(weights, Mapping):
            weights = [weights[n] for n in members]
        w = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if w.numel() != len(members) or not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"ensemble weights must be {len(members)} finite values >= 0 for {list(members)}, "
                             f"got {weights!r}")
        self.ensemble_weights.copy_(w.to(self.ensemble_weights))

    @property
    def num_classes(self) -> int:
        return int(cast(int, self.fusion.num_classes))

    def get_extra_state(self) -> dict:
        state = {"opm": None if self.opm is None else self.opm.state_dict()}
        ft = self.feature_transform
        if ft is not None and hasattr(ft, "state_dict"):  # e.g. modality dropout's generator streams
            state["feature_transform"] = ft.state_dict()
        return state

    def set_extra_state(self, state) -> None:
        if self.opm is not None and isinstance(state, Mapping) and state.get("opm") is not None:
            self.opm.load_state_dict(state["opm"])
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
    ) -> ModelOutput:
        features = self.encode(inputs, lengths)
        head_logits = None if self.heads is None else {n: self.heads[n](features[n]) for n in self.modalities}
        if self.prediction == "ensemble":  # the fusion head is not part of this model's prediction
            assert head_logits is not None  # prediction != "fused" needs heads (checked in __init__)
            return ModelOutput(
                logits=ensemble_logits(head_logits, self.ensemble_weights, self.modalities),
                modality_logits={n: v.detach() for n, v in head_logits.items()},
                features=features,
                head_logits=head_logits,
            )
        estimate = self.estimator(self.fusion, features, labels)
        fused_in: Mapping[str, Tensor] = features
        masks = None
        if self.opm is not None and self.training and labels is not None:
            ratios = self.opm.ratios(batch_scores(estimate.modality_logits, labels))
            first = features[self.modalities[0]]
            masks = self.opm.sample(ratios, first.shape[0], device=first.device, widths=feature_widths(features))
            fused_in = masks.apply(features)
        if self.feature_transform is not None and self.training:
            baseline = self.estimator.baseline_features(features) if self.estimator.baseline == "mean" else None
            fused_in = self.feature_transform.transform_features(
                fused_in, labels=labels, modality_logits=estimate.modality_logits, baseline=baseline
            )
        logits = self.fusion(fused_in)
        fused_logits = None
        if self.prediction == "blend" and not self.training:
            fused_logits = logits
            assert head_logits is not None  # prediction != "fused" needs heads (checked in __init__)
            logits = ensemble_logits({FUSED_MEMBER: logits, **head_logits}, self.ensemble_weights,
                                     self.prediction_members)
        return ModelOutput(
            logits=logits,
            fused_logits=fused_logits,
            modality_logits=estimate.modality_logits,
            features=features,
            sample_keep=None if masks is None else masks.sample_keep,
            probe_loss=estimate.probe_loss,
            opm=masks,
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
