"""InfoReg: adaptive unimodal regulation in the prime learning window.

Huang, Wei, Yang, Hu, "Adaptive Unimodal Regulation for Balanced Multimodal
Information Acquisition", CVPR 2025 (released code: GeWu-Lab/InfoReg_CVPR2025,
``main.py`` ``train_epoch``). The loss is the fused cross-entropy plus each
modality's head cross-entropy, ``L = CE(fused) + sum_u CE(head_u)``. On top:

- **information amount**: per modality, the trace of the (empirical, diagonal)
  Fisher information of its encoder over an epoch,
  ``T_u(e) = sum_steps sum_W mean(g_W^2)`` over the encoder's weight matrices and
  kernels ``W`` (the released code: Conv2d/Linear weights, ``main.py:505-512, 575-579``);
- **prime learning window**: at epoch ``e`` the relative change of that trace
  between two ``w``-epoch windows shifted by one epoch,
  ``k_u(e) = (T_u(e-1) - T_u(e-1-w)) / sum_{j=e-w}^{e-1} T_u(j)`` (``main.py:240-243``);
  the window is open while ``k_u > threshold`` (0.05);
- **regulation**: per step, the modality with the largest ``S_u = sum_i p_u(y_i | x_i)``
  over the batch (its head's softmax) is pulled towards its encoder's weights at
  the start of the epoch, ``g += beta * exp(tanh(S_u - S_second)) * (theta - theta_0)``,
  when its window is open (``main.py:460-495``).

Generalised to N modalities: every encoder has its own trace and window; the
pull goes to the argmax of ``S`` (no pull on a tie), its strength from the gap to
the runner-up. The released code uses the audio trace for both modalities and
``beta`` 0.95 for audio, 0.1 for visual; ``as_released=True`` reproduces that
(the first modality's trace gates every modality; 0.95 for the first modality,
0.1 for the others; the trace taken after the pull; the released list
arithmetic for short histories).

**Window length and the budget.** With ``w = 10`` the two windows compare
epochs ``e-1`` and ``e-11``, so the statistic needs 11 epochs of history; the
released code's short lists (``sum(list[-10:]) / 10``) make it
``T(e-1) / sum_j T(j)`` until then, so its window is open in nearly every early
epoch. Here ``w`` scales with the run: ``w = max(1, round(window * epochs / 50))``
(the authors trained 50 epochs, ``main.py:40``), and until ``w + 1`` traces exist
the window is open (the prime learning window is the start of training).

Cost: one extra pass over the encoders' gradients per step (device-side,
no host synchronisation; one read per epoch for the traces) and a copy of the
encoders' weights per epoch. Not for DDP (``S_u`` comes from each rank's own batch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from ogmge.validation import check_number

from .base import BalancingMethod, head_loss_terms, parameter_groups
from .registry import Option, Space, register

#: The released code's file (GeWu-Lab/InfoReg_CVPR2025 at 939b2ed).
_MAIN = "GeWu-Lab/InfoReg_CVPR2025 main.py"
#: The authors' training length, to which the window is scaled (``main.py:40``).
REFERENCE_EPOCHS = 50


def _wide(t: Tensor) -> Tensor:
    """``t`` in float32 or wider."""
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t


def window_statistic(traces: Sequence[float], w: int) -> float:
    """``k = (T[-1] - T[-1-w]) / sum(T[-w:])``; ``inf`` (window open) with fewer than ``w + 1`` traces."""
    if len(traces) < w + 1:
        return math.inf
    recent = sum(traces[-w:])
    return (traces[-1] - traces[-1 - w]) / recent if recent > 0 else 0.0


def released_window_statistic(traces: Sequence[float], w: int = 10) -> float:
    """The released arithmetic (``main.py:237-243``): 1 at epoch 0, then ``(tr1 - tr2) / tr1`` with
    ``tr1 = sum(T[-w:]) / w`` and ``tr2 = sum(T[-w-1:-1]) / w`` on however many traces exist."""
    if not traces:
        return 1.0
    tr1 = sum(traces[-w:]) / w
    tr2 = sum(traces[-w - 1:-1]) / w
    return (tr1 - tr2) / tr1 if tr1 != 0 else 0.0


def fisher_trace_increment(grads: Sequence[Tensor | None]) -> Tensor:
    """``sum_W mean(g_W^2)`` over the weight matrices/kernels (``dim >= 2``) of one step's gradients."""
    terms = [g.float().pow(2).mean() for g in grads if g is not None and g.dim() >= 2]
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


