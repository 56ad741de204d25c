"""On-the-fly Prediction Modulation (OPM), the forward-pass counterpart of OGM.

Wei, Hu, Du, Wen, "On-the-fly Modulation for Balanced Multimodal Learning",
TPAMI 2024 (arXiv 2410.11582), as released (GeWu-Lab/BML_TPAMI2024
``code/models/Classifier.py:24-71``, ``code/main.py:91-95``):

1. drop probability of each modality from its discrepancy ratio,
   ``q_u = clip(q_base * (1 + lam * tanh(relu(rho_u - 1))), 0, 1)`` when
   ``rho_u > 1`` and 0 otherwise (``calcu_q``, Classifier.py:58-71);
2. with probability ``p_exe`` the batch is modulated (Classifier.py:34); then
   every sample keeps modality u's feature with probability ``1 - q_u``
   (a Bernoulli mask, Classifier.py:45);
3. **one** factor for every kept feature: ``theta = sum_u d_u q_u / sum_u d_u``
   over the feature widths ``d_u`` the rescale sees, and every (kept) feature is
   divided by ``1 - theta`` (Classifier.py:39-41, 49). The expected number of
   surviving feature entries is ``sum_u d_u (1 - q_u) = (1 - theta) sum_u d_u``,
   so the rescaled input keeps its expected total mass; the dominant modality's
   own contribution shrinks (that is the rebalancing);
4. samples that lose every modality are left out of the loss (``sample_keep``;
   the released code removes them from the batch, Classifier.py:51-52);
5. a warm-up: the released trainer runs neither OPM nor OGM in epochs 0-5
   (``warm_up = 1 if epoch <= 5``, main.py:91) and OPM has no end, so the
   default window here is ``start_epoch=6``, ``end_epoch=None`` (inclusive,
   0-based epochs, as OGM-GE's).

Defaults are the released ones: ``q_base=0.5`` (the argparse default,
main.py:42, which overrides ``config.py``'s 0.4 and is what
``scripts/train_opm.sh`` passes), ``lam=0.5``, ``p_exe=0.7``.

For N > 2 modalities neither released code defines the ratio in general (the
TPAMI code has two; BalanceBenchmark's ``OPM_trainer.py:147-158`` divides by the
*sum* of the other scores for N = 3). Here ``ratio="mean"`` (default) gives
``rho_u = s_u / mean_{w != u} s_w`` and ``ratio="sum"`` BalanceBenchmark's
``s_u / sum_{w != u} s_w``; for two modalities both are the paper's ratio.

``rescale="per_modality"`` is this project's earlier rule (each kept modality
divided by its own ``1 - q_u``, which keeps the dominant modality's expected
contribution unchanged and so removes most of the rebalancing). It is not the
method; it is kept so run directories made with it resume as they started.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, get_args

import torch
from torch import Tensor

from ..validation import check_choice, check_number
from .generators import GeneratorPool
from .scores import discrepancy_ratios

#: How OPM rescales the kept features: the paper's one shared factor, or this project's earlier per-modality rule.
OPMRescale = Literal["shared", "per_modality"]
OPM_RESCALES: tuple[OPMRescale, ...] = get_args(OPMRescale)
#: The other modalities' scores in ``rho_u`` for N > 2 (mean: DESIGN; sum: BalanceBenchmark).
OPMRatio = Literal["mean", "sum"]
OPM_RATIOS: tuple[OPMRatio, ...] = get_args(OPMRatio)
#: Floor of ``1 - theta`` (every modality dropped with certainty: nothing survives to rescale).
THETA_FLOOR = 1e-6


def opm_drop_probabilities(
    ratios: Mapping[str, Tensor], *, q_base: float = 0.5, lam: float = 0.5
) -> dict[str, Tensor]:
    """Drop probability ``q_u`` of each modality from its discrepancy ratio (``calcu_q``).

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


def shared_theta(drop_probabilities: Mapping[str, Tensor], widths: Mapping[str, int]) -> Tensor:
    """``theta = sum_u d_u q_u / sum_u d_u`` (TPAMI code, Classifier.py:39-41).

    >>> import torch
    >>> round(float(shared_theta({"a": torch.tensor(0.6904), "v": torch.tensor(0.0)}, {"a": 512, "v": 512})), 4)
    0.3452
    """
    names = list(drop_probabilities)
    missing = [n for n in names if n not in widths]
    if missing:
        raise ValueError(f"OPM's shared rescale needs the feature width of every modality; missing {missing}")
    total = sum(int(widths[n]) for n in names)
    if total <= 0:
        raise ValueError(f"OPM's feature widths must be positive, got {dict(widths)}")
    q_sum = sum(drop_probabilities[n] * int(widths[n]) for n in names)
    return torch.as_tensor(q_sum) / total


