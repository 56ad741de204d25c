"""AUG: sustained boosting with adaptive classifier assignment.

Jiang, Huang, Yang, "Rethinking Multimodal Learning from the Perspective of Mitigating
Classification Ability Disproportion", NeurIPS 2025 (oral; arXiv 2502.20120). Released
code: njustkmg/NeurIPS25-AUG at 841d079, ``train_CREMAD.py`` and ``model/AudioVideo.py``
(``AVGBShareClassifier``). Read from the released code; the paper's equations are
described by it as "optimising the classification and the residual errors" and were
not checked line by line here.

**Head** (:class:`AUGHead`, the model's fusion head; ``wrap_fusion`` puts it in place
of the configured one). Each modality u has an embedding ``e_u = relu(A_u phi_u + a_u)``
(width ``hidden``) and a list of boosting layers ``h_{u,k} = relu(B_{u,k} phi_u + b_{u,k})``
(same width, fed by the encoder's features), all read out by **one shared** linear
classifier ``g`` (``fc_out``)::

    z_u = g(e_u) + sum_{k=1..K_u} g(h_{u,k})        (the modality's logits; K_u layers)
    prev_u = z_u - g(h_{u,K_u})                      (the ensemble before the last layer)
    last_u = g(h_{u,K_u})                            (the last layer's logits)

**Step** (``train_step``; the method owns it). One forward pass of the encoders, then
for each modality u in the model's order (audio then video in the release,
train_CREMAD.py:49-75) its own optimizer step on

    L_u = CE(z_u, y)                                                   if K_u = 0
    L_u = CE(z_u, y) + CE(prev_u, y) + CE(last_u, y)
          - beta * mean_i[ p_i * (-log softmax(last_u)_i[y_i]) ]        otherwise,

``p_i = softmax(prev_u)_i[y_i]`` detached, ``beta = residual_weight`` (0.5,
train_CREMAD.py:57, 70; the release writes the last term as a cross-entropy against
the soft target ``y * softmax(prev)``). The last layer's effective weight per sample is
``1 - beta * p_i``: samples the earlier ensemble already gets right count less. Modality
u's branch is re-run after the previous modality's step, so the shared ``g`` it sees
is updated, as in the release.

**Assignment** (``end_epoch``). The training confidences ``s_u = sum_i
softmax(z_u)_i[y_i]`` are summed during the epoch's steps (each at its modality's step,
before its update, as train_CREMAD.py:82-86). At epoch 0 and after every
``check_every``-th epoch (0: ``epochs // 10`` when ``epochs > 10``, else 1;
train_CREMAD.py:205-208, 220) the ratios ``rho_u = s_u / mean_{w != u} s_w`` are
compared with ``lam``; if any leaves ``[lam - tolerance, lam + tolerance]``, the
modality with the lowest ratio gets one new boosting layer (Xavier-normal weights from
the run's ``aug`` generator, zero bias; AudioVideo.py:67-74), added at the start of the
next epoch (``begin_epoch``): the release adds it after the epoch's evaluation (l.214-228),
the same point of training; here the epoch's checkpoint is the model that was validated,
and the last epoch adds no layer that would never be trained. For two modalities
``rho_a = s_a / s_v`` and ``rho_v = 1 / rho_a``: with ``lam = 1`` (the default) this is
the release's rule (l.222-228: visual when ``rho_a > 1.01``, audio when ``rho_a < 0.99``)
except in the sliver ``0.99 <= rho_a < 1/1.01`` (``rho_v > 1.01`` leaves the band), where
audio gets a layer and the release adds none. For ``lam != 1`` the release compares
``s_audio / s_visual`` with ``lam`` (a named direction); here every modality's ratio is
compared with it. Ties of the lowest ratio go to the first modality in the model's order.

**The released code's omission.** The optimizer is built once (train_CREMAD.py:201) and
the layers added later (l.224, 228) are never given to it: they stay at their random
initialisation (their gradients are computed and discarded, l.87-89); only the encoders,
the embeddings and ``g`` learn through them. Here the new layers join the optimizer
(``new_param_groups``: the trainer adds each as a parameter group at the current learning
rate, and checkpoints record the groups so a resumed run rebuilds the layers and the
groups before loading the optimizer's state). ``as_released=True`` reproduces the
release: the layers are added frozen (``requires_grad=False``, so the same function of
the encoders, none of their own learning).

**Prediction** (``AUGHead.forward``): ``sum_u w_u z_u``, the release's fixed merge
``0.4 z_audio + 0.6 z_visual`` (train_CREMAD.py:128, ``--merge_alpha`` 0.4, l.166).
The weights are keyed by name: by default audio 0.4 and visual 0.6 when the modalities are
exactly ``audio`` and ``visual`` (in any order), ``1/N`` each otherwise (other names,
N > 2); ``merge_weights="name=w,..."`` sets them. The per-modality estimates
(``modality_logits``, the OGM-GE monitor's scores and per-modality accuracy) are the
``z_u`` (``linear_split``). Fitted weights instead (the ``stacked`` rule,
:mod:`ogmge.methods.stacked`; weights on validation, the selection score cross-fitted):
``prediction: blend`` pools ``log_softmax`` of the fixed merge and of every ``z_u``,
``prediction: ensemble`` of the ``z_u`` only (the merge is then never computed). The model's
per-modality heads are then views of the head's branches (``wrap_heads``: ``z_u`` is the
shared ``g`` over the embedding plus the boosting layers, nothing trained twice).

Other choices: the release picks its best epoch on the test split (l.214-219); the
trainer selects on validation. The release steps its scheduler before each epoch
(l.212); the trainer after. N >= 2 modalities: each gets its own step per batch.
Cost: one forward pass of the encoders, N backward passes and N optimizer steps per
batch. Under DDP it is refused: it adds parameters during training, so the model would
have to be re-wrapped, and each rank would sum its own confidences.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import cast

import torch
from torch import Tensor, nn

from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, BranchView, branch_views, check_modalities, cross_entropy
from .registry import Option, Space, register

#: The released repository (njustkmg/NeurIPS25-AUG at 841d079).
_REPO = "njustkmg/NeurIPS25-AUG"
#: The released merge weights of the two modalities (``--merge_alpha 0.4`` on audio).
PAPER_MERGE = {"audio": 0.4, "visual": 0.6}


# ------------------------------------------------------------------- pure tensor functions
def boosted_loss(total: Tensor, previous: Tensor | None, last: Tensor | None, labels: Tensor, *,
                 residual_weight: float = 0.5) -> Tensor:
    """AUG's loss of one modality (module docstring): ``CE(total)`` without boosting layers,
    else ``CE(total) + CE(previous) + CE(last) - beta * mean(p * -log softmax(last)[y])``
    with ``p = softmax(previous)[y]`` detached."""
    loss = cross_entropy(total, labels)
    if last is None or previous is None:
        return loss
    prev = previous.float() if previous.dtype in (torch.float16, torch.bfloat16) else previous
    lst = last.float() if last.dtype in (torch.float16, torch.bfloat16) else last
    p = prev.detach().softmax(1).gather(1, labels[:, None]).squeeze(1)
    nll_last = -lst.log_softmax(1).gather(1, labels[:, None]).squeeze(1)
    return (loss + cross_entropy(prev, labels) + cross_entropy(lst, labels)
            - residual_weight * (p * nll_last).mean())


def confidence(logits: Tensor, labels: Tensor) -> Tensor:
    """``sum_i softmax(logits)_i[y_i]`` (0-d, float32 or wider, no graph)."""
    lg = logits.detach()
    lg = lg.float() if lg.dtype in (torch.float16, torch.bfloat16) else lg
    return lg.softmax(1).gather(1, labels[:, None]).sum()


def confidence_ratios(scores: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``rho_u = s_u / mean_{w != u} s_w`` for every modality (two: ``s_a / s_v`` and its inverse)."""
    names = list(scores)
    if len(names) < 2:
        raise ValueError(f"confidence ratios need two or more modalities, got {names}")
    s = torch.stack([torch.as_tensor(scores[n]) for n in names])
    others = (s.sum() - s) / (len(names) - 1)
    return {n: s[i] / others[i] for i, n in enumerate(names)}


