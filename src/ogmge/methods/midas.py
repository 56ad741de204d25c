"""MIDAS: misaligned-pair augmentation at the feature level.

Hwang, Choi, Whang, "MIDAS: Misalignment-based Data Augmentation Strategy for
Imbalanced Multimodal Learning", NeurIPS 2025. Read beside the authors'
``Seong-HyeonHwang/MIDAS_NeurIPS2025`` at d25b225
(``models/model_midas_cremad.py`` ``AudioAndVisionModel.forward`` l.81-174,
``configs/default_config.py`` l.236-247).

Each modality u has its own head; ``c_u(i) = softmax(head_u(f_u(i)))_{y_i}`` is
its detached confidence on the true label. During the warm-up epochs the loss
is the mean unimodal cross-entropy only (the fusion head gets no gradient).
Afterwards, with one permutation π of the batch per step, for every modality u
the fusion head is run again on the features with u's taken from sample π(i)
and every other modality's from sample i (for two modalities, the released
``(a_i, v_π(i))`` and ``(a_π(i), v_i)``). The mixed pair's soft target puts

    w_u(i) = c_u(π(i)) / (c_u(π(i)) + mean_{w≠u} c_w(i))

on ``y_π(i)`` (the swapped side) and ``1 - w_u(i)`` on ``y_i`` (the rest); the
weaker side's cross-entropy is multiplied by α, and the sample by the hard-sample
weight ``h_u(i) = 1 + (cos(f_u(i), f_u(π(i))) + 1) / 2`` (detached)::

    L = CE(fused) + mixed_weight * (1/N) * mean_i sum_u h_u(i) * m_u(i) + mean_u CE(head_u)
    m_u(i) = a_rest * (1 - w_u(i)) * CE(z_u(i), y_i) + a_swap * w_u(i) * CE(z_u(i), y_π(i))

with ``z_u = fusion(swapped features)`` and ``(a_rest, a_swap)`` = (1, α) or (α, 1).

*Weaker* and the α rule (released l.124, 133-137, 148-169). Each swap has two
sides, ``{u}`` and the rest; its *first* side is the one holding the first
modality (``modalities[0]``). Per batch, ``r_u = c̄(first side) / c̄(second side)``
(``c̄``: the batch mean of the side's confidences, a side's being the mean of its
modalities' batch means), and the weaker side is the second when ``r_u > 1``,
else the first (ties: the first modality's side, as released). After the loss,
``ρ_u = p̄(first side's label) / p̄(second side's label)`` from the detached
softmax of ``z_u``; with ``r̄``, ``ρ̄`` the means over the swaps,
``α += η`` when (``r̄ > 1`` and ``ρ̄ > r̄``) or (``r̄ ≤ 1`` and ``ρ̄ < r̄``), else
``α -= η``, then ``α = max(1, α)``. For two modalities this is the released rule
exactly (``r = c̄_a / c̄_v``, one per batch, the weaker modality the one with the
lower mean confidence); for N > 2 it is our generalisation (docs/methods.md).

Choices where the paper is silent or the code differs (docs/methods.md):

- α starts at 1 and persists across steps and epochs (released l.78); the loss
  uses α before the step's update (l.135-169); state, checkpointed;
- the permutation is a plain ``randperm`` (fixed points allowed, l.122), drawn
  from the method's own generator (``component_seed(seed, "midas")``), saved;
  no draw during warm-up;
- warm-up: ``warmup`` epochs (epoch index < warmup, l.118); the default (None)
  scales the authors' CREMA-D/Kinetics 10 of 70 epochs to the run:
  ``round(epochs / 7)``;
- samples the model marks as missing (``sample_keep``) are left out of the
  mixed term when either side of a pair is missing;
- we follow the CREMA-D file; the Kinetics file weights the mixed loss by 5
  and caps α at 10 (``model_midas_kinetics.py:162-164``: ``mixed_weight`` and
  ``alpha_max`` give those constants) and compares its ratios in a different
  orientation (l.128-161), which we do not reproduce;
- the extra head passes run under autocast when the features are in reduced
  precision (the trainer computes the loss outside the forward's autocast).

Pure tensor functions: :func:`confidences`, :func:`swap_features`,
:func:`swap_weights`, :func:`hard_weights`, :func:`midas_mixed_loss`,
:func:`update_alpha`, :func:`default_warmup`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ogmge.modulation.generators import GeneratorPool
from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, check_modalities, cross_entropy, require_head_logits
from .registry import Option, Preset, Space, register

_SRC = "Seong-HyeonHwang/MIDAS_NeurIPS2025"
_FWD = f"{_SRC} models/model_midas_cremad.py"
#: The authors' CREMA-D / Kinetics warm-up: 10 of 70 epochs (configs/default_config.py:239, 245; l.21).
AUTHORS_WARMUP, AUTHORS_EPOCHS = 10, 70


def default_warmup(epochs: int | None) -> int:
    """The warm-up length for a run of ``epochs``: the authors' 10 of 70, scaled and rounded
    half up (``epochs`` unknown: 10)."""
    if epochs is None:
        return AUTHORS_WARMUP
    return (int(epochs) * AUTHORS_WARMUP + AUTHORS_EPOCHS // 2) // AUTHORS_EPOCHS


def confidences(head_logits: Mapping[str, Tensor], labels: Tensor) -> dict[str, Tensor]:
    """``{u: (B,)}``: each head's detached softmax probability of the true label (float32 or wider)."""
    out = {}
    for u, lg in head_logits.items():
        lg = lg.detach()
        lg = lg.float() if lg.dtype in (torch.float16, torch.bfloat16) else lg
        out[u] = lg.softmax(-1).gather(1, labels[:, None]).squeeze(1)
    return out


