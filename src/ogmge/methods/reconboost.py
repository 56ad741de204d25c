"""ReconBoost: modality-alternating boosting with reconcilement.

Hua, Xu, Bao, Yang, Huang, "ReconBoost: Boosting Can Achieve Modality
Reconcilement", ICML 2024 (arXiv 2405.09321; released code huacong/ReconBoost,
``train.py`` ``main``, ``models/dynamic_net.py`` ``DynamicNet``). The model is an
additive ensemble of per-modality learners ``f_u = h_u(phi_u(x_u))`` (encoder and
head) with a learnable boost rate ``beta``; its prediction is the boosted sum

    F(x) = beta * sum_{u in members} f_u(x)

(``members``: the learners added so far). Training goes round-robin over the
modalities in *stages*; a stage of modality m has two phases:

1. **boosting** (only learner m trains): with ``p = softmax(f_m)``,
   ``q = softmax(F_{-m})``, ``F_{-m} = beta * sum_{u in members, u != m} f_u``
   (no gradient), ``r = softmax(f_prev)`` (the previous stage's learner, no
   gradient) and one-hot labels ``y``, means over the B x C entries::

       L_m = mean(-w1 * y * log p + w2 * y * q * log p) + alpha * mean((p - r)^2)

   The first term is the KL-based reconcilement objective (a sample the others
   already classify well, large ``q_y``, weighs less: per-sample weight
   ``w1 - w2 * q_y`` on ``-log p_y``); the second is the memory-consolidation
   ("GA") term, absent in the first stage (``train.py:339-351``).
2. **rectification** (every member, their heads and ``beta``): ``CE(F(x), y)``
   (``train.py:369-402``; ``dynamic_net.py:59-73`` lists the parameters).

Choices, each against the released code (docs/methods.md says more):

- The consolidation term keeps its gradient through ``p``. The released code
  detaches both softmaxes (``train.py:349``), so the term adds a constant and
  changes nothing; ``as_released=True`` reproduces that.
- An empty ensemble (the first stage without warm starts) gives ``q = 1``: the
  released code's constant ``c0`` is softmaxed over a single column
  (``train.py:331-332``), so the first learner's weight is ``w1 - w2``.
- The learner joins ``members`` when its first stage starts (the released code
  adds it after its boosting phase, ``train.py:366``); ``F_{-m}`` excludes m, so
  training is the same; only an evaluation inside the first boosting phase sees it.
- Heads: ``head="linear"`` gives each modality its own linear head (a learner per
  modality, as the paper describes); ``head="shared"`` is the released
  ``common_space``: one Linear(D, 256)-ReLU-Linear(256, C) head shared by every
  modality (``dynamic_net.py:5-15, 38-42``; needs equal feature sizes).
- The model's configured fusion head is replaced by the boosted sum
  (:meth:`ReconBoost.wrap_fusion`): the prediction *is* the fused output.
- Schedule (:func:`stage_plan`): the authors' stages (``boost_epochs`` 4 +
  ``rectify_epochs`` 4, ``train.py:59-60``, up to 1001 stages) replace the epoch
  loop; here the run's ``epochs`` are cut into stages (see :func:`stage_plan`).
- ``reset_optimizer`` clears the optimizer's state at the start of every phase:
  the released code builds a fresh SGD for each phase (``train.py:296, 371``).
  The learning rate and its schedule are the run's (released: SGD 0.01, x0.1
  every 30 stages, ``train.py:445-451``).
- ``warm_start``: the encoders start from the comparison's modality-alone runs
  (``depends_on``; the released ``--use_pretrain``, ``train.py:69, 180-182``);
  every learner is then a member from the start (``train.py:243-246``).
- N modalities: round-robin in the model's order (the released MSA scripts run
  three); the consolidation term uses the previous stage's learner.

Pure tensor functions: :func:`boosting_loss`, :func:`consolidation_loss`,
:func:`stage_plan`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ogmge.validation import check_number, check_positive_int

from .base import FUSED, BalancingMethod, check_modalities, cross_entropy
from .registry import Option, Space, register

_SRC = "huacong/ReconBoost train.py"
_NET = "huacong/ReconBoost models/dynamic_net.py"

#: Phases of a stage.
BOOST, RECTIFY = "boost", "rectify"
#: Hidden width of the released shared head (``dynamic_net.py:8``).
SHARED_HIDDEN = 256


# ---------------------------------------------------------------- pure functions
def boosting_loss(learner_logits: Tensor, others_logits: Tensor | None, labels: Tensor, *, w1: float,
                  w2: float) -> Tensor:
    """``mean(-w1 * y * log p + w2 * y * q * log p)`` over the (B, C) entries, with
    ``p = softmax(learner_logits)`` and ``q = softmax(others_logits)`` (no gradient;
    ``q = 1`` when ``others_logits`` is None: an empty ensemble)."""
    logp = F.log_softmax(learner_logits.float() if learner_logits.dtype in (torch.float16, torch.bfloat16)
                         else learner_logits, dim=1)
    y = F.one_hot(labels, logp.shape[1]).to(logp.dtype)
    if others_logits is None:
        weight = w1 - w2 * y
    else:
        weight = w1 - w2 * F.softmax(others_logits.detach().to(logp.dtype), dim=1)
    return -(weight * y * logp).mean()


def consolidation_loss(learner_logits: Tensor, previous_logits: Tensor, *, detach: bool = False) -> Tensor:
    """``mean((softmax(f_m) - softmax(f_prev))^2)`` over the (B, C) entries; ``f_prev``
    carries no gradient, and with ``detach`` neither does ``f_m`` (the released code)."""
    p = F.softmax(learner_logits.float() if learner_logits.dtype in (torch.float16, torch.bfloat16)
                  else learner_logits, dim=1)
    if detach:
        p = p.detach()
    r = F.softmax(previous_logits.detach().to(p.dtype), dim=1)
    return (p - r).pow(2).mean()


def stage_plan(epochs: int, modalities: Sequence[str], boost_epochs: int = 4,
               rectify_epochs: int = 4) -> list[tuple[int, str, str]]:
    """``(stage, modality, phase)`` of every epoch of a run of ``epochs`` epochs.

    Stages go round-robin over ``modalities``. With ``L = boost_epochs + rectify_epochs``:
    ``S = epochs // L`` stages when ``epochs >= N * L`` (at least one full round at the
    authors' length), else ``S = N`` stages when ``epochs >= N``, else ``S = epochs``
    stages (the first ``epochs`` modalities only). The epochs are shared out as evenly
    as possible, the first ``epochs % S`` stages one longer. A stage of ``l`` epochs
    boosts for ``round(l * boost_epochs / L)`` (halves up), at least 1 and, when
    ``l >= 2`` and ``rectify_epochs > 0``, at most ``l - 1``; it rectifies for the rest.
    """
    epochs = check_positive_int("epochs", epochs)
    names = tuple(modalities)
    n = len(names)
    b = check_positive_int("boost_epochs", boost_epochs)
    if isinstance(rectify_epochs, bool) or not isinstance(rectify_epochs, int) or rectify_epochs < 0:
        raise ValueError(f"rectify_epochs must be an integer >= 0, got {rectify_epochs!r}")
    r = rectify_epochs
    length = b + r
    stages = epochs // length if epochs >= n * length else (n if epochs >= n else epochs)
    base, extra = divmod(epochs, stages)
    plan: list[tuple[int, str, str]] = []
    for s in range(stages):
        size = base + (1 if s < extra else 0)
        boost = (2 * size * b + length) // (2 * length)
        boost = max(1, boost)
        if r > 0 and size >= 2:
            boost = min(boost, size - 1)
        boost = min(boost, size)
        mod = names[s % n]
        plan += [(s, mod, BOOST)] * boost + [(s, mod, RECTIFY)] * (size - boost)
    return plan


# ---------------------------------------------------------------- the boosted sum
class BoostedSum(nn.Module):
    """The additive ensemble ``beta * sum_{u in members} h_u(phi_u)`` as a fusion head.

    ``in_dims`` ``{name: D}``, ``num_classes``; ``head``: ``"linear"`` (a linear head
    per modality) or ``"shared"`` (one Linear-ReLU-Linear head for every modality,
    equal feature sizes); ``boost_rate``: the initial, learnable ``beta``.
    ``members`` (a tuple of names, saved with the model) starts as every modality.
    """

    default_estimator = "linear"
    supports_linear_split = True

    def __init__(self, in_dims: Mapping[str, int], num_classes: int, *, head: str = "linear",
                 boost_rate: float = 1.0) -> None:
        super().__init__()
        self.in_dims = {n: check_positive_int(f"in_dims[{n!r}]", d) for n, d in in_dims.items()}
        self.modalities = check_modalities("in_dims", list(self.in_dims))
        self.num_classes = check_positive_int("num_classes", num_classes)
        if head == "linear":
            self.heads = nn.ModuleDict({n: nn.Linear(d, self.num_classes) for n, d in self.in_dims.items()})
        elif head == "shared":
            dims = set(self.in_dims.values())
            if len(dims) != 1:
                raise ValueError(f"reconboost head='shared' needs equal feature sizes, got {self.in_dims}; "
                                 "use head='linear'")
            shared = nn.Sequential(nn.Linear(dims.pop(), SHARED_HIDDEN), nn.ReLU(),
                                   nn.Linear(SHARED_HIDDEN, self.num_classes))
            self.heads = nn.ModuleDict({n: shared for n in self.in_dims})
        else:
            raise ValueError(f"reconboost head must be 'linear' or 'shared', got {head!r}")
        self.head = head
        self.boost_rate = nn.Parameter(torch.tensor(float(boost_rate)))
        self.members: tuple[str, ...] = self.modalities

    def set_members(self, members: Sequence[str]) -> None:
        unknown = [m for m in members if m not in self.modalities]
        if unknown:
            raise ValueError(f"members {unknown} are not among {list(self.modalities)}")
        self.members = tuple(m for m in self.modalities if m in members)

    def learner_logits(self, features: Mapping[str, Tensor], names: Sequence[str] | None = None) -> dict[str, Tensor]:
        """``f_u = h_u(phi_u)`` (without ``beta``) for ``names`` (default every modality)."""
        return {n: self.heads[n](features[n]) for n in (self.modalities if names is None else names)}

    def linear_split(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``beta * f_u`` for every modality (members or not)."""
        return {n: self.boost_rate * v for n, v in self.learner_logits(features).items()}

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        if not self.members:
            first = features[self.modalities[0]]
            return first.new_zeros(first.shape[0], self.num_classes) + 0.0 * self.boost_rate
        parts = self.learner_logits(features, self.members)
        total = parts[self.members[0]]
        for n in self.members[1:]:
            total = total + parts[n]
        return self.boost_rate * total

    def get_extra_state(self) -> dict:
        return {"members": list(self.members)}

    def set_extra_state(self, state) -> None:
        if isinstance(state, Mapping) and "members" in state:
            self.set_members(list(state["members"]))

    def extra_repr(self) -> str:
        return f"head={self.head!r}, members={list(self.members)}"