def modality_to_boost(ratios: Mapping[str, float | Tensor], lam: float, tolerance: float) -> str | None:
    """The modality that gets a boosting layer: the lowest ratio's, when some ratio lies
    outside ``[lam - tolerance, lam + tolerance]`` (strictly); None otherwise."""
    values = {n: float(v) for n, v in ratios.items()}
    if not all(math.isfinite(v) for v in values.values()):
        return None
    if all(abs(v - lam) <= tolerance for v in values.values()):
        return None
    return min(values, key=lambda n: values[n])  # min keeps the first of equal values


def merge_weights(modalities, text: str = "") -> dict[str, float]:
    """Prediction weights ``{u: w_u}``: ``text`` ``"name=w,..."`` (every modality, ``w >= 0``,
    not all 0); empty: the release's audio 0.4 / visual 0.6 for exactly those two
    modalities, ``1/N`` each otherwise."""
    names = check_modalities("modalities", modalities)
    if not isinstance(text, str):
        raise ValueError(f"merge_weights must be a string 'name=w,...', got {text!r}")
    if not text.strip():
        if set(names) == set(PAPER_MERGE):
            return {n: PAPER_MERGE[n] for n in names}
        return {n: 1.0 / len(names) for n in names}
    out: dict[str, float] = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        key = key.strip()
        try:
            w = float(value)
        except ValueError:
            w = float("nan")
        if not sep or key not in names or key in out or not math.isfinite(w) or w < 0:
            raise ValueError(f"merge_weights must give each of {list(names)} once as 'name=w' with a finite "
                             f"w >= 0, got {text!r}")
        out[key] = w
    if set(out) != set(names) or sum(out.values()) <= 0:
        raise ValueError(f"merge_weights must give each of {list(names)} (not all 0), got {text!r}")
    return {n: out[n] for n in names}