def swap_features(features: Mapping[str, Tensor], modality: str, perm: Tensor) -> dict[str, Tensor]:
    """The features with ``modality``'s rows taken from the permuted samples (the others unchanged)."""
    out = dict(features)
    out[modality] = features[modality][perm]
    return out


def swap_weights(conf: Mapping[str, Tensor], modality: str, perm: Tensor) -> Tensor:
    """``w_u(i) = c_u(π(i)) / (c_u(π(i)) + mean_{w≠u} c_w(i))`` (B,): the soft target's weight on ``y_π(i)``."""
    rest = torch.stack([c for w, c in conf.items() if w != modality]).mean(0)
    mine = conf[modality][perm]
    return mine / (mine + rest)


def hard_weights(feature: Tensor, perm: Tensor) -> Tensor:
    """``1 + (cos(f(i), f(π(i))) + 1) / 2`` (B,), detached."""
    f = feature.detach().flatten(1)
    f = f.float() if f.dtype in (torch.float16, torch.bfloat16) else f
    return 1.0 + (F.cosine_similarity(f, f[perm], dim=1) + 1.0) / 2.0


def _autocast_like(features: Mapping[str, Tensor]):
    """Autocast to the features' reduced precision (the loss runs outside the forward's autocast), else nothing."""
    f = next(iter(features.values()))
    if f.dtype in (torch.float16, torch.bfloat16):
        return torch.autocast(f.device.type, dtype=f.dtype)
    return contextlib.nullcontext()


def _side_means(conf_means: Mapping[str, Tensor], modalities: Sequence[str], u: str) -> tuple[Tensor, Tensor]:
    """``(c̄ first side, c̄ second side)`` for the swap of ``u``; the first side holds ``modalities[0]``."""
    rest = torch.stack([conf_means[w] for w in modalities if w != u]).mean()
    return (conf_means[u], rest) if u == modalities[0] else (rest, conf_means[u])