def feature_widths(features: Mapping[str, Tensor]) -> dict[str, int]:
    """``d_u``: the number of entries of one sample's feature (``prod(f.shape[1:])``)."""
    return {n: int(torch.Size(f.shape[1:]).numel()) for n, f in features.items()}


@dataclass(frozen=True)
class OPMMasks:
    """Per-sample keep masks (bool, shape (batch,)) keyed by modality.

    ``drop_probabilities`` the ``q_u``; ``executed`` a 0-d bool tensor (whether this
    batch was modulated at all); ``sample_keep`` the samples that kept at least one
    modality (the ones the loss may use); ``rescale`` the rule of :class:`OPM`;
    ``widths`` the feature widths given to :meth:`OPM.sample` (None: taken from the
    features in :meth:`apply`).

    >>> import torch
    >>> masks = OPM(p_exe=1.0).sample({"audio": torch.tensor(3.0), "visual": torch.tensor(0.3)}, batch_size=4)
    >>> bool(masks.keep["visual"].all())  # only a dominant modality (rho > 1) is dropped
    True
    >>> masks.apply({"audio": torch.ones(4, 2), "visual": torch.ones(4, 2)})["audio"].shape
    torch.Size([4, 2])
    """

    keep: dict[str, Tensor]
    drop_probabilities: dict[str, Tensor]
    executed: Tensor
    sample_keep: Tensor
    rescale: OPMRescale = "shared"
    widths: dict[str, int] | None = None

    def theta(self, widths: Mapping[str, int] | None = None) -> Tensor:
        """The shared ``theta`` of this batch (0 when it was not modulated)."""
        widths = widths if widths is not None else self.widths
        if widths is None:
            raise ValueError("OPM's shared rescale depends on the feature widths: give widths= to OPM.sample "
                             "or to theta()/scales_for()")
        theta = shared_theta(self.drop_probabilities, widths)
        return torch.where(self.executed, theta, torch.zeros_like(theta))

    def scales_for(self, widths: Mapping[str, int] | None = None) -> dict[str, Tensor]:
        """The factor each modality's kept features are multiplied by (1 when not modulated)."""
        if self.rescale == "per_modality":
            return {n: torch.where(self.executed, 1.0 / (1.0 - q).clamp_min(THETA_FLOOR), torch.ones_like(q))
                    for n, q in self.drop_probabilities.items()}
        factor = 1.0 / (1.0 - self.theta(widths)).clamp_min(THETA_FLOOR)
        return {n: factor for n in self.drop_probabilities}

    @property
    def scales(self) -> dict[str, Tensor]:
        """:meth:`scales_for` the widths given to :meth:`OPM.sample`."""
        return self.scales_for(None)

    def apply(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Zero the dropped samples' features and rescale the kept ones (widths from ``features``
        when :meth:`OPM.sample` was not given them)."""
        widths = self.widths
        if widths is None and self.rescale == "shared":
            widths = feature_widths({n: f for n, f in features.items() if n in self.keep})
        scales = self.scales_for(widths)
        out = {}
        for name, f in features.items():
            if name not in self.keep:
                out[name] = f
                continue
            shape = (f.shape[0],) + (1,) * (f.dim() - 1)
            factor = self.keep[name].to(f.dtype) * scales[name].to(f.dtype)
            out[name] = f * factor.view(shape)
        return out


class OPM:
    """Sample OPM masks from discrepancy ratios (journal extension of OGM-GE; module docstring).

    Keyword-only: ``q_base`` (0.5), ``lam`` (0.5), ``p_exe`` (0.7) as released;
    ``rescale`` (``"shared"``: the paper's ``1 / (1 - theta)``; ``"per_modality"``:
    this project's earlier rule, for old runs); ``ratio`` (``"mean"``/``"sum"`` of
    the other scores for N > 2); ``start_epoch`` (6: the released warm-up) and
    ``end_epoch`` (None: no end), an inclusive window of 0-based epochs that applies
    when an epoch is known (:meth:`set_epoch` or ``sample(epoch=)``; unknown: active).
    Every draw uses a generator seeded with ``seed`` (or the given one).

    >>> import torch
    >>> ratios = {"audio": torch.tensor(2.0), "visual": torch.tensor(0.5)}
    >>> a, b = OPM(seed=1).sample(ratios, batch_size=8), OPM(seed=1).sample(ratios, batch_size=8)
    >>> torch.equal(a.keep["audio"], b.keep["audio"])  # seeded: identical draws
    True
    >>> m = OPM(p_exe=1.0).sample(ratios, 4, widths={"audio": 512, "visual": 512})
    >>> {n: round(float(s), 4) for n, s in m.scales.items()}  # one factor for both, 1 / (1 - theta)
    {'audio': 1.5272, 'visual': 1.5272}
    """

    def __init__(
        self,
        *,
        q_base: float = 0.5,
        lam: float = 0.5,
        p_exe: float = 0.7,
        rescale: OPMRescale = "shared",
        ratio: OPMRatio = "mean",
        start_epoch: int = 6,
        end_epoch: int | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        self.q_base = check_number("q_base", q_base, lo=0, hi=1)
        self.lam = check_number("lam", lam, lo=0)
        self.p_exe = check_number("p_exe", p_exe, lo=0, hi=1)
        self.rescale: OPMRescale = check_choice("rescale", rescale, OPM_RESCALES)
        self.ratio: OPMRatio = check_choice("ratio", ratio, OPM_RATIOS)
        self.start_epoch = check_number("start_epoch", start_epoch, integer=True, lo=0)
        self.end_epoch = check_number("end_epoch", end_epoch, integer=True, lo=0, allow_none=True)
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(f"end_epoch ({end_epoch}) must not be before start_epoch ({start_epoch})")
        self.generators = GeneratorPool(seed, generator)
        self.epoch: int | None = None

    def set_epoch(self, epoch: int | None) -> None:
        """The current 0-based epoch (the window's clock); None: unknown (always active)."""
        self.epoch = check_number("epoch", epoch, integer=True, lo=0, allow_none=True)

    def is_active(self, epoch: int | None = None) -> bool:
        """Whether ``epoch`` (default: :attr:`epoch`) lies in the window (unknown: yes)."""
        epoch = self.epoch if epoch is None else epoch
        if epoch is None:
            return True
        return epoch >= self.start_epoch and (self.end_epoch is None or epoch <= self.end_epoch)

    def ratios(self, scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``rho_u = s_u / {mean or sum}_{w != u} s_w`` (the paper's ratio for two modalities)."""
        if self.ratio == "mean":
            return discrepancy_ratios(scores, reduce="mean")
        names = list(scores)
        stacked = torch.stack([torch.as_tensor(scores[n]) for n in names])
        others = stacked.sum() - stacked if len(names) > 2 else stacked.flip(0)
        rho = stacked / others.clamp_min(1e-8)
        return {n: rho[i] for i, n in enumerate(names)}

    def sample(self, ratios: Mapping[str, Tensor | float], batch_size: int, device=None, *,
               widths: Mapping[str, int] | None = None, epoch: int | None = None) -> OPMMasks:
        """Draw this batch's masks (no host synchronisation).

        Draws, in order, from this device's generator: one uniform ``u`` (executed when
        ``u >= 1 - p_exe``), then a ``(batch, 1, N)`` Bernoulli sample of the keep
        probabilities ``1 - q`` in float32 (the released ``Bernoulli(1-q).sample([B, 1])``);
        modality ``i``'s mask is column ``i``. Outside the window nothing is dropped
        (the draws are still made, so the stream does not depend on the window).
        ``widths``: feature widths for the shared rescale (else taken in :meth:`OPMMasks.apply`)."""
        names = list(ratios)
        device = torch.device(device) if device is not None else torch.as_tensor(ratios[names[0]]).device
        gen = self.generators.get(device)
        rho = {}
        for n in names:
            r = torch.as_tensor(ratios[n]).to(device)
            rho[n] = r if r.dtype in (torch.float32, torch.float64) else r.float()
        q = opm_drop_probabilities(rho, q_base=self.q_base, lam=self.lam)
        executed = torch.rand((), generator=gen, device=device) >= 1 - self.p_exe
        if not self.is_active(epoch):
            executed = torch.zeros_like(executed)
        keep_p = torch.stack([1 - q[n].float() for n in names])
        draws = torch.bernoulli(keep_p.expand(batch_size, 1, len(names)), generator=gen)
        keep = {n: (draws[:, 0, i] > 0) | ~executed for i, n in enumerate(names)}
        sample_keep = torch.stack([keep[n] for n in names]).any(dim=0)
        return OPMMasks(keep, q, executed, sample_keep, self.rescale,
                        None if widths is None else {n: int(widths[n]) for n in names})

    def state_dict(self) -> dict:
        return {"generators": self.generators.state_dict()}

    def load_state_dict(self, state: Mapping) -> None:
        self.generators.load_state_dict(state["generators"])

    def __repr__(self) -> str:
        return (f"OPM(q_base={self.q_base}, lam={self.lam}, p_exe={self.p_exe}, rescale={self.rescale!r}, "
                f"ratio={self.ratio!r}, window=[{self.start_epoch}, {self.end_epoch}])")
