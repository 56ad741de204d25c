"""What compare asks of a method, one small function each, answered by the method registry
(``ogmge.methods.registry``): the method classes declare it, compare never tests a name."""

from __future__ import annotations

from ...methods import registry


def known_methods() -> tuple[str, ...]:
    """Every registered method, simplest first."""
    return registry.names()


def tie_rank(method: str) -> float:
    """The method's declared place in the tie order (lower wins a tie); unknown names last."""
    return registry.get(method).tie_rank if registry.is_registered(method) else float("inf")


def tie_order() -> list[str]:
    """Every registered method, simplest first."""
    return list(registry.names())


def fits_on_validation(method: str) -> bool:
    """Whether ``method`` fits something on the validation split (its selection score
    must then be cross-fitted)."""
    return registry.is_registered(method) and bool(registry.get(method).fits_on_validation)


def modulation_of(method: str) -> tuple[str, bool]:
    """``(modulation, opm)`` that ``method`` sets in a run's configuration (its ``paper_flags``)."""
    flags = registry.get(method).paper_flags if registry.is_registered(method) else {}
    return str(flags.get("modulation", "Normal")), bool(flags.get("opm", False))


def depends_on(method: str) -> tuple[str, ...]:
    """The runs ``method`` needs before it trains (its ``depends_on``; e.g. ``("alone",)``)."""
    return tuple(registry.get(method).depends_on) if registry.is_registered(method) else ()