def midas_mixed_loss(fusion, features: Mapping[str, Tensor], labels: Tensor, conf: Mapping[str, Tensor],
                     perm: Tensor, alpha: float, modalities: Sequence[str], keep: Tensor | None = None
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """``(mixed, r̄, ρ̄)``: ``(1/N) mean_i sum_u h_u(i) m_u(i)`` (with graph), and the batch's
    unimodal and mixed confidence ratios (detached 0-d) that :func:`update_alpha` reads.

    ``keep`` (B,) bool: samples present; the mean runs over pairs with both ``i`` and ``π(i)`` kept."""
    names = tuple(modalities)
    means = {u: conf[u].mean() for u in names}
    y_swap = labels[perm]
    total: Tensor | None = None
    ratios_uni, ratios_mm = [], []
    for u in names:
        with _autocast_like(features):
            z = fusion(swap_features(features, u, perm))
        z = z.float() if z.dtype in (torch.float16, torch.bfloat16) else z
        w = swap_weights(conf, u, perm).to(z.dtype)
        ce_rest = F.cross_entropy(z, labels, reduction="none")
        ce_swap = F.cross_entropy(z, y_swap, reduction="none")
        first, second = _side_means(means, names, u)
        r = first / second
        a_rest, a_swap = 1.0, 1.0
        rest_is_first = u != names[0]
        weak_is_first = not bool(r > 1)
        if weak_is_first == rest_is_first:
            a_rest = alpha
        else:
            a_swap = alpha
        m = a_rest * (1.0 - w) * ce_rest + a_swap * w * ce_swap
        term = hard_weights(features[u], perm).to(z.dtype) * m
        total = term if total is None else total + term
        p = z.detach().softmax(-1)
        p_rest = p.gather(1, labels[:, None]).mean()
        p_swap = p.gather(1, y_swap[:, None]).mean()
        ratios_mm.append(p_rest / p_swap if rest_is_first else p_swap / p_rest)
        ratios_uni.append(r)
    assert total is not None
    if keep is None:
        mixed = total.mean() / len(names)
    else:
        k = (keep & keep[perm]).to(total.dtype)
        mixed = (total * k).sum() / k.sum().clamp_min(1.0) / len(names)
    return mixed, torch.stack(ratios_uni).mean().detach(), torch.stack(ratios_mm).mean().detach()


def update_alpha(alpha: float, uni_ratio: float, mm_ratio: float, eta: float, cap: float | None = None) -> float:
    """The released α step: up by ``eta`` when the mixed pairs lean further towards the stronger
    side than the unimodal confidences do, else down; floored at 1 (and capped at ``cap`` when given)."""
    if uni_ratio > 1:
        up = mm_ratio > uni_ratio
    else:
        up = mm_ratio < uni_ratio
    new = alpha + eta if up else alpha - eta
    if cap is not None:
        new = min(cap, new)
    return max(1.0, new)


@register
class MIDAS(BalancingMethod):
    """MIDAS: fused loss on misaligned feature pairs with confidence-weighted soft targets (after a warm-up).

    Hwang, Choi, Whang, NeurIPS 2025; see the module docstring.

    ``modalities`` (two or more names), ``fusion`` (the fusion head, ``fusion({u: (B, D)})
    -> logits``). Keyword-only: ``warmup`` (epochs of unimodal-only training; None: the
    authors' 10/70 scaled to ``epochs``), ``eta`` (α step, 0.05), ``alpha_max`` (None),
    ``mixed_weight`` (1.0),
    ``epochs`` (the run's length, for the default warm-up), ``seed`` or ``generator``.
    """

    name = "midas"
    paper = ("Hwang, Choi, Whang, 'MIDAS: Misalignment-based Data Augmentation Strategy for Imbalanced "
             "Multimodal Learning', NeurIPS 2025")
    options = (
        Option("warmup", int, None, "epochs trained on the unimodal heads only (null: the authors' 10 of 70 "
               "epochs scaled to the run, round(epochs / 7))", low=0, allow_none=True,
               source=f"{_SRC} configs/default_config.py:237-245 (CREMA-D 10, UCF 0, Food 2, Kinetics 10)",
               space=Space.int_range(0, 10)),
        Option("eta", float, 0.05, "step of the weak-side weight alpha per batch", low=0.0, low_open=True,
               source=f"{_FWD}:105", space=Space.log_uniform(0.01, 0.2)),
        Option("alpha_max", float, None, "upper bound of alpha (null: none)", low=1.0, allow_none=True,
               source=f"{_FWD}:169 (none; the Kinetics file caps at 10, model_midas_kinetics.py:162)"),
        Option("mixed_weight", float, 1.0, "weight of the misaligned-pair loss (itself a mean over the swaps)",
               low=0.0, source=f"{_FWD}:106", space=Space.uniform(0.25, 2.0)),
    )
    needs_heads = True
    needs_features = True
    min_modalities = 2
    tie_rank = 12.0
    dataset_presets = {"kinetics_sounds": Preset(
        {"mixed_weight": 5.0, "alpha_max": 10.0},
        source=f"{_SRC} models/model_midas_kinetics.py:162 (alpha capped at 10), :164 (5 * mixed_loss); "
               "its warm-up, 10 of 70 epochs as on CREMA-D (configs/default_config.py:238-239, 244-245), is the default's ratio")}
    authors_schedule = {"optimizer": "sgd", "lr": 1e-3, "epochs": 70, "batch_size": 64, "weight_decay": 1e-4,
                        "source": f"{_SRC} configs/default_config.py:18-33, {_FWD}:401"}
    ddp = "refused"
    ddp_reason = ("alpha is updated from each rank's own batch statistics, so the ranks' alpha (and losses) "
                  "would drift apart; all-reducing the ratios is not implemented")

    @classmethod
    def build(cls, ctx, **options) -> MIDAS:
        if ctx.fusion is None:
            raise ValueError("MIDAS needs the fusion head (ctx.fusion) to score the misaligned pairs")
        return cls(ctx.modalities, ctx.fusion, epochs=ctx.epochs, seed=ctx.component_seed(cls.name),
                   generator=ctx.generator(cls.name), **cls.resolve_options(options))

    def __init__(self, modalities, fusion: nn.Module, *, warmup: int | None = None, eta: float = 0.05,
                 alpha_max: float | None = None, mixed_weight: float = 1.0, epochs: int | None = None, seed: int = 0,
                 generator: torch.Generator | None = None) -> None:
        self.modalities = check_modalities("modalities", modalities)
        if not callable(fusion):
            raise TypeError("MIDAS needs the fusion head (a callable on {modality: features})")
        self.fusion = fusion
        self.warmup = None if warmup is None else int(check_number("warmup", warmup, integer=True, lo=0))
        self.eta = check_number("eta", eta, lo=0.0, lo_open=True)
        self.alpha_max = None if alpha_max is None else check_number("alpha_max", alpha_max, lo=1.0)
        self.mixed_weight = check_number("mixed_weight", mixed_weight, lo=0.0)
        self.epochs = None if epochs is None else int(check_number("epochs", epochs, integer=True, lo=0))
        self.warmup_epochs = default_warmup(self.epochs) if self.warmup is None else self.warmup
        self.generators = GeneratorPool(seed, generator)
        self.alpha = 1.0
        self.epoch = 0
        self.last: dict[str, float] = {}

    def begin_epoch(self, epoch: int, *, train_size: int, outputs=None) -> None:
        self.epoch = epoch
        return None

    def warming_up(self) -> bool:
        return self.epoch < self.warmup_epochs

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None, features=None):
        """Warm-up: ``mean_u CE(head_u)``; then ``CE(fused) + mixed_weight * mixed + mean_u CE(head_u)``.
        Terms: ``"fused"`` and each modality's head CE."""
        heads = require_head_logits("MIDAS", self.modalities, head_logits)
        uni = {u: cross_entropy(heads[u], labels) for u in self.modalities}
        uni_mean = torch.stack(list(uni.values())).mean()
        fused = cross_entropy(logits, labels, sample_keep)
        if self.warming_up():
            self.last = {"midas_alpha": self.alpha}
            return uni_mean, {FUSED: fused.detach(), **uni}
        if features is None:
            raise ValueError("MIDAS.loss needs features= (the encoders' outputs)")
        first = features[self.modalities[0]]
        perm = torch.randperm(first.shape[0], generator=self.generators.get(first.device), device=first.device)
        conf = confidences(heads, labels)
        keep = None if sample_keep is None else sample_keep.bool()
        mixed, r, rho = midas_mixed_loss(self.fusion, features, labels, conf, perm, self.alpha, self.modalities,
                                         keep)
        total = fused + self.mixed_weight * mixed + uni_mean
        self.last = {"midas_alpha": self.alpha, "midas_uni_ratio": float(r), "midas_mix_ratio": float(rho)}
        self.alpha = update_alpha(self.alpha, float(r), float(rho), self.eta, self.alpha_max)
        return total, {FUSED: fused, **uni, "mixed": mixed}

    def state_dict(self) -> dict:
        return {"alpha": self.alpha, "epoch": self.epoch, "warmup_epochs": self.warmup_epochs,
                "generators": self.generators.state_dict(), "modalities": list(self.modalities)}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", [])) != list(self.modalities):
            raise ValueError(f"MIDAS state is for modalities {state.get('modalities')}, this one has "
                             f"{list(self.modalities)}")
        self.alpha = float(state["alpha"])
        self.epoch = int(state["epoch"])
        self.generators.load_state_dict(state["generators"])

    def trace_row(self) -> dict:
        return dict(self.last)

    def __repr__(self) -> str:
        return (f"MIDAS(modalities={list(self.modalities)}, warmup={self.warmup_epochs}, eta={self.eta}, "
                f"alpha_max={self.alpha_max}, mixed_weight={self.mixed_weight})")


__all__ = ["MIDAS", "confidences", "default_warmup", "hard_weights", "midas_mixed_loss", "swap_features",
           "swap_weights", "update_alpha"]
