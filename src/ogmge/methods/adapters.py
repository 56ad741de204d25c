"""``OGMGE`` and ``OPM`` seen through the balancing-method protocol (their own API unchanged).

- :class:`OGMGEMethod` acts after backward: ``after_backward`` is ``OGMGE.step``
  (scores, ratios, coefficients, modulation; measure-only in ``Normal`` mode).
- :class:`OPMMethod` acts on the features before fusion: ``transform_features``
  draws OPM masks from the batch's discrepancy ratios and applies them; the fused
  loss then uses only the samples that kept a modality (``sample_keep``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ogmge.modulation import OGMGE, OPM, ModulationStats, OPMMasks, batch_scores
from ogmge.modulation.opm import feature_widths

from .base import BalancingMethod


class OGMGEMethod(BalancingMethod):
    """Wrap an :class:`ogmge.OGMGE` modulator (Peng et al., CVPR 2022)."""

    name = "ogm_ge"

    def __init__(self, modulator: OGMGE) -> None:
        if not isinstance(modulator, OGMGE):
            raise TypeError(f"modulator must be an ogmge.OGMGE, got {type(modulator).__name__}")
        self.modulator = modulator
        self.modalities = modulator.modalities
        self.stats: ModulationStats | None = None

    def after_backward(self, *, modality_logits=None, labels=None, epoch=None, sample_weight=None):
        if modality_logits is None or labels is None:
            raise ValueError("OGM-GE needs modality_logits and labels after backward")
        self.stats = self.modulator.step(
            modality_logits={n: modality_logits[n] for n in self.modalities}, labels=labels, epoch=epoch,
            sample_weight=sample_weight,
        )
        return self.stats

    def state_dict(self) -> dict:
        return self.modulator.state_dict()

    def load_state_dict(self, state: Mapping) -> None:
        self.modulator.load_state_dict(state)

    def trace_row(self) -> dict:
        return {} if self.stats is None else self.stats.to_floats()

    def __repr__(self) -> str:
        return f"OGMGEMethod({self.modulator!r})"


class OPMMethod(BalancingMethod):
    """Wrap an :class:`ogmge.OPM` (Wei, Hu, Du, Wen, TPAMI 2024) as a feature transform."""

    name = "opm"

    def __init__(self, opm: OPM) -> None:
        if not isinstance(opm, OPM):
            raise TypeError(f"opm must be an ogmge.OPM, got {type(opm).__name__}")
        self.opm = opm
        self.masks: OPMMasks | None = None

    def transform_features(self, features, *, labels=None, modality_logits=None, baseline=None):
        if labels is None or modality_logits is None:
            raise ValueError("OPM needs labels and modality_logits to draw its masks")
        ratios = self.opm.ratios(batch_scores(modality_logits, labels))
        first = next(iter(features.values()))
        self.masks = self.opm.sample(ratios, first.shape[0], device=first.device,
                                     widths=feature_widths({n: features[n] for n in ratios}))
        return self.masks.apply(features)

    @property
    def sample_keep(self) -> Tensor | None:
        return None if self.masks is None else self.masks.sample_keep

    def loss(self, logits, labels, *, head_logits=None, sample_keep=None):
        keep = sample_keep if sample_keep is not None else self.sample_keep
        return super().loss(logits, labels, head_logits=head_logits, sample_keep=keep)

    def state_dict(self) -> dict:
        return self.opm.state_dict()

    def load_state_dict(self, state: Mapping) -> None:
        self.opm.load_state_dict(state)

    def trace_row(self) -> dict:
        if self.masks is None:
            return {}
        row = {f"opm_q/{n}": float(q) for n, q in self.masks.drop_probabilities.items()}
        row.update({f"opm_keep/{n}": float(k.float().mean()) for n, k in self.masks.keep.items()})
        return row