def pull_strengths(scores: Mapping[str, Tensor], base: Mapping[str, float], open_: Mapping[str, bool]
                   ) -> dict[str, Tensor]:
    """``{u: beta_u}``: ``base[u] * exp(tanh(S_u - S_second))`` for the argmax of ``S`` (strictly
    larger than every other) when its window is open, 0 for the others."""
    names = list(scores)
    s = torch.stack([_wide(scores[n]) for n in names])
    top = s.argmax()
    others = s.clone()
    others[top] = -math.inf
    second = others.max()
    gap = s[top] - second
    out = {}
    for i, n in enumerate(names):
        on = (top == i) & (gap > 0) & bool(open_[n])
        out[n] = torch.where(on, base[n] * torch.exp(torch.tanh(gap)), torch.zeros_like(gap))
    return out


@register
class InfoReg(BalancingMethod):
    """InfoReg: the well-learnt encoder pulled to its epoch-start weights in its prime learning window.

    ``encoders``: ``{modality: nn.Module or parameters}``. Keyword-only: ``beta``,
    ``threshold``, ``window``, ``scale_window``, ``epochs`` (the run's length, for the
    scaled window), ``as_released``.
    """

    name = "inforeg"
    paper = ("Huang, Wei, Yang, Hu, 'Adaptive Unimodal Regulation for Balanced Multimodal Information "
             "Acquisition', CVPR 2025")
    options = (
        Option("beta", float, 0.95, "base strength of the proximal pull on the well-learnt encoder", low=0.0,
               source=f"{_MAIN}:468 (audio; visual 0.1 at :476)", space=Space.log_uniform(0.01, 5.0),
               legacy_key="inforeg_beta"),
        Option("threshold", float, 0.05, "the window is open while the trace's relative change exceeds this",
               source=f"{_MAIN}:465", space=Space.uniform(0.0, 0.3), legacy_key="inforeg_threshold"),
        Option("window", int, 10, "epochs per window of the Fisher-trace comparison (before scaling)", low=1,
               source=f"{_MAIN}:240-241", space=Space.int_range(1, 10), legacy_key="inforeg_window"),
        Option("scale_window", bool, True, "scale the window by the run's epochs / the authors' 50",
               source="this project (the released window assumes 50 epochs, main.py:40)",
               legacy_key="inforeg_scale_window"),
        Option("as_released", bool, False, "audio-trace gate, 0.95/0.1 strengths, trace after the pull, as released",
               source=f"{_MAIN}:240-243, 465-495, 505-512", legacy_key="inforeg_as_released"),
    )
    needs_heads = True
    min_modalities = 2
    tie_rank = 9.0
    authors_schedule = {"optimizer": "sgd", "lr": 2e-3, "epochs": 50, "batch_size": 64, "lr_decay": "x0.1 at epoch 30",
                        "weight_decay": 1e-4, "source": f"{_MAIN}:39-45, 714-715"}
    ddp = "refused"
    ddp_reason = "the pull's strength comes from each rank's own batch (sum of p_y), so replicas would drift apart"

    @classmethod
    def build(cls, ctx, **options) -> InfoReg:
        if ctx.encoders is None:
            raise ValueError("method inforeg needs the model's encoders (ctx.encoders)")
        return cls(dict(ctx.encoders), epochs=ctx.epochs, **cls.resolve_options(options))

    def __init__(self, encoders, *, beta: float = 0.95, threshold: float = 0.05, window: int = 10,
                 scale_window: bool = True, epochs: int | None = None, as_released: bool = False) -> None:
        self.params = parameter_groups(encoders)
        self.modalities = tuple(self.params)
        self.beta = check_number("beta", beta, lo=0.0)
        self.threshold = check_number("threshold", threshold)
        self.window = int(check_number("window", window, integer=True, lo=1))
        for key, value in (("scale_window", scale_window), ("as_released", as_released)):
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
        self.scale_window, self.as_released = scale_window, as_released
        self.epochs = None if epochs is None else int(check_number("epochs", epochs, integer=True, lo=1))
        self.traces: dict[str, list[float]] = {n: [] for n in self.modalities}
        self._acc: dict[str, Tensor] = {}
        self._acc_epoch: int | None = None
        self._theta0: dict[str, list[Tensor]] = {}
        self._theta0_epoch: int | None = None
        self.scores: dict[str, Tensor] = {}
        self.strengths: dict[str, Tensor] = {}
        self.k: dict[str, float] = {}

    @property
    def effective_window(self) -> int:
        if self.as_released or not self.scale_window or self.epochs is None:
            return self.window
        return max(1, round(self.window * self.epochs / REFERENCE_EPOCHS))

    def base_strength(self, n: str) -> float:
        if self.as_released:
            return self.beta if n == self.modalities[0] else self.beta * 0.1 / 0.95
        return self.beta

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None):
        """``CE(fused) + sum_u CE(head_u)``; keeps ``S_u = sum_i p_u(y_i)`` (detached) for the pull."""
        terms = head_loss_terms("InfoReg", self.modalities, logits, labels, head_logits, sample_keep)
        assert head_logits is not None  # checked by head_loss_terms
        self.scores = {n: _wide(head_logits[n].detach()).softmax(1).gather(1, labels.view(-1, 1)).sum()
                       for n in self.modalities}
        return sum(terms.values()), terms

    def _window_open(self) -> dict[str, bool]:
        w = self.effective_window
        if self.as_released:
            k = released_window_statistic(self.traces[self.modalities[0]], w)
            self.k = {n: k for n in self.modalities}
        else:
            self.k = {n: window_statistic(self.traces[n], w) for n in self.modalities}
        return {n: self.k[n] > self.threshold for n in self.modalities}

    def _roll_epoch(self, epoch: int) -> None:
        """At an epoch's first step: close the previous epoch's traces; snapshot theta_0."""
        if self._acc_epoch is not None and self._acc_epoch != epoch:
            for n in self.modalities:
                self.traces[n].append(float(self._acc[n]))  # one host read per epoch
            self._acc = {}
        if self._acc_epoch != epoch:
            self._acc_epoch = epoch
            self._acc = {n: torch.zeros((), device=self.params[n][0].device) for n in self.modalities}
        if self._theta0_epoch != epoch:
            self._theta0 = {n: [p.detach().clone() for p in self.params[n]] for n in self.modalities}
            self._theta0_epoch = epoch
            self._open = self._window_open()

    def after_backward(self, *, modality_logits=None, labels=None, epoch=None, sample_weight=None):
        """Accumulate the Fisher traces; add the pull to the chosen encoder's gradients."""
        if epoch is None:
            raise ValueError("InfoReg.after_backward needs the epoch")
        if set(self.scores) != set(self.modalities):
            raise ValueError("InfoReg.after_backward runs after InfoReg.loss (it needs the heads' p_y)")
        self._roll_epoch(int(epoch))
        if not self.as_released:
            self._accumulate()
        base = {n: self.base_strength(n) for n in self.modalities}
        self.strengths = pull_strengths(self.scores, base, self._open)
        with torch.no_grad():
            for n in self.modalities:
                beta = self.strengths[n]
                for p, p0 in zip(self.params[n], self._theta0[n]):
                    if p.grad is None:
                        p.grad = torch.zeros_like(p)
                    p.grad.add_((p.detach() - p0) * beta.to(p.dtype))
        if self.as_released:
            self._accumulate()
        return None

    def _accumulate(self) -> None:
        for n in self.modalities:
            self._acc[n] = self._acc[n] + fisher_trace_increment([p.grad for p in self.params[n]]).to(
                self._acc[n].device)

    def state_dict(self) -> dict:
        """The per-epoch traces and the current epoch's partial sums (theta_0 is the weights at the
        epoch's first step, taken again on resume)."""
        return {"traces": {n: list(v) for n, v in self.traces.items()},
                "acc": {n: float(v) for n, v in self._acc.items()}, "acc_epoch": self._acc_epoch}

    def load_state_dict(self, state: Mapping) -> None:
        unknown = set(state) - {"traces", "acc", "acc_epoch"}
        if unknown:
            raise ValueError(f"InfoReg state has unknown keys {sorted(unknown)}")
        self.traces = {n: [float(x) for x in (state.get("traces") or {}).get(n, [])] for n in self.modalities}
        device = {n: self.params[n][0].device for n in self.modalities}
        self._acc = {n: torch.tensor(float(v), device=device[n]) for n, v in (state.get("acc") or {}).items()}
        self._acc_epoch = state.get("acc_epoch")
        self._theta0_epoch = None

    def trace_row(self) -> dict:
        """``inforeg_beta/<m>`` (the pull's strength this step), ``inforeg_k/<m>`` (window statistic)."""
        row: dict = {f"inforeg_beta/{n}": v.detach() for n, v in self.strengths.items()}
        row.update({f"inforeg_k/{n}": (v if math.isfinite(v) else -1.0) for n, v in self.k.items()})
        return row

    def __repr__(self) -> str:
        return (f"InfoReg(modalities={list(self.modalities)}, beta={self.beta}, threshold={self.threshold}, "
                f"window={self.window}, effective_window={self.effective_window}, as_released={self.as_released})")
