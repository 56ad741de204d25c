"""Seeded ``torch.Generator`` objects, one per device, with saveable state.

Every random draw of the modulation core (GE noise, OPM masks) goes through an
explicit generator. Seeding each device's generator with the same seed gives
every DDP rank the same stream, so replicas stay identical. A saved state is
keyed by device *type* when one device of that type is in use, so rank 1
(``cuda:1``) resuming from rank 0's checkpoint (``cuda:0``) continues the same
stream as rank 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from ..validation import check_number


class GeneratorPool:
    """Lazily created generators keyed by device, all seeded with ``seed``.

    >>> import torch
    >>> pool = GeneratorPool(seed=3)
    >>> x = torch.rand(2, generator=pool.get("cpu"))
    >>> torch.equal(x, torch.rand(2, generator=torch.Generator().manual_seed(3)))
    True
    """

    def __init__(self, seed: int = 0, generator: torch.Generator | None = None) -> None:
        check_number("seed", seed, integer=True)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._pending: dict[str, Tensor] = {}
        if generator is not None:
            self._generators[str(torch.device(generator.device))] = generator

    def get(self, device: torch.device | str) -> torch.Generator:
        key = str(torch.device(device))
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            kind = torch.device(device).type
            same_kind = [k for k in self._pending if torch.device(k).type == kind]
            if key in self._pending:
                pending = self._pending.pop(key)
            elif kind in self._pending:
                pending = self._pending.pop(kind)
            elif len(same_kind) == 1:  # e.g. saved on cuda:0, resumed on cuda:1
                pending = self._pending.pop(same_kind[0])
            else:
                pending = None
            if pending is not None:
                gen.set_state(pending)
            self._generators[key] = gen
        return gen

    def state_dict(self) -> dict:
        states = dict(self._pending)
        by_type: dict[str, list[str]] = {}
        for key in self._generators:
            by_type.setdefault(torch.device(key).type, []).append(key)
        for kind, keys in by_type.items():
            for key in keys:  # one device of a type: save it under the type
                states[kind if len(keys) == 1 else key] = self._generators[key].get_state()
        return {"seed": self.seed, "states": states}

    def load_state_dict(self, state: Mapping) -> None:
        self.seed = int(state["seed"])
        for key, value in state["states"].items():
            value = torch.as_tensor(value, dtype=torch.uint8).cpu()
            live = [k for k in self._generators if k == key or torch.device(k).type == key]
            if key in self._generators or len(live) == 1:
                self._generators[live[0]].set_state(value)
            else:
                self._pending[key] = value
