"""Sample-level and modality-level valuation: re-sampling that trains low-contribution modalities alone.

Wei, Feng, Wang, Hu, "Enhancing Multimodal Cooperation via Sample-level Modality
Valuation", CVPR 2024 (arXiv 2309.06255); released code
GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation at 7ed12b0.

**Valuation.** For a sample ``x`` with label ``y`` and a set ``S`` of modalities, let
``f(S)`` be the fusion head's logits with the features of the modalities outside
``S`` replaced by zeros (the encoders run once, in eval mode; the authors'
``exec_drop``, ``code/models/models.py:74-86``), and take the value function

    v(S) = |S| · 1[argmax f(S) = y],        v(∅) = 0,

so a correct prediction is worth one unit per modality that made it. The
contribution of modality ``u`` is its Shapley value,

    φ_u = Σ_{S ⊆ M∖{u}} |S|! (N − |S| − 1)! / N! · (v(S ∪ {u}) − v(S)),

and ``Σ_u φ_u = v(M) = N·1[fused prediction correct]``. For two modalities this is the
released ``contrib_a = (v_a + v_all − v_v) / 2`` with ``v_a, v_v ∈ {0, 1}`` and
``v_all ∈ {0, 2}`` (``code/sample_level.py:99-122``); the contributions then take
the values −0.5, 0, 0.5, 1, 1.5. It is computed exactly over the ``2^N − 1``
non-empty subsets (fusion-head passes only) in integer arithmetic (``φ_u · N!`` is an
integer), so the thresholds below compare exactly.

**Sample level** (``level: sample``). After ``warmup`` epochs of plain training, before
every epoch, every training sample is valued with the current model; the epoch then
holds every sample once plus, for each sample and each modality ``u``, copies in which
only ``u`` is kept (the other modalities' features zeroed before fusion):

    φ_u < −0.1: 3 copies;   −0.1 ≤ φ_u ≤ 0.4: 2;   0.4 < φ_u < 1: 1;   φ_u ≥ 1: none

(``code/datasets/dataloader.py:154-186``). The released bins are open intervals,
so −0.1 and 0.4 themselves get no copy there; for N ≤ 4 no contribution can equal
them (they are multiples of 1/12), and from N = 5 on we give a boundary value the
larger count.

**Modality level** (``level: modality``). Before every epoch after the warm-up, a
random subset of ``part`` of the training split (at least one sample, drawn without
replacement) is valued; with ``φ̄_u`` the subset's mean contribution and the gap
``g_u = 1 − φ̄_u``, modality ``u`` gets ``⌊|g_u − min_w g_w| / 3 · 2 · α · n⌋`` copies of
training samples drawn uniformly with replacement, in which only ``u`` is kept
(``code/modality_level.py:143-170``, ``code/datasets/dataloader.py:297-316``, its
``linear`` form, the only one the scripts use). For two modalities that is the
released count, all of it for the modality with the larger gap.

**N modalities.** The paper's principle is to enhance, for a sample, the modality
that contributes little by training it without the others; so a copy keeps only its
low-contribution modality and masks all the others (for N = 2, "mask the other
modality", as released). Exact up to 6 modalities (``2^N − 1`` head passes per valued
sample); more are refused.

**Hooks.** ``begin_epoch`` (the valuation pass: ``outputs(features=True)`` gives the
encoders' eval-mode features of the training split, or of the subset; the head passes
run here) returns ``(indices, tags)``: tag 0 for an original sample, ``k + 1`` for a
copy that keeps only modality ``k``; ``transform_features`` receives each batch's tags
and zeroes the features of the masked modalities. The plan is a function of the
weights and of a per-epoch generator seeded from ``(seed, "valuate", epoch)``, so a
run resumed at an epoch boundary re-derives it exactly; the state is the modalities
and the level only.

**Where the released code differs, and what we follow** (docs/methods.md):

- Neither script runs as released: ``AV_KS_Dataset(mode=..., loader=args.loader)``
  (``sample_level.py:260-262``, ``:142-143``; ``modality_level.py:164-170``) passes a
  ``loader`` keyword that the datasets' ``__init__`` does not take
  (``dataloader.py:16``, ``:118``, ``:261``): TypeError at start-up; and the best
  checkpoint's name reads ``args.dynamic`` and ``args.method`` (``sample_level.py:358-359``),
  which the parser never defines.
- The modality-level script values the whole training split every epoch
  (``modality_level.py:90-126``) and only then averages a random part of it
  (l.146-153), so it pays the full valuation the method is meant to save; we value
  only the part. Its part is drawn with replacement (``np.random.choice``, l.147); we
  draw a subset, as the paper describes.
- Valuation also runs during warm-up in the released code (logging only); we skip it.
- The released code draws from numpy's global stream; we draw from the method's own
  generator.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ogmge.seeding import component_seed
from ogmge.validation import check_number

from .base import BalancingMethod, check_modalities
from .registry import Option, Space, register

_SRC = "GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation"
#: Exact Shapley values over 2^N subsets; more modalities are refused.
MAX_MODALITIES = 6
#: Sample level: copies for a contribution below LOW, in [LOW, MID], in (MID, HIGH), at or above HIGH.
LOW, MID, HIGH = -0.1, 0.4, 1.0
COPIES = (3, 2, 1, 0)
#: Modality level: the released linear form's constant (dataloader.py:301).
GAP_SCALE = 2.0 / 3.0
LEVELS = ("sample", "modality")


# ------------------------------------------------------------------------------- pure functions
@torch.no_grad()
def masked_correct(fusion, features: Mapping[str, Tensor], labels: Tensor, modalities: Sequence[str], *,
                   chunk: int = 4096) -> Tensor:
    """``(n, 2^N)`` bool: column ``s`` (bit ``k`` set = modality ``k`` kept, the others' features
    zeroed) holds whether the fusion head's prediction is the label; column 0 (nothing kept) is
    False. The head runs in eval mode (its mode is restored), in ``chunk``-row pieces."""
    names = tuple(modalities)
    n = int(labels.shape[0])
    module = fusion if isinstance(fusion, nn.Module) else None
    param = next(iter(module.parameters()), None) if module is not None else None
    device = param.device if param is not None else features[names[0]].device
    dtype = param.dtype if param is not None and param.is_floating_point() else features[names[0]].dtype
    out = torch.zeros((n, 2 ** len(names)), dtype=torch.bool)
    was_training = module.training if module is not None else False
    if module is not None:
        module.eval()
    try:
        for lo in range(0, n, chunk):
            feats = {u: features[u][lo:lo + chunk].to(device=device, dtype=dtype) for u in names}
            zeros = {u: torch.zeros_like(f) for u, f in feats.items()}
            y = labels[lo:lo + chunk].to(device)
            for s in range(1, 2 ** len(names)):
                masked = {u: feats[u] if s >> k & 1 else zeros[u] for k, u in enumerate(names)}
                out[lo:lo + chunk, s] = (fusion(masked).argmax(1) == y).cpu()
    finally:
        if module is not None:
            module.train(was_training)
    return out


def _shapley_matrix(n_modalities: int) -> Tensor:
    """``(2^N, N)`` int64 ``M`` with ``φ · N! = v @ M`` for any set function ``v`` over bit masks."""
    n = n_modalities
    m = torch.zeros((2 ** n, n), dtype=torch.int64)
    for k in range(n):
        for s in range(2 ** n):
            if s >> k & 1:
                continue
            r = bin(s).count("1")
            w = math.factorial(r) * math.factorial(n - r - 1)
            m[s | 1 << k, k] += w
            m[s, k] -= w
    return m


def modality_values(correct: Tensor) -> Tensor:
    """``(n, N)`` float64 Shapley contributions ``φ_u`` for the value ``v(S) = |S|·correct(S)``,
    from :func:`masked_correct`'s ``(n, 2^N)`` table (``φ_u · N!`` is summed in integers, then
    divided once)."""
    cols = int(correct.shape[1])
    n_mod = cols.bit_length() - 1
    if cols != 2 ** n_mod or n_mod < 1:
        raise ValueError(f"correct must have 2^N columns, got {cols}")
    sizes = torch.tensor([bin(s).count("1") for s in range(cols)], dtype=torch.int64)
    value = correct.to(torch.int64) * sizes
    return (value @ _shapley_matrix(n_mod)).double() / math.factorial(n_mod)


def sample_copies(contributions: Tensor) -> Tensor:
    """``(n, N)`` int64 copies per sample and modality from its contribution: 3 below −0.1,
    2 in [−0.1, 0.4], 1 in (0.4, 1), none from 1 on (the released bins, dataloader.py:154-186)."""
    c = contributions
    out = torch.zeros(c.shape, dtype=torch.int64)
    out[c < LOW] = COPIES[0]
    out[(c >= LOW) & (c <= MID)] = COPIES[1]
    out[(c > MID) & (c < HIGH)] = COPIES[2]
    return out


def resample_plan(copies: Tensor) -> tuple[Tensor, Tensor]:
    """``(indices, tags)`` of an epoch: every sample once (tag 0), then, sample by sample and
    modality by modality, ``copies[i, k]`` copies of sample ``i`` tagged ``k + 1`` (keep only
    modality ``k``)."""
    n, n_mod = copies.shape
    rows = torch.arange(n).repeat_interleave(n_mod)
    mods = torch.arange(1, n_mod + 1).repeat(n)
    reps = copies.reshape(-1)
    indices = torch.cat([torch.arange(n), rows.repeat_interleave(reps)])
    tags = torch.cat([torch.zeros(n, dtype=torch.int64), mods.repeat_interleave(reps)])
    return indices, tags


def modality_copies(mean_contributions: Sequence[float], size: int, alpha: float) -> list[int]:
    """Copies per modality at the modality level: ``⌊|g_u − min_w g_w| / 3 · 2 · α · size⌋`` with
    ``g_u = 1 − φ̄_u`` (for two modalities the released count, dataloader.py:297-307, all of it
    for the modality with the larger gap)."""
    gaps = [1.0 - float(c) for c in mean_contributions]
    best = min(gaps)
    return [int(abs(g - best) / 3 * 2 * alpha * size) for g in gaps]


def keep_only(features: Mapping[str, Tensor], tags: Tensor, modalities: Sequence[str]) -> dict[str, Tensor]:
    """``features`` with, for each sample tagged ``k + 1``, every modality but the ``k``-th
    zeroed (tag 0: unchanged)."""
    out = dict(features)
    for k, u in enumerate(modalities):
        f = features[u]
        keep = (tags == 0) | (tags == k + 1)
        out[u] = torch.where(keep.to(f.device).view(-1, *([1] * (f.dim() - 1))), f, f.new_zeros(()))
    return out


# ------------------------------------------------------------------------------- the method
@register
class Valuate(BalancingMethod):
    """Sample-/modality-level valuation: Shapley contributions, extra copies training weak modalities alone.

    Wei et al., CVPR 2024; see the module docstring. ``modalities`` (2 to 6 names),
    ``fusion`` (the fusion head, ``fusion({name: (B, D)}) -> logits``). Keyword-only:
    ``level`` (``"sample"``/``"modality"``), ``warmup`` (5), ``part`` (0.2), ``alpha``
    (1.0), ``seed`` (the per-epoch draws' stream).
    """

    name = "valuate"
    paper = ("Wei, Feng, Wang, Hu, 'Enhancing Multimodal Cooperation via Sample-level Modality Valuation', "
             "CVPR 2024")
    options = (
        Option("level", str, "sample", "value every sample each epoch (sample) or a random part (modality)",
               choices=LEVELS, source=f"{_SRC} code/sample_level.py:36-38 (--modulation)",
               space=Space.categorical(*LEVELS)),
        Option("warmup", int, 5, "epochs of plain training before the first valuation", low=0,
               source=f"{_SRC} code/sample_level.py:44", space=Space.int_range(0, 10)),
        Option("part", float, 0.2, "modality level: fraction of the training split valued each epoch",
               low=0.0, low_open=True, high=1.0, source=f"{_SRC} code/modality_level.py:51"),
        Option("alpha", float, 1.0, "modality level: scale of the number of copies", low=0.0,
               source=f"{_SRC} code/modality_level.py:52", space=Space.log_uniform(0.25, 4.0)),
    )
    min_modalities = 2
    max_modalities = MAX_MODALITIES
    tie_rank = 10.5
    authors_schedule = {"optimizer": "adam", "lr": 5e-5, "epochs": 60, "batch_size": 64, "lr_decay": "x0.1 every 30 epochs",
                        "source": f"{_SRC} code/sample_level.py:41-58, 287"}
    transforms_features = True

    @classmethod
    def build(cls, ctx, **options) -> Valuate:
        if ctx.fusion is None:
            raise ValueError("valuate needs the fusion head (ctx.fusion) for its masked predictions")
        return cls(ctx.modalities, ctx.fusion, seed=ctx.component_seed("valuate"), **cls.resolve_options(options))

    def __init__(self, modalities, fusion, *, level: str = "sample", warmup: int = 5, part: float = 0.2,
                 alpha: float = 1.0, seed: int = 0) -> None:
        self.modalities = check_modalities("modalities", modalities)
        if len(self.modalities) > MAX_MODALITIES:
            raise ValueError(f"valuate computes exact Shapley values over 2^N modality subsets; it supports at "
                             f"most {MAX_MODALITIES} modalities, got {len(self.modalities)}")
        if not callable(fusion):
            raise TypeError("valuate needs the fusion head (a callable on {modality: features})")
        if level not in LEVELS:
            raise ValueError(f"level must be one of {list(LEVELS)}, got {level!r}")
        self.fusion = fusion
        self.level = level
        self.warmup = int(check_number("warmup", warmup, integer=True, lo=0))
        self.part = check_number("part", part, lo=0.0, lo_open=True, hi=1.0)
        self.alpha = check_number("alpha", alpha, lo=0.0)
        self.seed = int(check_number("seed", seed, integer=True))
        self.last: dict[str, float] = {}

    def generator(self, epoch: int) -> torch.Generator:
        """The draws of epoch ``epoch`` (the modality level's part and copies)."""
        return torch.Generator().manual_seed(component_seed(self.seed, f"epoch{epoch}"))

    def begin_epoch(self, epoch: int, *, train_size: int, outputs=None):
        """After the warm-up: the epoch's ``(indices, tags)`` from a valuation with the current
        weights (None during the warm-up: the usual pass)."""
        self.last = {}
        if epoch < self.warmup:
            return None
        if outputs is None:
            raise ValueError("valuate needs the trainer's outputs() pass over the training split")
        n = int(train_size)
        if self.level == "sample":
            got = outputs(features=True)
            contrib = modality_values(masked_correct(self.fusion, got["features"], got["labels"], self.modalities))
            copies = sample_copies(contrib)
            indices, tags = resample_plan(copies)
            counts = copies.sum(0).tolist()
        else:
            gen = self.generator(epoch)
            size = max(1, int(n * self.part))
            part = torch.randperm(n, generator=gen)[:size]
            got = outputs(index=part, features=True)
            contrib = modality_values(masked_correct(self.fusion, got["features"], got["labels"], self.modalities))
            counts = modality_copies((contrib.sum(0) / size).tolist(), n, self.alpha)
            extra = [torch.randint(n, (c,), generator=gen) for c in counts]
            indices = torch.cat([torch.arange(n), *extra])
            tags = torch.cat([torch.zeros(n, dtype=torch.int64),
                              *[torch.full((c,), k + 1, dtype=torch.int64) for k, c in enumerate(counts)]])
        mean = contrib.mean(0).tolist()
        self.last = {**{f"valuate_contrib/{u}": float(mean[k]) for k, u in enumerate(self.modalities)},
                     **{f"valuate_copies/{u}": float(counts[k]) for k, u in enumerate(self.modalities)},
                     "valuate_epoch_size": float(len(indices))}
        return indices, tags

    def transform_features(self, features, *, labels=None, modality_logits=None, baseline=None, tags=None):
        """A copy keeps only its modality (the others' features zeroed, as the valuation's
        passes); originals, and every sample outside a re-sampled epoch, are unchanged."""
        missing = [u for u in self.modalities if u not in features]
        if missing:
            raise KeyError(f"valuate is missing features for modalities {missing}")
        if tags is None:
            return dict(features)
        return keep_only(features, tags, self.modalities)

    def state_dict(self) -> dict:
        return {"modalities": list(self.modalities), "level": self.level}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", [])) != list(self.modalities):
            raise ValueError(f"valuate state is for modalities {state.get('modalities')}, this one has "
                             f"{list(self.modalities)}")
        if state.get("level", self.level) != self.level:
            raise ValueError(f"valuate state is for level {state.get('level')!r}, this one is {self.level!r}")

    def epoch_row(self) -> dict:
        """``valuate_contrib/<m>`` (mean contribution over the valued samples), ``valuate_copies/<m>``
        (copies keeping only m) and ``valuate_epoch_size``; empty during the warm-up."""
        return dict(self.last)

    def __repr__(self) -> str:
        return (f"Valuate(modalities={list(self.modalities)}, level={self.level!r}, warmup={self.warmup}, "
                f"part={self.part}, alpha={self.alpha})")


__all__ = ["Valuate", "keep_only", "masked_correct", "modality_copies", "modality_values", "resample_plan",
           "sample_copies"]
