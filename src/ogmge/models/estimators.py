"""Per-modality logits ``o_u`` for any fusion head (DESIGN §2, "Any fusion").

OGM-GE's score (Peng et al., CVPR 2022, Eq. 8) needs per-modality class
logits, which only a linear head gives exactly. Let ``f(S)`` be the head's
logits when the modalities outside ``S`` are replaced by a baseline feature
(zeros, or a running mean of training features kept here as a buffer -- never
the current batch's mean). The estimators, behind one switch ``method``:

- ``"linear"``: the paper's split (sum/concat heads only): ``o_u = W_u phi_u + b/N``
  (``+ b_u`` for sum fusion), the same rule in training and evaluation;
- ``"masking"``: ``o_u = f({u})``;
- ``"shapley"``: ``o_u = phi_u + f(empty)/N`` with ``phi_u`` the Shapley value
  (Shapley 1953) of u for the set function f: exact over all ``2^N`` subsets
  for ``N <= exact_max``, else Monte-Carlo over sampled permutations
  (Castro, Gomez, Tejada 2009) drawn from an explicit ``torch.Generator``.
  Encoders run once; only the head is re-run, on all subsets stacked into
  one batch (split into head calls of at most ``MAX_ROWS`` rows).
  ``sum_u o_u = f(all)`` (efficiency) in both cases;
- ``"probe"``: a linear head per modality trained with its own cross-entropy
  on detached features (the main model's gradients are untouched); its
  parameters live here and are saved with the model.

All estimates are detached (they feed scores, ratios and per-modality
accuracy, not the loss); the probe loss carries gradients to the probes only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import check_choice, check_number, check_positive_int

#: How per-modality logits are estimated from a fusion head.
EstimatorName = Literal["linear", "masking", "shapley", "probe"]
ESTIMATORS: tuple[EstimatorName, ...] = get_args(EstimatorName)
Baseline = Literal["zeros", "mean"]
BASELINES: tuple[Baseline, ...] = get_args(Baseline)
#: Largest number of rows (subsets x batch) the head is re-run on at once.
MAX_ROWS = 1 << 16


@dataclass(frozen=True)
class Estimate:
    """Detached per-modality logits ``{name: (B, C)}`` and, for probes given labels, their loss."""

    modality_logits: dict[str, Tensor]
    probe_loss: Tensor | None = None


def shapley_weights(n: int, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """Matrix ``(n, 2^n)``: ``phi_u = sum_s W[u, s] f(s)``, subsets as bit masks (bit u = u present).

    ``W[u, s] = |s-u|! (n-|s-u|-1)! / n!`` times +1 if u is in s, -1 if not.
    """
    sizes = torch.tensor([bin(s).count("1") for s in range(1 << n)])
    weight = torch.tensor([math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n) for k in range(n)] + [0.0],
                          dtype=torch.float64)
    has = (torch.arange(1 << n).unsqueeze(0) >> torch.arange(n).unsqueeze(1)) & 1  # (n, 2^n)
    w = torch.where(has.bool(), weight[(sizes - 1).clamp_min(0)], -weight[sizes.clamp_max(n - 1)])
    # u absent with |s| = n is impossible; u present with |s| = 0 likewise.
    return w.to(dtype)


class LogitEstimator(nn.Module):
    """Per-modality logit estimator (see the module docstring).

    Keyword-only: ``baseline`` ("zeros" or "mean"), ``momentum`` of the running
    mean (the first training batch initialises it after being estimated with
    zeros), ``exact_max`` (largest N for exact Shapley), ``permutations``
    (sampled Shapley), ``seed`` or ``generator`` (CPU) for the permutations.
    Call :meth:`bind` once with the fusion head (the classifier does).
    """

    def __init__(
        self,
        method: EstimatorName = "shapley",
        *,
        baseline: Baseline = "zeros",
        momentum: float = 0.1,
        exact_max: int = 6,
        permutations: int = 256,
        seed: int = 0,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_choice("estimator", method, ESTIMATORS)
        check_choice("baseline", baseline, BASELINES)
        check_number("momentum", momentum, lo=0, hi=1, lo_open=True)
        check_number("exact_max", exact_max, integer=True, lo=1, hi=16, unit=" (2^N head evaluations)")
        check_positive_int("permutations", permutations)
        if generator is not None and (not isinstance(generator, torch.Generator) or generator.device.type != "cpu"):
            raise ValueError(f"generator must be a CPU torch.Generator, got {generator!r}")
        self.method = method
        self.baseline = baseline
        self.momentum = float(momentum)
        self.exact_max = exact_max
        self.permutations = permutations
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(seed)
        self.generator = generator
        self.modalities: tuple[str, ...] = ()
        self.probes: nn.ModuleDict | None = None
        self.means = nn.Module()  # buffers mean_<name> when baseline == "mean"
        self._bound = False
        # Constant subset masks / exact Shapley weights, built once per device (and dtype)
        # instead of on the host and copied over for every batch.
        self._constants: dict[tuple, Tensor] = {}

    # ------------------------------------------------------------------ setup
    def bind(self, fusion: nn.Module) -> LogitEstimator:
        """Create the state that depends on the head: probe heads, running-mean buffers."""
        in_dims = getattr(fusion, "in_dims", None)
        num_classes = getattr(fusion, "num_classes", None)
        if not isinstance(in_dims, Mapping) or not isinstance(num_classes, int):
            raise TypeError(
                f"fusion {type(fusion).__name__} must expose in_dims ({{name: size}}) and num_classes (int)"
            )
        if self._bound:
            if tuple(in_dims) != self.modalities:
                raise ValueError(f"estimator is bound to modalities {list(self.modalities)}, got {list(in_dims)}")
            return self
        if self.method == "linear" and not getattr(fusion, "supports_linear_split", False):
            raise ValueError(
                f"estimator='linear' needs a sum or concat head, got {type(fusion).__name__}; "
                "use 'masking', 'shapley' or 'probe'"
            )
        self.modalities = tuple(in_dims)
        if self.method == "shapley" and len(self.modalities) > 62:
            raise ValueError(f"estimator='shapley' supports at most 62 modalities, got {len(self.modalities)}")
        if self.method == "probe":
            self.probes = nn.ModuleDict({n: nn.Linear(d, num_classes) for n, d in in_dims.items()})
        if self.baseline == "mean":
            for n, d in in_dims.items():
                self.means.register_buffer(f"mean_{n}", torch.zeros(d))
            self.means.register_buffer("batches_tracked", torch.zeros((), dtype=torch.long))
        self._bound = True
        return self

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state) -> None:
        if isinstance(state, Mapping) and "generator" in state:
            self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).cpu())

    # --------------------------------------------------------------- baselines
    def baseline_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The feature ``(D_u,)`` that stands in for each absent modality."""
        if self.baseline == "zeros":
            return {n: features[n].new_zeros(features[n].shape[1:]) for n in self.modalities}
        return {n: getattr(self.means, f"mean_{n}").to(features[n].dtype) for n in self.modalities}

    @torch.no_grad()
    def update_baseline_(self, features: Mapping[str, Tensor]) -> None:
        """Fold this training batch into the running means (after it was estimated)."""
        if self.baseline != "mean":
            return
        tracked = cast(Tensor, self.means.batches_tracked)
        first = tracked == 0
        for n in self.modalities:
            buf = getattr(self.means, f"mean_{n}")
            batch_mean = features[n].detach().float().mean(dim=0).to(buf.dtype)
            buf.copy_(torch.where(first, batch_mean, torch.lerp(buf, batch_mean, self.momentum)))
        tracked += 1  # in place, on the buffer

    # ---------------------------------------------------------------- subsets
    def subset_logits(self, fusion: nn.Module, features: Mapping[str, Tensor], present: Tensor) -> Tensor:
        """``f(S)`` for every row of ``present`` ``(S, N)`` bool: logits ``(S, B, C)``."""
        base = self.baseline_features(features)
        batch = features[self.modalities[0]].shape[0]
        step = max(1, MAX_ROWS // max(batch, 1))
        outs = []
        for lo in range(0, present.shape[0], step):
            chunk = present[lo : lo + step].to(features[self.modalities[0]].device)
            s = chunk.shape[0]
            mixed = {}
            for i, n in enumerate(self.modalities):
                f = features[n]
                keep = chunk[:, i].view(s, *([1] * f.dim()))
                mixed[n] = torch.where(keep, f.unsqueeze(0), base[n].expand_as(f).unsqueeze(0)).reshape(s * batch, *f.shape[1:])
            outs.append(fusion(mixed).reshape(s, batch, -1))
        return torch.cat(outs)

    def _bits(self, codes: Tensor) -> Tensor:
        n = len(self.modalities)
        return ((codes.unsqueeze(1) >> torch.arange(n)) & 1).bool()

    def _constant(self, key: tuple, make) -> Tensor:
        """``make()`` (a tensor that depends only on the bound modalities), cached under ``key``."""
        value = self._constants.get(key)
        if value is None:
            value = self._constants[key] = make()
        return value

    def _shapley(self, fusion: nn.Module, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        n = len(self.modalities)
        device = features[self.modalities[0]].device
        weights = None  # exact: the cached (N, 2^N) matrix, fetched below for the values' dtype
        if n <= self.exact_max:
            present = self._constant(("subsets", device), lambda: self._bits(torch.arange(1 << n)).to(device))
        else:
            m = self.permutations
            perms = torch.rand(m, n, generator=self.generator).argsort(dim=1)
            steps = torch.zeros(m, n + 1, dtype=torch.long)
            steps[:, 1:] = torch.cumsum(1 << perms, dim=1)
            codes, inverse = torch.unique(steps, return_inverse=True)
            weights = torch.zeros(n, codes.numel(), dtype=torch.float64)
            for j in range(1, n + 1):
                u = perms[:, j - 1]
                weights.index_put_((u, inverse[:, j]), torch.full((m,), 1.0 / m, dtype=torch.float64), accumulate=True)
                weights.index_put_((u, inverse[:, j - 1]), torch.full((m,), -1.0 / m, dtype=torch.float64), accumulate=True)
            present = self._bits(codes)
        values = self.subset_logits(fusion, features, present)  # (S, B, C); row 0 is the empty set
        dtype = values.dtype
        values = values.to(_float32_or_wider(dtype))  # sums of signed terms: keep at least float32
        if weights is None:
            weights = self._constant(("weights", device, values.dtype),
                                     lambda: shapley_weights(n).to(device=device, dtype=values.dtype))
        phi = torch.einsum("us,sbc->ubc", weights.to(device=values.device, dtype=values.dtype), values)
        empty = values[0] / n
        return {name: (phi[i] + empty).to(dtype) for i, name in enumerate(self.modalities)}

    # ----------------------------------------------------------------- forward
    def forward(self, fusion: nn.Module, features: Mapping[str, Tensor], labels: Tensor | None = None) -> Estimate:
        """Estimate ``o_u`` for every modality from the (unmasked) features."""
        if not self._bound:
            self.bind(fusion)
        missing = [n for n in self.modalities if n not in features]
        if missing:
            raise KeyError(f"estimator is missing features for modalities {missing}")
        probe_loss = None
        if self.method == "probe":
            assert self.probes is not None
            logits = {n: self.probes[n](features[n].detach()) for n in self.modalities}
            if labels is not None:
                probe_loss = cast(Tensor, sum(F.cross_entropy(logits[n], labels) for n in self.modalities))
            out = {n: v.detach() for n, v in logits.items()}
        else:
            with torch.no_grad():
                if self.method == "linear":
                    out = cast(Any, fusion).linear_split(features)
                elif self.method == "masking":
                    device = features[self.modalities[0]].device
                    eye = self._constant(("singletons", device),
                                         lambda: torch.eye(len(self.modalities), dtype=torch.bool, device=device))
                    values = self.subset_logits(fusion, features, eye)
                    out = {n: values[i] for i, n in enumerate(self.modalities)}
                else:
                    out = self._shapley(fusion, features)
        if self.training:
            self.update_baseline_(features)
        return Estimate(out, probe_loss)

    def extra_repr(self) -> str:
        return f"method={self.method!r}, baseline={self.baseline!r}, modalities={list(self.modalities)}"


def _float32_or_wider(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype
