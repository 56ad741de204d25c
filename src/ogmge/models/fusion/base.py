"""Common contract of fusion heads: ``forward(features: {name: (B, D_u)}) -> logits (B, C)``."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ...validation import check_choice, check_positive_int
from ..estimators import EstimatorName


def check_in_dims(in_dims: Mapping[str, int], *, min_modalities: int = 1, exactly: int | None = None) -> dict[str, int]:
    if not isinstance(in_dims, Mapping) or not in_dims:
        raise ValueError(f"in_dims must be a non-empty dict of modality name -> feature size, got {in_dims!r}")
    out = {}
    for name, d in in_dims.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"in_dims keys must be modality names (non-empty str), got {name!r}")
        out[name] = check_positive_int(f"in_dims[{name!r}]", d)
    if exactly is not None and len(out) != exactly:
        raise ValueError(f"this fusion takes exactly {exactly} modalities, got {list(out)}")
    if len(out) < min_modalities:
        raise ValueError(f"this fusion needs at least {min_modalities} modalities, got {list(out)}")
    return out


def choose_pair(option: str, role: str, chosen: str | None, modalities) -> tuple[str, str]:
    """``(chosen, other)`` of a two-modality head: ``chosen`` as given, else ``"audio"``
    when present (the official code conditions and gates on audio); never a modality
    picked by its position (DESIGN §6). ``option`` names the keyword (``condition``, ``gate``)."""
    if chosen is None:
        chosen = _default_audio(option, role, modalities)
    check_choice(option, chosen, modalities)
    return chosen, next(n for n in modalities if n != chosen)


def _default_audio(option: str, role: str, modalities) -> str:
    if "audio" in modalities:
        return "audio"
    raise ValueError(
        f"{option}= must name the {role} modality: the default is 'audio', which is not among "
        f"{list(modalities)}; pass {option}=<name> (fusion_options={{'{option}': <name>}}, or "
        f"model_options: {{fusion_options: {{{option}: <name>}}}} in a config)"
    )


def check_num_classes(num_classes) -> int:
    return check_positive_int("num_classes", num_classes)


class FusionHead(nn.Module):
    """Base of the fusion heads, keyed by modality name.

    ``default_estimator`` names the per-modality logit estimator used when the
    classifier is given none (``"linear"`` where ``linear_split`` exists).
    """

    default_estimator: EstimatorName = "shapley"
    supports_linear_split = False

    def __init__(self, in_dims: Mapping[str, int], num_classes: int, **checks) -> None:
        super().__init__()
        self.in_dims = check_in_dims(in_dims, **checks)
        self.modalities = tuple(self.in_dims)
        self.num_classes = check_num_classes(num_classes)

    def _check(self, features: Mapping[str, Tensor]) -> None:
        missing = [n for n in self.modalities if n not in features]
        if missing:
            raise KeyError(f"fusion {type(self).__name__} is missing features for modalities {missing}")

    def linear_split(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        raise NotImplementedError(
            f"{type(self).__name__} has no linear split (only sum and concat heads do); "
            "use estimator='masking', 'shapley' or 'probe'"
        )
