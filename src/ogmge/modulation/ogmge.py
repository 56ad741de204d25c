"""On-the-fly Gradient Modulation with Generalization Enhancement (OGM-GE).

Peng, Wei, Deng, Wang, Hu, "Balanced Multimodal Learning via On-the-fly
Gradient Modulation", CVPR 2022 (arXiv 2203.15332). Between
``loss.backward()`` and ``optimizer.step()``, every selected gradient of the
encoder of modality u becomes ``k_u * g`` (OGM, Eq. 10) or
``k_u * g + eps``, ``eps ~ N(0, sigma^2)`` with ``sigma`` the unbiased standard
deviation of the unmodulated ``g`` plus 1e-8 (GE, Eqs. 16-18).

Where it belongs in a training loop::

    loss.backward()
    scaler.unscale_(optimizer)          # if mixed precision
    stats = modulator.step(modality_logits=..., labels=y, epoch=epoch)
    torch.nn.utils.clip_grad_norm_(...) # if clipping
    optimizer.step()                    # or scaler.step(optimizer)

``step`` is ``accumulate`` (add a batch's scores; call it once per
micro-batch, or on held-out batches) followed by ``apply_`` (all-reduce the
scores across ranks when ``torch.distributed`` is initialised, compute the
coefficients once, modulate the gradients in place).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal, get_args

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..validation import check_choice, check_number
from .generators import GeneratorPool
from .scores import (
    COEFFICIENT_RULES,
    RATIO_EPS,
    RATIO_REDUCTIONS,
    CoefficientRule,
    RatioReduce,
    batch_scores,
    discrepancy_ratios,
    modulation_coefficients,
)
from .selection import Selector, check_select, select_parameters

#: ``Normal`` measures only; ``OGM`` scales gradients (Eq. 10); ``OGM_GE`` adds GE noise.
Mode = Literal["Normal", "OGM", "OGM_GE"]
MODES: tuple[Mode, ...] = get_args(Mode)
#: Where GE noise goes: every selected tensor (``all``, the paper's code) or where k < 1.
NoiseTarget = Literal["all", "modulated"]
NOISE_TARGETS: tuple[NoiseTarget, ...] = get_args(NoiseTarget)
#: Added to the standard deviation of the GE noise, as in the paper's code.
SIGMA_EPS = 1e-8
#: Largest number of noise values drawn at once on an accelerator (few, large launches).
NOISE_CHUNK = 1 << 25
#: ... and on a CPU, where a chunk's gradients and noise should stay in the core's cache
#: between the draw and the update (2 x 4 MiB of float32). A tensor larger than the chunk
#: is drawn alone.
NOISE_CHUNK_CPU = 1 << 20


@dataclass(frozen=True)
class ModulationStats:
    """What one ``apply_``/``step`` computed, keyed by modality name.

    ``scores``, ``ratios`` and ``coefficients`` are 0-d tensors on the
    device of the logits (reading them forces no host sync until you ask).
    ``coefficients`` are Eq. 10's values; the gradients were scaled by them
    only if the step ran (``ran``) and every selected gradient was finite
    (``finite``). ``reason`` says, when known on the host, why it did not run.

    >>> import torch
    >>> one = {"audio": torch.tensor(1.0), "visual": torch.tensor(1.0)}
    >>> stats = ModulationStats(one, one, one, ran=False, reason="outside window")
    >>> stats.modulated, stats.skip_reason
    (False, 'outside window')
    >>> stats.to_floats()["coeff/audio"]
    1.0
    """

    scores: dict[str, Tensor]
    ratios: dict[str, Tensor]
    coefficients: dict[str, Tensor]
    ran: bool
    reason: str | None = None
    finite: Tensor | None = field(default=None)
    #: 0-d bool: every score was finite (the step is a no-op otherwise, decided on the device).
    scores_finite: Tensor | None = field(default=None)

    @property
    def modulated(self) -> bool:
        """Whether the gradients were changed (synchronises with the device)."""
        return self.ran and (self.finite is None or bool(self.finite))

    @property
    def skip_reason(self) -> str | None:
        if self.reason is not None:
            return self.reason
        if self.ran and self.scores_finite is not None and not bool(self.scores_finite):
            return "non-finite scores"
        if self.ran and self.finite is not None and not bool(self.finite):
            return "non-finite gradients"
        return None

    def to_floats(self) -> dict[str, float | bool | str | None]:
        """Plain Python values for logging: ``score/<m>``, ``ratio/<m>``, ``coeff/<m>``."""
        out: dict[str, float | bool | str | None] = {}
        for key, values in (("score", self.scores), ("ratio", self.ratios), ("coeff", self.coefficients)):
            for name, value in values.items():
                out[f"{key}/{name}"] = float(value)
        out["modulated"] = self.modulated
        out["skip_reason"] = self.skip_reason
        return out


class OGMGE:
    """OGM / OGM-GE gradient modulation for any model with named encoders.

    Parameters
    ----------
    encoders : Mapping[str, nn.Module | Iterable[Tensor]]
        ``{modality: module or iterable of parameters}``, two or more. Every
        other parameter is keyword-only.
    mode : {"Normal", "OGM", "OGM_GE"}
        ``"Normal"`` measures only; ``"OGM"`` scales gradients; ``"OGM_GE"`` adds GE noise.
    alpha : float
        Modulation strength of Eq. 10 (> 0). Paper: 0.8 CREMA-D, 0.1 VGGSound.
    start_epoch, end_epoch : int, int or None
        Inclusive, 0-based window of epochs in which to modulate (paper 0 and
        50); ``end_epoch=None`` means no end.
    select : {"auto", "conv", "weights", "all"}, callable or dict
        ``"conv"`` (rank >= 3, the paper's choice), ``"weights"`` (rank >= 2),
        ``"all"``, ``"auto"`` (default: ``"conv"`` for an encoder with conv
        kernels, ``"weights"`` for one without), a callable ``(name, param) -> bool``,
        or a dict of these per modality.
    coefficient : {"paper", "continuous"}
        Eq. 10 with its jump at rho = 1, or ``1 - tanh(alpha (rho - 1))``.
    noise : {"all", "modulated"}
        GE noise on every selected tensor of every encoder (the paper's code) or
        only on encoders with k < 1.
    ratio_reduce : {"mean", "min", "max"}
        How the other modalities' scores are combined for N > 2; any gives the
        paper's ratio for N = 2.
    sync_scores : bool
        All-reduce accumulated scores over ranks when ``torch.distributed`` is
        initialised, so every rank uses the same k.
    process_group : optional
        The group for that all-reduce (default: the world).
    generator : torch.Generator, optional
        The noise generator (on the gradients' device); by default the
        modulator owns one per device seeded with ``seed``, so every rank draws
        the same noise. The noise is drawn chunk by chunk (:func:`noise_chunk`:
        cache-sized on a CPU, large on an accelerator), in the order of the
        modalities and their selected tensors.
    seed : int
        Seed of the modulator's own generators.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> encoders = {"audio": nn.Linear(4, 3), "visual": nn.Linear(5, 3)}
    >>> modulator = OGMGE(encoders, mode="OGM", alpha=0.8)
    >>> for enc in encoders.values():
    ...     enc.weight.grad = torch.ones_like(enc.weight)
    >>> logits = {"audio": torch.tensor([[4.0, 0.0]]), "visual": torch.tensor([[0.0, 0.0]])}
    >>> stats = modulator.step(modality_logits=logits, labels=torch.tensor([0]), epoch=0)
    >>> round(float(stats.coefficients["audio"]), 4), float(stats.coefficients["visual"])
    (0.0828, 1.0)
    >>> round(float(encoders["audio"].weight.grad[0, 0]), 4)  # the dominant encoder's gradient, scaled
    0.0828
    """

    def __init__(
        self,
        encoders: Mapping[str, nn.Module | Iterable[Tensor]],
        *,
        mode: Mode = "OGM_GE",
        alpha: float = 0.8,
        start_epoch: int = 0,
        end_epoch: int | None = 50,
        select: Selector | Mapping[str, Selector] = "auto",
        coefficient: CoefficientRule = "paper",
        noise: NoiseTarget = "all",
        ratio_reduce: RatioReduce = "mean",
        sync_scores: bool = True,
        process_group=None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(encoders, nn.ModuleDict):
            encoders = dict(encoders.items())
        if not isinstance(encoders, Mapping):
            raise TypeError(f"encoders must be a dict of modality name -> module, got {type(encoders).__name__}")
        if len(encoders) < 2:
            raise ValueError(f"encoders must name at least two modalities, got {list(encoders)}")
        check_choice("mode", mode, MODES)
        check_choice("coefficient", coefficient, COEFFICIENT_RULES)
        check_choice("noise", noise, NOISE_TARGETS)
        check_choice("ratio_reduce", ratio_reduce, RATIO_REDUCTIONS)
        if not isinstance(select, Mapping):
            check_select("select", select)
        self.mode = mode
        self.alpha = check_number("alpha", alpha, lo=0, lo_open=True)
        self.start_epoch = check_number("start_epoch", start_epoch, integer=True, lo=0)
        self.end_epoch = check_number("end_epoch", end_epoch, integer=True, lo=0, allow_none=True)
        if self.end_epoch is not None and self.end_epoch < self.start_epoch:
            raise ValueError(
                f"end_epoch ({end_epoch}) must not be before start_epoch ({start_epoch})"
            )
        self.coefficient = coefficient
        self.noise = noise
        self.ratio_reduce = ratio_reduce
        self.sync_scores = sync_scores
        self.process_group = process_group
        self.generators = GeneratorPool(seed, generator)
        self.params = select_parameters(encoders, select)
        self.modalities = tuple(self.params)
        self._scores: dict[str, Tensor] | None = None
        self._buffers: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    # ------------------------------------------------------------------ scores
    def accumulate(
        self,
        modality_logits: Mapping[str, Tensor],
        labels: Tensor,
        *,
        sample_weight: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Add one batch's scores (Eq. 8) to the running sums; return the batch's."""
        self._check_names(modality_logits, "modality_logits")
        scores = batch_scores(modality_logits, labels, sample_weight=sample_weight)
        self.accumulate_scores(scores)
        return scores

    def accumulate_scores(self, scores: Mapping[str, Tensor]) -> None:
        """Add precomputed score sums (e.g. from held-out batches)."""
        self._check_names(scores, "scores")
        if self._scores is None:
            self._scores = {n: torch.as_tensor(scores[n]).detach().clone() for n in self.modalities}
        else:
            for n in self.modalities:
                self._scores[n] = self._scores[n] + torch.as_tensor(scores[n]).detach()

    def reset(self) -> None:
        """Forget the accumulated scores."""
        self._scores = None

    def is_active(self, epoch: int | None) -> bool:
        """Whether ``epoch`` lies in the inclusive modulation window (None: always)."""
        if epoch is not None:
            check_number("epoch", epoch, integer=True, lo=0)
        if self.mode == "Normal":
            return False
        if epoch is None:
            return True
        if epoch < self.start_epoch:
            return False
        return self.end_epoch is None or epoch <= self.end_epoch

    def coefficients_from_scores(
        self, scores: Mapping[str, Tensor]
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Pure: ``(ratios, coefficients)`` of Eqs. 9-10 for the given scores."""
        ratios = discrepancy_ratios(scores, reduce=self.ratio_reduce, eps=RATIO_EPS)
        return ratios, modulation_coefficients(ratios, alpha=self.alpha, rule=self.coefficient)

    # -------------------------------------------------------------- modulation
    def apply_(self, *, epoch: int | None = None) -> ModulationStats:
        """Modulate the gradients in place once, with the accumulated scores.

        Call after ``backward()`` (and ``GradScaler.unscale_``), before clipping
        and ``optimizer.step()``. Resets the accumulated scores.
        """
        if self._scores is None:
            raise RuntimeError("no scores accumulated: call accumulate() (or step()) first")
        scores = self._scores
        self._scores = None
        scores = self._all_reduce(scores)
        ratios, coeffs = self.coefficients_from_scores(scores)
        if self.mode == "Normal":
            return ModulationStats(scores, ratios, coeffs, ran=False, reason="mode Normal")
        if not self.is_active(epoch):
            return ModulationStats(scores, ratios, coeffs, ran=False, reason="outside window")
        # Non-finite scores (e.g. NaN logits) make the step a no-op, like non-finite
        # gradients: the flag joins the gradients' on the device, no host sync.
        scores_ok = _all_finite(list(scores.values()))
        finite = self._modulate_(coeffs, scores_ok=scores_ok)
        if finite is None:
            return ModulationStats(scores, ratios, coeffs, ran=False, reason="no gradients")
        return ModulationStats(scores, ratios, coeffs, ran=True, finite=finite, scores_finite=scores_ok)

    def step(
        self,
        *,
        modality_logits: Mapping[str, Tensor],
        labels: Tensor,
        epoch: int | None = None,
        sample_weight: Tensor | None = None,
    ) -> ModulationStats:
        """``accumulate`` this batch, then ``apply_``: the usual one-call form."""
        self.accumulate(modality_logits, labels, sample_weight=sample_weight)
        return self.apply_(epoch=epoch)

    def _modulate_(self, coeffs: Mapping[str, Tensor], *, scores_ok: Tensor | None = None) -> Tensor | None:
        grads: dict[str, list[Tensor]] = {
            name: [p.grad for _, p in self.params[name] if p.grad is not None] for name in self.modalities
        }
        flat = [g for name in self.modalities for g in grads[name]]
        if not flat:
            return None
        add_noise = self.mode == "OGM_GE"
        sigmas: dict[str, list[Tensor]] = {}
        if add_noise:
            # sigma of the *unmodulated* gradient, before scaling; a tensor's std
            # is finite iff all its entries are, so it doubles as the check.
            sigmas = {name: [_std(g) for g in grads[name]] for name in self.modalities}
            finite = _all_finite([s for name in self.modalities for s in sigmas[name]])
        else:
            # a tensor's norm is finite iff its entries are (barring overflow)
            finite = _all_finite(
                [n for gs in _group_by_device(flat).values() for n in torch._foreach_norm(gs)]
            )
        if scores_ok is not None:
            finite = finite & scores_ok.to(finite.device)
        for name in self.modalities:
            gs = grads[name]
            if not gs:
                continue
            device = gs[0].device
            ok = finite.to(device)
            k = torch.where(ok, coeffs[name].to(device), torch.ones_like(coeffs[name], device=device))
            if not add_noise:
                for chunk in _chunks(gs, math.inf):
                    torch._foreach_mul_(chunk, k.to(chunk[0].device))
                continue
            gate = ok if self.noise == "all" else ok & (coeffs[name].to(device) < 1)
            scales = [torch.where(gate.to(g.device), sigma + SIGMA_EPS, torch.zeros_like(sigma)).to(g.dtype)
                      for g, sigma in zip(gs, sigmas[name])]
            self._scale_and_add_noise_(gs, k, scales)
        return finite

    def _scale_and_add_noise_(self, grads: list[Tensor], k: Tensor, scales: list[Tensor]) -> None:
        """``g <- k * g + scale * z``, ``z ~ N(0, 1)``, chunk by chunk (consecutive gradients of
        one device and dtype, at most :func:`noise_chunk` elements or one larger tensor): scale
        the chunk, draw its noise into a reused buffer, multi-tensor ``addcmul``. On a CPU the
        chunk stays in cache from the scaling to the update."""
        scale_of = {id(g): s for g, s in zip(grads, scales)}
        # k == 1 (the modality that does not dominate) leaves g as it is: skip that pass when
        # k can be read without a device synchronisation (a CPU tensor).
        scale = k.device.type != "cpu" or bool(k != 1)
        for chunk in _chunks(grads, noise_chunk(grads[0].device)):
            first = chunk[0]
            if scale:
                torch._foreach_mul_(chunk, k.to(first.device))
            sizes = [g.numel() for g in chunk]
            z = self._noise_buffer(first.device, first.dtype, sum(sizes))
            torch.randn(z.shape, generator=self.generators.get(first.device), out=z)
            views = [v.view(g.shape) for v, g in zip(z.split(sizes), chunk)]
            torch._foreach_addcmul_(chunk, views, [scale_of[id(g)] for g in chunk])

    def _noise_buffer(self, device: torch.device, dtype: torch.dtype, size: int) -> Tensor:
        """``size`` elements of a scratch buffer kept between steps (no allocation, and on a
        CPU no page faults, per step); not part of the state."""
        key = (device, dtype)
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < size:
            buf = self._buffers[key] = torch.empty(size, device=device, dtype=dtype)
        return buf[:size]

    def _all_reduce(self, scores: dict[str, Tensor]) -> dict[str, Tensor]:
        if not (self.sync_scores and dist.is_available() and dist.is_initialized()):
            return scores
        stacked = torch.stack([scores[n] for n in self.modalities])
        if dist.get_backend(self.process_group) == "nccl" and stacked.device.type != "cuda":
            stacked = stacked.cuda()
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM, group=self.process_group)
        return {n: stacked[i] for i, n in enumerate(self.modalities)}

    def _check_names(self, given: Mapping[str, object], field_name: str) -> None:
        if not isinstance(given, Mapping):
            raise TypeError(f"{field_name} must be a dict keyed by modality name, got {type(given).__name__}")
        extra = sorted(set(given) - set(self.modalities))
        missing = sorted(set(self.modalities) - set(given))
        if extra:
            raise ValueError(f"{field_name} has modalities without an encoder: {extra}")
        if missing:
            raise ValueError(f"{field_name} lacks modalities that have an encoder: {missing}")

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        """Noise-generator states (so a resumed run draws the same noise) and settings."""
        return {
            "generators": self.generators.state_dict(),
            "settings": {
                "mode": self.mode,
                "alpha": self.alpha,
                "start_epoch": self.start_epoch,
                "end_epoch": self.end_epoch,
                "coefficient": self.coefficient,
                "noise": self.noise,
                "ratio_reduce": self.ratio_reduce,
                "modalities": list(self.modalities),
            },
        }

    def load_state_dict(self, state: Mapping) -> None:
        """Restore the noise streams saved by ``state_dict``."""
        if "generators" not in state:
            raise ValueError("not an OGMGE state_dict: missing 'generators'")
        saved = state.get("settings", {}).get("modalities")
        if saved is not None and list(saved) != list(self.modalities):
            raise ValueError(f"state_dict is for modalities {saved}, this modulator has {list(self.modalities)}")
        self.generators.load_state_dict(state["generators"])

    def __repr__(self) -> str:
        sizes = {n: sum(p.numel() for _, p in ps) for n, ps in self.params.items()}
        return (
            f"OGMGE(mode={self.mode!r}, alpha={self.alpha}, window=[{self.start_epoch}, {self.end_epoch}], "
            f"coefficient={self.coefficient!r}, noise={self.noise!r}, selected={sizes})"
        )


def _std(g: Tensor) -> Tensor:
    """Unbiased standard deviation (float32 or wider); 0 for a one-element tensor
    (NaN if that element is not finite, so the finiteness check still sees it)."""
    if g.numel() < 2:
        return g.detach().float().sum() * 0
    return g.float().std() if g.dtype in (torch.float16, torch.bfloat16) else g.std()


def noise_chunk(device: torch.device) -> int:
    """Noise values drawn at once on ``device``: :data:`NOISE_CHUNK_CPU` on a CPU, else
    :data:`NOISE_CHUNK`. The chunks fix how the stream is cut, so the seeded noise of a
    model with more selected values than this per encoder depends on the device type (as
    it does anyway: each device type has its own generator)."""
    return NOISE_CHUNK_CPU if torch.device(device).type == "cpu" else NOISE_CHUNK


def _chunks(tensors: list[Tensor], limit: float) -> list[list[Tensor]]:
    """Consecutive runs of same-device, same-dtype tensors of at most ``limit`` elements
    in all (a larger tensor alone)."""
    out: list[list[Tensor]] = []
    size = 0
    for t in tensors:
        last = out[-1] if out else None
        if last is None or size + t.numel() > limit or (t.device, t.dtype) != (last[0].device, last[0].dtype):
            out.append([t])
            size = t.numel()
        else:
            last.append(t)
            size += t.numel()
    return out


def _group_by_device(tensors: list[Tensor]) -> dict[torch.device, list[Tensor]]:
    groups: dict[torch.device, list[Tensor]] = {}
    for t in tensors:
        groups.setdefault(t.device, []).append(t)
    return groups


def _all_finite(values: list[Tensor]) -> Tensor:
    """0-d bool: every value finite; no host synchronisation on a single device."""
    flags = [torch.stack(vs).isfinite().all() for vs in _group_by_device(values).values()]
    finite = flags[0]
    for f in flags[1:]:
        finite = finite & f.to(finite.device)
    return finite