# ---------------------------------------------------------------- the method
@register
class ReconBoost(BalancingMethod):
    """ReconBoost: round-robin boosting stages per modality, then rectification; predicts the boosted sum."""

    name = "reconboost"
    paper = ("Hua, Xu, Bao, Yang, Huang, 'ReconBoost: Boosting Can Achieve Modality Reconcilement', ICML 2024 "
             "(arXiv 2405.09321)")
    options = (
        Option("w1", float, 5.0, "weight of the learner's own log-likelihood in the boosting loss", low=0.0,
               low_open=True, source=f"{_SRC}:75"),
        Option("w2", float, 1.0, "weight of the reconcilement term (y * softmax(F_-m) * log p); at most w1", low=0.0,
               source=f"{_SRC}:76", space=Space.uniform(0.0, 5.0)),
        Option("alpha", float, 0.5, "weight of the memory-consolidation term mean((p - p_prev)^2)", low=0.0,
               source=f"{_SRC}:77", space=Space.log_uniform(0.05, 5.0)),
        Option("boost_rate", float, 1.0, "initial learnable boost rate beta of the ensemble", low=0.0,
               low_open=True, source=f"{_SRC}:57; {_NET}:33"),
        Option("boost_epochs", int, 4, "epochs of a stage's boosting phase (the authors' stage; scaled to the run)",
               low=1, source=f"{_SRC}:59"),
        Option("rectify_epochs", int, 4, "epochs of a stage's rectification phase (scaled with boost_epochs)",
               low=0, source=f"{_SRC}:60"),
        Option("head", str, "linear", "learners' heads: a linear head per modality, or the released shared MLP",
               choices=("linear", "shared"), source=f"{_SRC}:61,287-288; {_NET}:38-42 (released: shared)"),
        Option("reset_optimizer", bool, True, "clear the optimizer's state at the start of every phase",
               source=f"{_SRC}:296,371 (a new SGD per phase)"),
        Option("warm_start", bool, False, "start the encoders from the modality-alone runs (depends_on 'alone')",
               source=f"{_SRC}:69,180-182 (--use_pretrain)"),
        Option("as_released", bool, False, "detach the consolidation term as the released code (no gradient)",
               source=f"{_SRC}:349"),
    )
    min_modalities = 2
    needs_features = True
    depends_on = ("alone",)
    ddp = "refused"
    ddp_reason = ("each phase trains only some learners, so the others' parameters get no gradient "
                  "(DDP would need find_unused_parameters) and the stage state is per process")
    tie_rank = 8.0
    authors_schedule = {"optimizer": "sgd", "lr": 1e-2, "batch_size": 64, "weight_decay": 5e-4,
                        "note": "4 + 4 epochs per stage, a new SGD per phase",
                        "source": f"{_SRC}:56-65, 296, 371"}

    @classmethod
    def wrap_fusion(cls, fusion: nn.Module, **options) -> nn.Module:
        """The boosted sum over ``fusion``'s modalities and classes (the configured head is replaced)."""
        opts = cls.resolve_options(options)
        in_dims = getattr(fusion, "in_dims", None)
        num_classes = getattr(fusion, "num_classes", None)
        if not isinstance(in_dims, Mapping) or not isinstance(num_classes, int):
            raise TypeError(f"reconboost needs a fusion head exposing in_dims and num_classes, got "
                            f"{type(fusion).__name__}")
        return BoostedSum(in_dims, num_classes, head=opts["head"], boost_rate=opts["boost_rate"])

    @classmethod
    def build(cls, ctx, **options) -> ReconBoost:
        opts = cls.resolve_options(options)
        if not isinstance(ctx.fusion, BoostedSum):
            raise ValueError("reconboost needs the model's fusion head to be its boosted sum "
                             "(ReconBoost.wrap_fusion(fusion)); build the model from the config, or set "
                             f"model.fusion = ReconBoost.wrap_fusion(model.fusion); got {type(ctx.fusion).__name__}")
        if ctx.epochs is None:
            raise ValueError("reconboost needs the run's length (ctx.epochs): its stages replace the epoch loop")
        # warm_start: the trainer loads the alone runs' encoders on a fresh run (loads_alone_encoders)
        # and refuses one without them; a resumed run has its weights in its checkpoint.
        return cls(ctx.fusion, epochs=ctx.epochs, **opts)

    def __init__(self, fusion: BoostedSum, *, epochs: int, w1: float = 5.0, w2: float = 1.0, alpha: float = 0.5,
                 boost_rate: float = 1.0, boost_epochs: int = 4, rectify_epochs: int = 4, head: str = "linear",
                 reset_optimizer: bool = True, warm_start: bool = False, as_released: bool = False) -> None:
        if not isinstance(fusion, BoostedSum):
            raise TypeError(f"fusion must be a BoostedSum (ReconBoost.wrap_fusion), got {type(fusion).__name__}")
        self.fusion = fusion
        self.modalities = fusion.modalities
        self.w1 = check_number("w1", w1, lo=0.0, lo_open=True)
        self.w2 = check_number("w2", w2, lo=0.0)
        if self.w2 > self.w1:
            raise ValueError(f"reconboost needs w2 <= w1 (a sample's weight w1 - w2 * q_y must not turn negative, "
                             f"or the boosting loss has no minimum), got w1={self.w1}, w2={self.w2}")
        self.alpha = check_number("alpha", alpha, lo=0.0)
        self.boost_rate = check_number("boost_rate", boost_rate, lo=0.0, lo_open=True)
        self.boost_epochs = boost_epochs
        self.rectify_epochs = rectify_epochs
        if head != fusion.head:
            raise ValueError(f"reconboost head={head!r} but the model's boosted sum has head={fusion.head!r} "
                             "(the head is built by wrap_fusion from the same options)")
        self.head = head
        self.reset_optimizer = bool(reset_optimizer)
        self.warm_start = bool(warm_start)
        self.as_released = bool(as_released)
        self.epochs = check_positive_int("epochs", epochs)
        self.plan = stage_plan(self.epochs, self.modalities, boost_epochs, rectify_epochs)
        #: the trainer loads the modality-alone runs' encoders before the first epoch
        self.loads_alone_encoders = self.warm_start
        self.epoch = -1
        self._reset_pending = False
        self._last_consolidation = torch.zeros(())

    # --------------------------------------------------------------- schedule
    def phase(self, epoch: int) -> tuple[int, str, str]:
        """``(stage, modality, phase)`` of ``epoch`` (the last stage's phase past the plan)."""
        return self.plan[min(max(epoch, 0), len(self.plan) - 1)]

    def members_at(self, epoch: int) -> tuple[str, ...]:
        """The learners in the ensemble during ``epoch``: every one with warm starts, else
        those whose first stage has started."""
        if self.warm_start:
            return self.modalities
        started = {m for e, (_, m, _) in enumerate(self.plan) if e <= epoch}
        return tuple(m for m in self.modalities if m in started)

    def previous_learner(self, epoch: int) -> str | None:
        """The modality of the stage before ``epoch``'s (None in the first stage)."""
        stage = self.phase(epoch)[0]
        if stage == 0:
            return None
        return next(m for s, m, _ in self.plan if s == stage - 1)

    def begin_epoch(self, epoch: int, *, train_size: int, outputs=None):
        """Set the epoch's stage, phase and members; the usual shuffled pass."""
        self.epoch = int(epoch)
        self.fusion.set_members(self.members_at(epoch))
        here, before = self.phase(epoch), self.phase(epoch - 1)
        starts = epoch == 0 or (here[0], here[2]) != (before[0], before[2])
        self._reset_pending = self.reset_optimizer and starts and epoch < len(self.plan)
        return None

    # --------------------------------------------------------------- loss
    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None, features=None):
        """Boosting phase: ``L_m`` (module docstring) on learner m; rectification: ``CE(F)``.
        ``terms["fused"]`` is the boosted sum's cross-entropy (trained only in rectification)."""
        if self.epoch < 0:
            raise RuntimeError("reconboost: call begin_epoch(epoch, train_size=...) before each epoch's steps "
                               "(it sets the stage, the phase and the ensemble's members)")
        fused = cross_entropy(logits, labels)
        _, learner, phase = self.phase(self.epoch)
        if phase == RECTIFY:
            self._last_consolidation = torch.zeros((), device=logits.device)
            return fused, {FUSED: fused}
        if features is None:
            raise ValueError("reconboost's boosting loss needs the encoders' features (features=...)")
        members = self.fusion.members
        others = [u for u in members if u != learner]
        prev = self.previous_learner(self.epoch)
        wanted = [learner, *others, *([prev] if prev is not None and prev not in others else [])]
        lg = self.fusion.learner_logits(features, list(dict.fromkeys(wanted)))
        beta = self.fusion.boost_rate.detach()
        f_others = None
        if others:
            with torch.no_grad():
                total = lg[others[0]]
                for u in others[1:]:
                    total = total + lg[u]
                f_others = beta * total
        boost = boosting_loss(lg[learner], f_others, labels, w1=self.w1, w2=self.w2)
        total_loss = boost
        terms = {FUSED: fused.detach(), "boost": boost}
        if prev is not None and self.alpha > 0:
            ga = consolidation_loss(lg[learner], lg[prev], detach=self.as_released)
            total_loss = total_loss + self.alpha * ga
            terms["consolidation"] = ga
            self._last_consolidation = ga.detach()
        else:
            self._last_consolidation = torch.zeros((), device=logits.device)
        return total_loss, terms

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """At a phase's first step: a fresh optimizer state (the released code's new SGD per phase)."""
        if self._reset_pending:
            optimizer.state.clear()
            self._reset_pending = False

    # --------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "plan": [list(p) for p in self.plan],
                "members": list(self.members_at(self.epoch)) if self.epoch >= 0 else []}

    def load_state_dict(self, state: Mapping) -> None:
        plan = [tuple(p) for p in state.get("plan", [])]
        if plan != [tuple(p) for p in self.plan]:
            raise ValueError("reconboost state is for another stage plan (a different number of epochs, "
                             "modalities or stage lengths); resume with the run's own settings")
        self.epoch = int(state.get("epoch", -1))
        if self.epoch >= 0:
            self.fusion.set_members(self.members_at(self.epoch))

    def trace_row(self) -> dict:
        stage, learner, phase = self.phase(self.epoch)
        return {"reconboost/stage": float(stage), "reconboost/learner": float(self.modalities.index(learner)),
                "reconboost/rectifying": float(phase == RECTIFY),
                "reconboost/boost_rate": self.fusion.boost_rate.detach().clone(),
                "reconboost/consolidation": self._last_consolidation}

    def __repr__(self) -> str:
        return (f"ReconBoost(w1={self.w1}, w2={self.w2}, alpha={self.alpha}, boost_epochs={self.boost_epochs}, "
                f"rectify_epochs={self.rectify_epochs}, head={self.head!r}, warm_start={self.warm_start}, "
                f"as_released={self.as_released}, epochs={self.epochs})")


__all__ = ["BoostedSum", "ReconBoost", "boosting_loss", "consolidation_loss", "stage_plan"]
