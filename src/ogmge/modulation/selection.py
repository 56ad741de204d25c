"""Which gradients OGM-GE modulates, chosen by tensor rank.

The paper's code touches only the 4-D gradients (2-D conv kernels) of its two
encoders. ``select="conv"`` (rank >= 3) reproduces that on the paper's model and
extends it to 1-D/3-D convolutions; ``"weights"`` (rank >= 2) adds linear,
recurrent and attention weights; ``"all"`` takes every parameter; ``"auto"``
(the default of ``OGMGE``) is ``"conv"`` for an encoder that has conv kernels
and ``"weights"`` for one that has none, decided per modality.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Literal, get_args

from torch import Tensor, nn

from ..validation import check_choice

#: Named selections of an encoder's parameters (see :func:`select_parameters`).
Selection = Literal["auto", "conv", "weights", "all"]
SELECTIONS: tuple[Selection, ...] = get_args(Selection)

Selector = Selection | Callable[[str, Tensor], bool]


def _min_rank(select: str, params: list[tuple[str, Tensor]]) -> int:
    if select == "auto":
        return 3 if any(p.dim() >= 3 for _, p in params) else 2
    return {"conv": 3, "weights": 2, "all": 0}[select]


def check_select(field: str, select: Selector) -> None:
    if callable(select):
        return
    check_choice(field, select, SELECTIONS, also=" or a callable")


def named_parameters_of(source: nn.Module | Iterable[Tensor]) -> list[tuple[str, Tensor]]:
    """``(name, parameter)`` pairs of a module, or of a plain iterable of tensors."""
    if isinstance(source, nn.Module):
        return list(source.named_parameters())
    if isinstance(source, Tensor):
        return [("0", source)]
    try:
        items = list(source)
    except TypeError:
        raise TypeError(
            f"an encoder must be an nn.Module or an iterable of parameters, got {type(source).__name__}"
        ) from None
    out = []
    for i, p in enumerate(items):
        if isinstance(p, tuple) and len(p) == 2 and isinstance(p[1], Tensor):
            out.append((str(p[0]), p[1]))
        elif isinstance(p, Tensor):
            out.append((str(i), p))
        else:
            raise TypeError(f"expected parameters (tensors), got {type(p).__name__} at position {i}")
    return out


def select_parameters(
    encoders: Mapping[str, nn.Module | Iterable[Tensor]], select: Selector | Mapping[str, Selector]
) -> dict[str, list[tuple[str, Tensor]]]:
    """Per modality, the trainable parameters whose gradients are modulated.

    Raises ValueError naming the modality when its selection is empty (the
    official code silently modulates nothing on such an encoder), and when a
    parameter belongs to two modalities.

    >>> from torch import nn
    >>> encoders = {"audio": nn.Sequential(nn.Conv1d(1, 2, 3), nn.Linear(2, 2)), "visual": nn.Linear(3, 2)}
    >>> selected = select_parameters(encoders, "auto")  # conv kernels where there are any, else weights
    >>> {m: [name for name, _ in params] for m, params in selected.items()}
    {'audio': ['0.weight'], 'visual': ['weight']}
    """
    if isinstance(select, Mapping):
        missing = set(encoders) - set(select)
        if missing:
            raise ValueError(f"select has no entry for modalities {sorted(missing)}")
        extra = set(select) - set(encoders)
        if extra:
            raise ValueError(f"select names modalities without an encoder: {sorted(extra)}")
        per_modality = dict(select)
    else:
        per_modality = dict.fromkeys(encoders, select)
    owner: dict[int, str] = {}
    chosen: dict[str, list[tuple[str, Tensor]]] = {}
    for name, source in encoders.items():
        rule = per_modality[name]
        check_select(f"select[{name!r}]" if isinstance(select, Mapping) else "select", rule)
        params = [(n, p) for n, p in named_parameters_of(source) if p.requires_grad]
        if callable(rule):
            picked = [(n, p) for n, p in params if rule(n, p)]
        else:
            rank = _min_rank(rule, params)
            picked = [(n, p) for n, p in params if p.dim() >= rank]
        if not picked:
            hint = "" if rule != "conv" else " (it has no conv kernels of rank >= 3; try select='weights')"
            raise ValueError(
                f"no parameters selected for modality {name!r} with select={rule!r}{hint}"
            )
        for n, p in picked:
            other = owner.setdefault(id(p), name)
            if other != name:
                raise ValueError(
                    f"parameter {n!r} is shared by modalities {other!r} and {name!r}; "
                    "each encoder's parameters must belong to one modality"
                )
        chosen[name] = picked
    return chosen
