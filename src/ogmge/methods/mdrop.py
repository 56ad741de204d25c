"""Modality dropout.

A standard regulariser of multimodal training (e.g. Neverova, Wolf, Taylor,
Nebout, "ModDrop: adaptive multi-modal gesture recognition", TPAMI 2016),
in the form of DESIGN §7: per *training* sample, with probability ``p`` keep
one modality chosen uniformly at random and replace every other modality's
feature by a baseline feature (zeros, or e.g. the estimator's running mean of
training features); with probability ``1 - p`` keep them all. Each modality is
therefore kept with probability ``1 - p (N - 1) / N``, and no sample ever loses
every modality. Evaluation uses every modality (do not call it there).

In a plain loop::

    md = ModalityDropout(["audio", "visual"], p=0.5, seed=0)
    feats = model.encode(inputs)
    if model.training:
        feats = md.transform_features(feats)
    loss = F.cross_entropy(model.fusion(feats), y)

Every draw uses an explicit, seeded ``torch.Generator`` (one per device), saved
by ``state_dict`` so a resumed run drops the same samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ogmge.modulation.generators import GeneratorPool
from ogmge.validation import check_number

from .base import BalancingMethod, check_modalities
from .registry import Option, Space, register


@register
class ModalityDropout(BalancingMethod):
    """Modality dropout: per training sample, w.p. p keep a single modality's features (a feature transform).

    ``modalities``: two or more names. Keyword-only: ``p`` (probability that a
    sample keeps a single modality, in [0, 1]; default 0.5), ``seed`` or
    ``generator`` for the draws.
    """

    name = "mdrop"
    paper = "Neverova, Wolf, Taylor, Nebout, 'ModDrop: adaptive multi-modal gesture recognition', TPAMI 2016"
    options = (
        Option("p", float, 0.5, "probability that a training sample keeps one modality only", low=0.0, high=1.0,
               source="this project's choice, not the paper's: half the samples keep a single modality "
                      "(ModDrop's own rates are per gesture channel and do not carry over)", space=Space.uniform(0.1, 0.9), legacy_key="mdrop_p"),
    )
    min_modalities = 2
    tie_rank = 4.0
    transforms_features = True

    @classmethod
    def build(cls, ctx, **options) -> ModalityDropout:
        """Draws from its own stream, ``component_seed(seed, "mdrop")`` (not the run's seed, which also
        initialises the weights); a resumed run restores its saved generator state, whatever seeded it."""
        return cls(ctx.modalities, seed=ctx.component_seed("mdrop"), **cls.resolve_options(options))

    def __init__(self, modalities, *, p: float = 0.5, seed: int = 0, generator: torch.Generator | None = None) -> None:
        self.modalities = check_modalities("modalities", modalities)
        self.p = check_number("p", p, lo=0.0, hi=1.0)
        self.generators = GeneratorPool(seed, generator)
        self.keep: dict[str, Tensor] | None = None

    def sample(self, batch_size: int, device=None) -> dict[str, Tensor]:
        """Keep masks ``{name: (B,) bool}`` for one batch (no host synchronisation)."""
        device = torch.device(device) if device is not None else torch.device("cpu")
        gen = self.generators.get(device)
        single = torch.rand((batch_size,), generator=gen, device=device) < self.p
        chosen = torch.randint(len(self.modalities), (batch_size,), generator=gen, device=device)
        return {n: ~single | (chosen == i) for i, n in enumerate(self.modalities)}

    def transform_features(self, features: Mapping[str, Tensor], *, labels=None, modality_logits=None,
                           baseline: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
        missing = [n for n in self.modalities if n not in features]
        if missing:
            raise KeyError(f"modality dropout is missing features for modalities {missing}")
        first = features[self.modalities[0]]
        keep = self.sample(first.shape[0], first.device)
        out = dict(features)
        for n in self.modalities:
            f = features[n]
            mask = keep[n].view(f.shape[0], *([1] * (f.dim() - 1)))
            base = f.new_zeros(()) if baseline is None or n not in baseline else baseline[n].to(f.dtype)
            out[n] = torch.where(mask, f, base)
        self.keep = keep
        return out

    def kept_fraction(self) -> dict[str, Tensor]:
        """Fraction of the last batch's samples that kept each modality (0-d tensors)."""
        if self.keep is None:
            return {}
        return {n: k.float().mean() for n, k in self.keep.items()}

    def state_dict(self) -> dict:
        return {"generators": self.generators.state_dict(), "p": self.p, "modalities": list(self.modalities)}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", self.modalities)) != list(self.modalities):
            raise ValueError(f"modality-dropout state is for {state.get('modalities')}, this one has "
                             f"{list(self.modalities)}")
        self.generators.load_state_dict(state["generators"])

    def load_legacy_state(self, legacy: Mapping) -> None:
        if legacy.get("feature_transform"):
            self.load_state_dict(legacy["feature_transform"])

    def trace_row(self) -> dict[str, Tensor]:
        """``mdrop_keep/<m>``: the last batch's kept fraction (0-d tensors; no host sync)."""
        return {f"mdrop_keep/{n}": v for n, v in self.kept_fraction().items()}

    def __repr__(self) -> str:
        return f"ModalityDropout(modalities={list(self.modalities)}, p={self.p})"
