"""On-the-fly Prediction Modulation (OPM), the forward-pass counterpart of OGM.

Wei, Hu, Du, Wen, "On-the-fly Modulation for Balanced Multimodal Learning",
TPAMI 2024 (arXiv 2410.11582). With probability ``p_exe`` a batch is
modulated: each sample keeps modality u's feature with probability
``1 - q_u``, ``q_u = clip(q_base * (1 + lam * tanh(relu(rho_u - 1))), 0, 1)``
for ``rho_u > 1`` and 0 otherwise. Kept features are divided by ``1 - q_u``
so their expected scale is unchanged; samples that lose every modality are
left out of the loss (``OPMMasks.sample_keep``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor

from ..validation import check_number
from .generators import GeneratorPool


def opm_drop_probabilities(
    ratios: Mapping[str, Tensor], *, q_base: float = 0.5, lam: float = 0.5
) -> dict[str, Tensor]:
    """Drop probability ``q_u`` of each modality from its discrepancy ratio.

    >>> import torch
    >>> q = opm_drop_probabilities({"audio": torch.tensor(2.0), "visual": torch.tensor(0.5)})
    >>> {m: round(float(v), 4) for m, v in q.items()}
    {'audio': 0.6904, 'visual': 0.0}
    """
    out = {}
    for name, rho in ratios.items():
        q = (q_base * (1 + lam * torch.tanh(torch.relu(rho - 1)))).clamp(0.0, 1.0)
        out[name] = torch.where(rho > 1, q, torch.zeros_like(q))
    return out


@dataclass(frozen=True)
class OPMMasks:
    """Per-sample keep masks (bool, shape (batch,)) keyed by modality.

    ``scales`` are the factors kept features are multiplied by, ``executed`` a
    0-d bool tensor (whether this batch was modulated at all), ``sample_keep``
    the samples that kept at least one modality (the ones the loss may use).

    >>> import torch
    >>> masks = OPM(p_exe=1.0).sample({"audio": torch.tensor(3.0), "visual": torch.tensor(0.3)}, batch_size=4)
    >>> bool(masks.keep["visual"].all())  # only a dominant modality (rho > 1) is dropped
    True
    >>> masks.apply({"audio": torch.ones(4, 2), "visual": torch.ones(4, 2)})["audio"].shape
    torch.Size([4, 2])
    """

    keep: dict[str, Tensor]
    scales: dict[str, Tensor]
    drop_probabilities: dict[str, Tensor]
    executed: Tensor
    sample_keep: Tensor

    def apply(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Zero the dropped samples' features and rescale the kept ones."""
        out = {}
        for name, f in features.items():
            if name not in self.keep:
                out[name] = f
                continue
            shape = (f.shape[0],) + (1,) * (f.dim() - 1)
            factor = self.keep[name].to(f.dtype) * self.scales[name].to(f.dtype)
            out[name] = f * factor.view(shape)
        return out


class OPM:
    """Sample OPM masks from discrepancy ratios (journal extension of OGM-GE).

    Defaults are the released ones: ``q_base=0.5``, ``lam=0.5``, ``p_exe=0.7``.
    Every draw uses a generator seeded with ``seed`` (or the given one).

    >>> import torch
    >>> ratios = {"audio": torch.tensor(2.0), "visual": torch.tensor(0.5)}
    >>> a, b = OPM(seed=1).sample(ratios, batch_size=8), OPM(seed=1).sample(ratios, batch_size=8)
    >>> torch.equal(a.keep["audio"], b.keep["audio"])  # seeded: identical draws
    True
    """

    def __init__(
        self,
        *,
        q_base: float = 0.5,
        lam: float = 0.5,
        p_exe: float = 0.7,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.q_base = check_number("q_base", q_base, lo=0, hi=1)
        self.lam = check_number("lam", lam, lo=0)
        self.p_exe = check_number("p_exe", p_exe, lo=0, hi=1)
        self.generators = GeneratorPool(seed, generator)

    def sample(self, ratios: Mapping[str, Tensor], batch_size: int, device=None) -> OPMMasks:
        """Draw this batch's masks; no host synchronisation."""
        names = list(ratios)
        device = torch.device(device) if device is not None else torch.as_tensor(ratios[names[0]]).device
        gen = self.generators.get(device)
        q = opm_drop_probabilities(
            {n: torch.as_tensor(ratios[n]).to(device).float() for n in names}, q_base=self.q_base, lam=self.lam
        )
        executed = torch.rand((), generator=gen, device=device) < self.p_exe
        keep, scales = {}, {}
        for name in names:
            u = torch.rand((batch_size,), generator=gen, device=device)
            kept = (u >= q[name]) | ~executed
            keep[name] = kept
            scales[name] = torch.where(executed, 1.0 / (1.0 - q[name]).clamp_min(1e-6), torch.ones_like(q[name]))
        sample_keep = torch.stack([keep[n] for n in names]).any(dim=0)
        return OPMMasks(keep, scales, q, executed, sample_keep)

    def state_dict(self) -> dict:
        return {"generators": self.generators.state_dict()}

    def load_state_dict(self, state: Mapping) -> None:
        self.generators.load_state_dict(state["generators"])
