"""Seeds of a run's random components (layer 0).

A run has one ``seed``; each random component draws from its own generator,
seeded with :func:`component_seed` of ``(seed, component name)``. Two
components seeded with the run's seed itself would draw the *same* stream on
one device (GE noise correlated with OPM's masks, say); derived seeds give
independent streams that still depend on nothing but ``seed`` and the name,
so every DDP rank derives the same ones and a run is reproducible.

Names in use (``ogmge.training.factory``): ``"ogmge"`` (the modulator's GE noise),
``"opm"`` (OPM's masks), ``"estimator"`` (sampled-Shapley permutations). A
balancing method that draws random numbers takes its own name.
"""

from __future__ import annotations

import hashlib

from .validation import check_number


def component_seed(seed: int, name: str) -> int:
    """A seed in ``[0, 2**63)`` for the component ``name`` of a run seeded with ``seed``.

    The first 8 bytes (little-endian) of BLAKE2b over ``"<seed>/<name>"``, top bit
    cleared: stable across processes, platforms and Python versions (unlike ``hash``),
    and distinct names give unrelated seeds.
    """
    seed = check_number("seed", seed, integer=True)
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    digest = hashlib.blake2b(f"{seed}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


__all__ = ["component_seed"]
