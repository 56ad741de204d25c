"""What compare asks of a method, one small function each, answered by the method registry
(``ogmge.methods.registry``): the method classes declare it, compare never tests a name."""

from __future__ import annotations

from ...methods import registry
from ...models.combiner import FITTED_RULES, RULE_LABELS


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
    """Whether ``method`` (or a candidate ``method+<rule>``) fits something on the validation
    split, so that its selection score must be cross-fitted: the method declares it, or the
    candidate's prediction rule has weights fitted there."""
    name, rule = split_candidate(method)
    return (registry.is_registered(name) and bool(registry.get(name).fits_on_validation)) or rule in FITTED_RULES


def modulation_of(method: str) -> tuple[str, bool]:
    """``(modulation, opm)`` that ``method`` sets in a run's configuration (its ``paper_flags``)."""
    flags = registry.get(method).paper_flags if registry.is_registered(method) else {}
    return str(flags.get("modulation", "Normal")), bool(flags.get("opm", False))


def depends_on(method: str) -> tuple[str, ...]:
    """The runs ``method`` needs before it trains (its ``depends_on``; e.g. ``("alone",)``)."""
    return tuple(registry.get(method).depends_on) if registry.is_registered(method) else ()


# ------------------------------------------------------------------ (method, prediction) pairs
#: Place of a prediction rule in the tie order among one method's pairs (the fused head is simpler
#: than a pool fitted on validation).
RULE_ORDER = {"fused": 0}


def pairs_of(method: str) -> list[tuple[str, str]]:
    """``[(candidate name, prediction rule)]`` of ``method``, its default rule first: the default
    rule's candidate is the method's own name, another's ``method+<label>`` (``multitask+stacked``;
    ``ogmge.models.combiner.RULE_LABELS``). A method unknown here has its one default pair."""
    if not registry.is_registered(method) or "+" in method:
        return [(method, "fused")]
    rules = registry.get(method).predictions
    out = [(method, rules[0])]
    for rule in rules[1:]:
        key = f"{method}+{RULE_LABELS.get(rule, rule)}"
        out.append((key if key not in dict(out) else f"{method}+{rule}", rule))
    return out


def split_candidate(name: str) -> tuple[str, str | None]:
    """``(method, prediction rule)`` of a candidate name; the rule is None for a name that
    names no pair of a registered method (an unknown method, or an unknown rule)."""
    method = name.split("+", 1)[0]
    return method, dict(pairs_of(method)).get(name)


def is_candidate(name: str) -> bool:
    """Whether ``name`` is a registered method or one of its (method, prediction) pairs."""
    method, rule = split_candidate(name)
    return registry.is_registered(method) and rule is not None


def run_method(name: str) -> str:
    """The method whose run a candidate reads (``multitask`` for ``multitask+stacked``)."""
    return split_candidate(name)[0]


def candidate_keys(name: str) -> list[str]:
    """The rows a compared name stands for: every pair of a method, or the one pair named."""
    return [k for k, _ in pairs_of(name)] if "+" not in name else [name]


def alias_target(name: str) -> str | None:
    """The pair an alias stands for in compare (its ``alias_of``: ``anchored`` ->
    ``multitask+stacked``), None for a name that is no alias."""
    if "+" in name or not registry.is_registered(name):
        return None
    alias = registry.get(name).alias_of
    if alias is None:
        return None
    method, rule = alias
    keys = [k for k, r in pairs_of(method) if r == rule]
    if not keys:
        raise ValueError(f"method {name} is declared an alias of {method} with prediction {rule!r}, which "
                         f"{method} does not declare (its predictions: {list(registry.get(method).predictions)})")
    return keys[0]


def tie_key(name: str) -> tuple[float, int]:
    """A candidate's place in the tie order: its method's ``tie_rank``, then its rule's (fused first)."""
    method, rule = split_candidate(name)
    return tie_rank(method), RULE_ORDER.get(rule or "fused", 1)


def candidate_order() -> list[str]:
    """Every registered method's candidates (its pairs), simplest first."""
    return sorted((k for m in registry.names() for k, _ in pairs_of(m)), key=tie_key)

