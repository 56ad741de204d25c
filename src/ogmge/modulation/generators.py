"""Seeded ``torch.Generator`` objects, one per device, with saveable state.

Every random draw of the modulation core (GE noise, OPM masks) goes through an
explicit generator. Seeding each device's generator with the same seed gives
every DDP rank the same stream, so replicas stay identical.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


class GeneratorPool:
    """Lazily created generators keyed by device, all seeded with ``seed``."""

    def __init__(self, seed: int = 0, generator: torch.Generator | None = None) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, got {seed!r}")
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
            pending = self._pending.pop(key, None)
            if pending is not None:
                gen.set_state(pending)
            self._generators[key] = gen
        return gen

    def state_dict(self) -> dict:
        states = dict(self._pending)
        states.update({k: g.get_state() for k, g in self._generators.items()})
        return {"seed": self.seed, "states": states}

    def load_state_dict(self, state: Mapping) -> None:
        self.seed = int(state["seed"])
        for key, value in state["states"].items():
            value = torch.as_tensor(value, dtype=torch.uint8).cpu()
            if key in self._generators:
                self._generators[key].set_state(value)
            else:
                self._pending[key] = value