def xavier_normal(fan_out: int, fan_in: int, generator: torch.Generator) -> Tensor:
    """``N(0, 2 / (fan_in + fan_out))`` weights ``(fan_out, fan_in)`` in float32 on the CPU."""
    std = math.sqrt(2.0 / (fan_in + fan_out))
    return torch.randn(fan_out, fan_in, generator=generator) * std


# ------------------------------------------------------------------------------ the head
class AUGHead(nn.Module):
    """AUG's classifier: per-modality embeddings and boosting layers read out by one shared
    linear layer (module docstring). A fusion head: ``forward(features) -> logits`` (the
    weighted merge), ``in_dims``, ``num_classes``, ``linear_split`` (each modality's
    ``z_u``). Its linear layers start Xavier-normal with zero biases, as the release's
    ``weight_init`` (utils/utils.py:81-84; from the global generator, like every module of the
    model). ``hidden``: the width (256, AudioVideo.py:47-57); ``weights``: ``{u: w_u}``
    (default :func:`merge_weights`); ``train_layers``: whether added layers are trainable
    (False: the release). The layer counts are the module's extra state, so loading a
    state dict first grows (or shrinks) the layer lists to the saved counts."""

    default_estimator = "linear"
    supports_linear_split = True
    weights: Tensor

    def __init__(self, in_dims: Mapping[str, int], num_classes: int, *, hidden: int = 256,
                 weights: Mapping[str, float] | None = None, train_layers: bool = True) -> None:
        super().__init__()
        self.in_dims = {n: int(d) for n, d in in_dims.items()}
        self.modalities = check_modalities("in_dims", list(self.in_dims))
        self.num_classes = int(num_classes)
        if isinstance(hidden, bool) or not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be an integer >= 1, got {hidden!r}")
        self.hidden = hidden
        self.train_layers = bool(train_layers)
        w = merge_weights(self.modalities) if weights is None else dict(weights)
        if set(w) != set(self.modalities):
            raise ValueError(f"weights must name {list(self.modalities)}, got {sorted(w)}")
        self.register_buffer("weights", torch.tensor([float(w[n]) for n in self.modalities]))
        self.embed = nn.ModuleDict({n: nn.Sequential(nn.Linear(d, hidden), nn.ReLU())
                                    for n, d in self.in_dims.items()})
        self.fc_out = nn.Linear(hidden, self.num_classes)
        self.boost = nn.ModuleDict({n: nn.ModuleList() for n in self.modalities})
        for m in (*self.embed.modules(), self.fc_out):  # the release's weight_init (utils/utils.py:81-84)
            if isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def stack(self, name: str) -> nn.ModuleList:
        """Modality ``name``'s boosting layers, in the order they were added."""
        return cast(nn.ModuleList, self.boost[name])

    def layers(self) -> dict[str, int]:
        """Boosting layers per modality."""
        return {n: len(self.stack(n)) for n in self.modalities}

    def branch(self, name: str, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """``(z_u, prev_u, last_u)`` of modality ``name`` on its features ``x`` (None, None
        without boosting layers)."""
        total = cast(Tensor, self.fc_out(self.embed[name](x)))
        previous = last = None
        for layer in self.stack(name):
            last = self.fc_out(torch.relu(layer(x)))
            previous = total
            total = total + last
        return total, previous, last

    def modality_logits(self, features: Mapping[str, Tensor], name: str) -> Tensor:
        """``z_u`` of modality ``name`` from ``features[name]`` (what its head view returns)."""
        return self.branch(name, features[name])[0]

    def linear_split(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Each modality's own logits ``z_u`` (unweighted)."""
        missing = [n for n in self.modalities if n not in features]
        if missing:
            raise KeyError(f"AUG head is missing features for modalities {missing}")
        return {n: self.branch(n, features[n])[0] for n in self.modalities}

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        parts = self.linear_split(features)
        out = parts[self.modalities[0]] * self.weights[0].to(parts[self.modalities[0]].dtype)
        for i, n in enumerate(self.modalities[1:], start=1):
            out = out + parts[n] * self.weights[i].to(parts[n].dtype)
        return out

    def _new_layer(self, name: str) -> nn.Linear:
        ref = self.fc_out.weight
        layer = nn.Linear(self.in_dims[name], self.hidden, device=ref.device, dtype=ref.dtype)
        layer.requires_grad_(self.train_layers)
        self.stack(name).append(layer)
        return layer

    def add_layer(self, name: str, generator: torch.Generator) -> list[nn.Parameter]:
        """Append a boosting layer to modality ``name`` (Xavier-normal weight drawn on the CPU
        from ``generator``, zero bias); returns its parameters."""
        if name not in self.boost:
            raise KeyError(f"AUG head has no modality {name!r} (its modalities: {list(self.modalities)})")
        layer = self._new_layer(name)
        with torch.no_grad():
            layer.weight.copy_(xavier_normal(self.hidden, self.in_dims[name], generator))
            layer.bias.zero_()
        return list(layer.parameters())

    def get_extra_state(self) -> dict:
        return {"layers": self.layers()}

    def set_extra_state(self, state) -> None:
        # called before the children are loaded: the layer lists take the saved lengths first
        counts = state.get("layers", {}) if isinstance(state, Mapping) else {}
        for name, n in counts.items():
            if name not in self.boost:
                raise ValueError(f"AUG head state has layers for {name!r}, the head's modalities are "
                                 f"{list(self.modalities)}")
            while len(self.stack(name)) < int(n):
                self._new_layer(name)
            while len(self.stack(name)) > int(n):
                del self.stack(name)[-1]

    def extra_repr(self) -> str:
        w = {n: round(float(v), 6) for n, v in zip(self.modalities, self.weights)}
        return f"hidden={self.hidden}, weights={w}, layers={self.layers()}, train_layers={self.train_layers}"


# ---------------------------------------------------------------------------- the method
@register
class AUG(BalancingMethod):
    """AUG: alternating unimodal steps through a shared head; boosting layers for the weaker modality.

    ``head``: the model's :class:`AUGHead`. Keyword-only: ``lam`` and ``tolerance`` (the
    band of the confidence ratios), ``residual_weight`` (beta of the residual term),
    ``check_every`` (epochs between checks; 0: ``epochs // 10`` when ``epochs > 10``,
    else 1), ``epochs`` (the run's length, for ``check_every=0``), ``as_released``
    (added layers frozen), ``seed`` (of the layers' initialisation), ``merge_weights``
    (recorded; the head holds the weights).
    """

    name = "aug"
    paper = ("Jiang, Huang, Yang, 'Rethinking Multimodal Learning from the Perspective of Mitigating "
             "Classification Ability Disproportion', NeurIPS 2025")
    options = (
        Option("lam", float, 1.0, "centre of the band the confidence ratios must stay in", low=0.0, low_open=True,
               source=f"{_REPO} train_CREMAD.py:165"),
        Option("tolerance", float, 0.01, "half-width of that band (a layer is added when a ratio leaves it)",
               low=0.0, source=f"{_REPO} train_CREMAD.py:222,225", space=Space.log_uniform(0.005, 0.2)),
        Option("residual_weight", float, 0.5, "weight beta of the residual term of the last boosting layer",
               low=0.0, source=f"{_REPO} train_CREMAD.py:57,70", space=Space.uniform(0.0, 1.0)),
        Option("check_every", int, 0, "epochs between two checks (0: epochs // 10 if epochs > 10, else 1)",
               low=0, source=f"{_REPO} train_CREMAD.py:205-208,220"),
        Option("hidden", int, 256, "width of the embeddings and boosting layers", low=1,
               source=f"{_REPO} model/AudioVideo.py:45-57"),
        Option("merge_weights", str, "", "prediction weights 'name=w,...' ('': audio 0.4, visual 0.6; else 1/N)",
               source=f"{_REPO} train_CREMAD.py:128,166"),
        Option("as_released", bool, False, "added layers frozen, never trained (the release's optimizer omission)",
               source=f"{_REPO} train_CREMAD.py:201,224,228"),
    )
    #: ``fused``: the fixed merge; ``blend``/``ensemble``: the ``stacked`` pool of the merge and the
    #: ``z_u`` / of the ``z_u`` only, weights fitted on validation (the heads are views, ``wrap_heads``).
    predictions = (FUSED, "blend", "ensemble")
    min_modalities = 2
    owns_step = True
    own_step_losses = True  # its per-modality losses come from out.features through its head
    tie_rank = 14.0
    authors_schedule = {"optimizer": "sgd", "lr": 1e-2, "epochs": 200, "batch_size": 64,
                        "lr_decay": "x0.1 at epochs 160 and 180", "source": f"{_REPO} data/crema.json:16-33, train_CREMAD.py:201"}
    ddp = "refused"
    ddp_reason = ("it adds parameters to the model during training, so DDP would have to be re-wrapped around "
                  "the grown model, and each rank would sum its own confidences")

    @classmethod
    def wrap_fusion(cls, fusion: nn.Module, **options) -> nn.Module:
        """AUG's head in place of ``fusion`` (its ``in_dims`` and ``num_classes``; its weights unused)."""
        opts = cls.resolve_options(options)
        in_dims = getattr(fusion, "in_dims", None)
        if not isinstance(in_dims, Mapping):
            raise TypeError(f"fusion {type(fusion).__name__} must expose in_dims ({{name: size}})")
        return AUGHead(in_dims, int(getattr(fusion, "num_classes", 0)), hidden=opts["hidden"],
                       weights=merge_weights(list(in_dims), opts["merge_weights"]),
                       train_layers=not opts["as_released"])

    @classmethod
    def wrap_heads(cls, heads: nn.ModuleDict, fusion: nn.Module, **options) -> nn.ModuleDict:
        """The per-modality heads as views of the head's branches (``z_u``; for ``blend``/``ensemble``)."""
        return branch_views(heads, fusion) if isinstance(fusion, AUGHead) else heads

    @classmethod
    def build(cls, ctx, **options) -> AUG:
        opts = cls.resolve_options(options)
        head = ctx.fusion
        if not isinstance(head, AUGHead):
            raise ValueError("method aug needs the model's fusion head to be its AUGHead (ogmge train builds it; "
                             f"a custom model passes fusion=AUGHead(...)), got {type(head).__name__}")
        frozen = [n for n, p in head.named_parameters() if not p.requires_grad and not n.startswith("boost.")]
        if frozen:
            raise ValueError(f"method aug trains its head, but the AUGHead's {frozen} are frozen (a model built with "
                             "prediction='ensemble' freezes the fusion head it is given: put the AUGHead in after "
                             "construction, AUG.wrap_fusion, as ogmge train does)")
        foreign = [m for m, h in (ctx.heads or {}).items() if not (isinstance(h, BranchView) and h.head is head)]
        if foreign:
            raise ValueError(f"method aug trains no per-modality heads of its own, but the model's heads {foreign} are "
                             "not views of its AUGHead (a fitted prediction would pool untrained heads): give the "
                             "model heads=AUG.wrap_heads(model.heads, model.fusion), as ogmge train does")
        if head.train_layers == opts["as_released"]:
            raise ValueError(f"method aug option as_released={opts['as_released']} does not match the head "
                             f"(train_layers={head.train_layers})")
        return cls(head, lam=opts["lam"], tolerance=opts["tolerance"], residual_weight=opts["residual_weight"],
                   check_every=opts["check_every"], epochs=ctx.epochs, as_released=opts["as_released"],
                   seed=ctx.component_seed("aug"), merge_weights=opts["merge_weights"])

    def __init__(self, head: AUGHead, *, lam: float = 1.0, tolerance: float = 0.01, residual_weight: float = 0.5,
                 check_every: int = 0, epochs: int | None = None, as_released: bool = False, seed: int = 0,
                 merge_weights: str = "") -> None:
        if not isinstance(head, AUGHead):
            raise TypeError(f"head must be an AUGHead, got {type(head).__name__}")
        self.head = head
        self.modalities = head.modalities
        self.lam = check_number("lam", lam, lo=0.0, lo_open=True)
        self.tolerance = check_number("tolerance", tolerance, lo=0.0)
        self.residual_weight = check_number("residual_weight", residual_weight, lo=0.0)
        if isinstance(check_every, bool) or not isinstance(check_every, int) or check_every < 0:
            raise ValueError(f"check_every must be an integer >= 0, got {check_every!r}")
        self.check_every = check_every
        self.period = check_every or (epochs // 10 if epochs is not None and epochs > 10 else 1)
        if not isinstance(as_released, bool):
            raise ValueError(f"as_released must be true or false, got {as_released!r}")
        self.as_released = as_released
        self.hidden = head.hidden
        self.merge_weights = merge_weights
        self.generator = torch.Generator().manual_seed(int(seed))
        self.scores: dict[str, Tensor] = {}
        self.ratios: dict[str, float] = {}
        self.added: list[tuple[int, str]] = []  # (check epoch, modality) of every layer added
        self.target: tuple[int, str] | None = None  # decided at a check, added at the next epoch's start
        self._pending: list[dict] = []

    # ------------------------------------------------------------------ the step
    def is_check_epoch(self, epoch: int) -> bool:
        """Epoch 0 and every ``period``-th epoch (train_CREMAD.py:220)."""
        return epoch == 0 or (epoch + 1) % self.period == 0

    def modality_loss(self, name: str, features: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        """``(L_u, z_u)`` of modality ``name`` through the head, at its current weights (under
        autocast at the features' dtype when they are half precision, as after an AMP forward)."""
        low = features.dtype in (torch.float16, torch.bfloat16) and features.dtype != self.head.fc_out.weight.dtype
        with torch.autocast(features.device.type, dtype=features.dtype) if low else contextlib.nullcontext():
            total, previous, last = self.head.branch(name, features)
        return boosted_loss(total, previous, last, labels, residual_weight=self.residual_weight), total

    def _score(self, name: str, total: Tensor, labels: Tensor) -> None:
        value = confidence(total, labels)
        self.scores[name] = value if name not in self.scores else self.scores[name] + value

    def train_step(self, batch, tools, *, epoch: int):
        """One forward pass, then per modality: its loss through the shared head, backward,
        guard, optimizer step (module docstring)."""
        labels = batch["labels"]
        tools.zero_grad()
        out = tools.forward(batch)
        terms: dict[str, Tensor] = {FUSED: cross_entropy(out.logits, labels).detach()}
        probe = getattr(out, "probe_loss", None)
        summed = torch.zeros((), device=labels.device)
        skip = None
        for i, name in enumerate(self.modalities):
            if i:
                tools.zero_grad()
            loss, total = self.modality_loss(name, out.features[name], labels)
            self._score(name, total, labels)
            step_loss = loss + probe if (i == 0 and probe is not None) else loss
            tools.backward(step_loss, {FUSED: step_loss})
            reason = tools.guard(step_loss)
            tools.optimizer_step(reason)
            skip = skip or reason
            terms[name] = loss.detach()
            summed = summed + loss.detach().float()
        return out, summed, terms, skip

    # ------------------------------------------------------------------ the assignment
    def end_epoch(self, epoch: int, *, train_losses=None, val_losses=None) -> None:
        """At a check epoch: the ratios of the epoch's confidences and the modality that gets a
        layer when some ratio leaves the band (added at the next ``begin_epoch``, so the epoch's
        checkpoint is the model that was validated). The confidences restart at every epoch."""
        scores, self.scores = self.scores, {}
        if not self.is_check_epoch(epoch) or set(scores) != set(self.modalities):
            return
        if not all(float(s) > 0 for s in scores.values()):
            return
        ratios = confidence_ratios({n: scores[n].double() for n in self.modalities})
        self.ratios = {n: float(v) for n, v in ratios.items()}
        target = modality_to_boost(self.ratios, self.lam, self.tolerance)
        if target is not None:
            self.target = (epoch, target)

    def begin_epoch(self, epoch: int, *, train_size: int, outputs=None) -> None:
        """Adds the layer decided at the last check (if any) before the epoch's first step."""
        if self.target is None:
            return None
        decided, name = self.target
        self.target = None
        params = self.head.add_layer(name, self.generator)
        self.added.append((decided, name))
        if not self.as_released:
            self._pending.append({"params": params})
        return None

    def new_param_groups(self) -> list[dict]:
        """The boosting layers added since the last call, one parameter group each (none with
        ``as_released``: the release never gives them to its optimizer)."""
        out, self._pending = self._pending, []
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state(),
                "scores": {n: v.detach().cpu() for n, v in self.scores.items()},
                "ratios": dict(self.ratios),
                "added": [[int(e), str(n)] for e, n in self.added],
                "target": None if self.target is None else [int(self.target[0]), str(self.target[1])]}

    def load_state_dict(self, state: Mapping) -> None:
        unknown = set(state) - {"generator", "scores", "ratios", "added", "target"}
        if unknown:
            raise ValueError(f"AUG state has unknown keys {sorted(unknown)}")
        if state.get("generator") is not None:
            self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).cpu())
        device = self.head.fc_out.weight.device
        self.scores = {n: torch.as_tensor(v).to(device) for n, v in (state.get("scores") or {}).items()}
        self.ratios = {n: float(v) for n, v in (state.get("ratios") or {}).items()}
        self.added = [(int(e), str(n)) for e, n in (state.get("added") or [])]
        target = state.get("target")
        self.target = None if target is None else (int(target[0]), str(target[1]))
        self._pending = []

    def trace_row(self) -> dict:
        """``aug_layers/<m>`` (boosting layers) and, after a check, ``aug_ratio/<m>``."""
        row: dict = {f"aug_layers/{n}": float(k) for n, k in self.head.layers().items()}
        row.update({f"aug_ratio/{n}": v for n, v in self.ratios.items()})
        return row

    def __repr__(self) -> str:
        return (f"AUG(modalities={list(self.modalities)}, lam={self.lam}, tolerance={self.tolerance}, "
                f"residual_weight={self.residual_weight}, period={self.period}, as_released={self.as_released}, "
                f"layers={self.head.layers()})")


__all__ = ["AUG", "AUGHead", "boosted_loss", "confidence", "confidence_ratios", "merge_weights",
           "modality_to_boost"]
