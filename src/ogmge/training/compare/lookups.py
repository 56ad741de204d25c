"""What compare asks of a method, one small function each (the method registry answers these).

Each function here is the single place compare looks a method up by name, so that
moving the answers onto the method classes (``ogmge.methods.registry``) changes
only this module.
"""

from __future__ import annotations

from ..config import METHOD_MODULATION, METHODS

#: Simplicity order for ties: a method wins a tie against every method after it.
#: Methods added later go at the end (in ``METHODS`` order).
SIMPLICITY: tuple[str, ...] = ("normal", "ogm", "ogm_ge", "opm", "mdrop", "gblend", "uni_ensemble", "mmpareto")
#: Methods that fit something on the validation split (``fits_on_validation``): selection
#: needs a cross-fitted score.
CROSS_FIT = frozenset({"uni_ensemble", "gblend", "anchored"})


def known_methods() -> tuple[str, ...]:
    """Every method name compare accepts."""
    return tuple(METHODS)


def tie_rank(method: str) -> int:
    """Position of ``method`` in the tie order (lower wins a tie); unknown names last."""
    order = list(SIMPLICITY) + [m for m in METHODS if m not in SIMPLICITY]
    return order.index(method) if method in order else len(order)


def tie_order() -> list[str]:
    """Every known method, simplest first."""
    return sorted(set(SIMPLICITY) | set(METHODS), key=tie_rank)


def fits_on_validation(method: str) -> bool:
    """Whether ``method`` fits something on the validation split (its selection score
    must then be cross-fitted)."""
    return method in CROSS_FIT


def modulation_of(method: str) -> tuple[str, bool]:
    """``(modulation, opm)`` that ``method`` sets in a run's configuration."""
    return METHOD_MODULATION.get(method, ("Normal", False))
