"""The prediction rule of a model: which outputs its prediction combines, with which weights.

A run is a (method, prediction) pair: the method trains, the prediction rule turns
the trained outputs into ``logits``. Rules:

- ``"fused"``: the fusion head's logits (no weights);
- ``"ensemble"``: ``sum_u w_u log_softmax(head_u)`` over the per-modality heads
  (Du et al., ICML 2023's unimodal ensemble);
- ``"blend"``: ``w_f log_softmax(fused) + sum_u w_u log_softmax(head_u)``, members
  ``("fused", *modalities)`` (the anchored blend).

The weights are a buffer of this module, the one place they live: checkpoints,
``predict`` and evaluation use it. :meth:`Combiner.fit` fits them on held-out
outputs (:func:`ogmge.combination.fit_simplex_weights`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ogmge.combination import ensemble_logits, fit_simplex_weights

PREDICTIONS = ("fused", "ensemble", "blend")
#: The rules whose weights are fitted on held-out data (their validation scores are cross-fitted).
FITTED_RULES = ("ensemble", "blend")
#: What ``compare`` calls each rule in a candidate's name (``multitask+stacked``): both fitted
#: rules are the ``stacked`` pool (``ogmge.methods.stacked``), over the fused and the modality
#: heads (``blend``) or over the modality heads only (``ensemble``).
RULE_LABELS = {"fused": "fused", "ensemble": "stacked", "blend": "stacked"}
#: Key of the fusion head among a blend's members (``ogmge.methods.FUSED``).
FUSED_MEMBER = "fused"


class Combiner(nn.Module):
    """A prediction rule over ``modalities`` (see the module docstring); ``weights`` in ``members`` order."""

    weights: Tensor

    def __init__(self, rule: str, modalities: Sequence[str]) -> None:
        super().__init__()
        if rule not in PREDICTIONS:
            raise ValueError(f"prediction must be one of {PREDICTIONS}, got {rule!r}")
        self.rule = rule
        self.modalities = tuple(modalities)
        if rule == "blend":
            self.members: tuple[str, ...] = (FUSED_MEMBER, *self.modalities)
        elif rule == "ensemble":
            self.members = self.modalities
        else:
            self.members = (FUSED_MEMBER,)
        if self.fitted:
            self.register_buffer("weights", torch.full((len(self.members),), 1.0 / len(self.members)))

    @property
    def fitted(self) -> bool:
        """Whether the rule has weights fitted on held-out data."""
        return self.rule in FITTED_RULES

    @property
    def uses_fusion(self) -> bool:
        return self.rule != "ensemble"

    def member_logits(self, fused: Tensor | None, head_logits: Mapping[str, Tensor] | None) -> dict[str, Tensor]:
        """``{member: logits}`` from the fusion head's and the heads' logits."""
        out = dict(head_logits or {})
        if fused is not None:
            out[FUSED_MEMBER] = fused
        missing = [m for m in self.members if m not in out]
        if missing:
            raise ValueError(f"prediction {self.rule!r} needs the logits of {list(self.members)}; missing {missing}")
        return {m: out[m] for m in self.members}

    def forward(self, fused: Tensor | None, head_logits: Mapping[str, Tensor] | None = None) -> Tensor:
        if not self.fitted:
            assert fused is not None
            return fused
        return ensemble_logits(self.member_logits(fused, head_logits), self.weights, self.members)

    def set_weights(self, weights) -> None:
        """Set ``w`` in ``members`` order (or ``{member: w}``): finite, >= 0."""
        if not self.fitted:
            raise ValueError("the 'fused' prediction has no weights (use prediction='ensemble' or 'blend')")
        if isinstance(weights, Mapping):
            weights = [weights[n] for n in self.members]
        w = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if w.numel() != len(self.members) or not torch.isfinite(w).all() or (w < 0).any():
            raise ValueError(f"ensemble weights must be {len(self.members)} finite values >= 0 for "
                             f"{list(self.members)}, got {weights!r}")
        self.weights.copy_(w.to(self.weights))

    def fit(self, member_logits: Mapping[str, Tensor], labels: Tensor, *, max_steps: int = 500,
            tol: float = 1e-10) -> Tensor:
        """Fit ``w`` on held-out ``{member: logits}`` and keep it; returns ``w`` (float64)."""
        w = fit_simplex_weights(member_logits, labels, self.members, max_steps=max_steps, tol=tol)
        self.set_weights(w)
        return w

    def fit_weights(self, member_logits: Mapping[str, Tensor], labels: Tensor) -> Tensor:
        """``w`` fitted on ``member_logits`` without keeping it (cross-fitting)."""
        return fit_simplex_weights(member_logits, labels, self.members)

    def trace_row(self) -> dict[str, float]:
        """The weights for the metrics row: ``ensemble_w/<m>`` or ``blend_w/<member>``."""
        if not self.fitted:
            return {}
        prefix = "ensemble_w" if self.rule == "ensemble" else "blend_w"
        return {f"{prefix}/{m}": float(self.weights[i]) for i, m in enumerate(self.members)}

    def extra_repr(self) -> str:
        return f"rule={self.rule!r}, members={list(self.members)}"
