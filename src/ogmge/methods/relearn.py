"""Diagnosing & Re-learning: encoders softly re-initialised by their learning state.

Wei, Li, Feng, Hu, "Diagnosing and Re-learning for Balanced Multimodal
Learning", ECCV 2024 (released code: GeWu-Lab/Diagnosing_Relearning_ECCV2024 at
025085e, ``code/ours.py``). Training is plain fused cross-entropy; every
``reinit_epoch`` epochs (at most ``reinit_num`` times) each modality u is
*diagnosed* and its encoder *re-learns*:

1. the encoder's eval-mode features of the training split D and of the
   validation split V, each min-max scaled to [-1, 1] per feature dimension,
   are clustered by k-means with k = the number of classes;
2. purity of a clustering, ``P = (1/n) sum_clusters max_c |cluster ∩ class c|``;
3. the gap ``g_u = |P_u(D) - P_u(V)|`` and the strength ``w_u = tanh(lambda g_u)``;
4. soft re-initialisation ``theta_u <- w_u theta_u(init) + (1 - w_u) theta_u``
   of the encoder's weights; the fusion head is untouched.

A well-learnt modality has a large train/validation purity gap (its training
representation separates classes the validation one does not) and is pulled
further back towards its initialisation; a worse-learnt one (small gap) keeps
most of its weights.

Choices where the paper is silent or the released code differs (docs/methods.md):

- **Validation half A.** The re-initialisation depends on validation data, so
  the method is fitted on validation: it diagnoses on validation half A only,
  and the selection score and reported validation metrics are half B's
  (``fits_on_validation``, ``cross_fit = "split"``, the G-Blending protocol). The
  released code uses the whole validation split and selects its epoch on the
  test split (``ours.py:386-389``).
- **When.** The released loop re-initialises after the evaluation of epoch
  ``e`` (0-based) when ``e > 0`` and ``e % reinit_epoch == 0`` (``ours.py:418-427``),
  i.e. after epochs 20, 40, 60 of 90 (``script/ours.sh``). Here the trainer calls
  the hook after epoch ``e``'s checkpoint, before epoch ``e + 1``'s first step (so
  the checkpoint and ``best.pt`` hold the evaluated, pre-re-initialisation
  weights, a resumed run repeats the re-initialisation from them, and none
  happens after the last epoch, where nothing would train on it).
- **Budget.** With ``scale_schedule`` the period is scaled to the run,
  ``period = max(1, round(reinit_epoch * epochs / 90))`` (the authors' 90 epochs).
- **What is blended.** Every floating-point parameter *and buffer* of the
  encoder (BatchNorm running statistics too); the released code blends
  ``named_parameters()`` only (``ours.py:156-166``), so its running statistics
  are kept (``buffers: false`` does that). Integer buffers (BatchNorm's batch
  counter) are kept. The blend is computed in float64 and cast back.
- **Optimizer state** (SGD momentum, Adam moments) of the re-initialised
  parameters is kept, as in the released code (``param.data = ...`` leaves the
  optimizer's state alone); the blend is written in place, so the optimizer
  still holds the same parameters.
- **Clustering.** scikit-learn's ``KMeans`` (as released, ``ours.py:110``), seeded
  per re-initialisation, modality and split from the run's seed (released:
  ``random_state=0``); ``n_init`` 10 (the released call passes none: scikit-learn
  < 1.4 ran 10 initialisations, >= 1.4 one). Fewer samples than classes: k = the
  number of samples; fewer distinct features than k (a collapsed encoder): fewer
  clusters, purity still defined.
- **N modalities.** Each modality is diagnosed and re-initialised on its own
  (the released code names audio and visual; nothing in the rule compares
  modalities).

Pure functions (float64): :func:`minmax_scale`, :func:`purity`,
:func:`reinit_strength`, :func:`blend`, :func:`scaled_period`, :func:`is_due`;
:func:`kmeans_assign` is the clustering step; :func:`soft_reinit_` writes the
blend into a module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from ogmge.seeding import component_seed
from ogmge.validation import check_number, check_positive_int

from .base import BalancingMethod, check_modalities
from .registry import Option, Space, register

_SRC = "GeWu-Lab/Diagnosing_Relearning_ECCV2024 code/ours.py"
#: The authors' training length, to which ``reinit_epoch`` is scaled (``script/ours.sh``: ``--epochs 90``).
REFERENCE_EPOCHS = 90


def minmax_scale(features: Tensor, low: float = -1.0, high: float = 1.0) -> Tensor:
    """``features`` (n, D) scaled per column to ``[low, high]`` in float64 (a constant column
    maps to ``low``, as scikit-learn's ``MinMaxScaler``)."""
    x = features.detach().double()
    lo, hi = x.min(0).values, x.max(0).values
    span = hi - lo
    span = torch.where(span == 0, torch.ones_like(span), span)
    return (x - lo) / span * (high - low) + low


def kmeans_assign(features: Tensor, k: int, *, seed: int, n_init: int = 10) -> Tensor:
    """Cluster index (n,) of each row of ``features`` by scikit-learn's k-means with ``k``
    clusters (at most n), seeded with ``seed`` (reduced to 32 bits). Fewer distinct rows than
    ``k`` (e.g. a collapsed encoder) give fewer clusters, without a warning: purity stays defined."""
    import warnings

    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning

    x = features.detach().double().cpu().numpy()
    k = max(1, min(int(k), x.shape[0]))
    km = KMeans(n_clusters=k, random_state=int(seed) % 2**32, n_init=n_init)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        assigned = km.fit_predict(x)
    return torch.from_numpy(np.asarray(assigned, dtype=np.int64))


def purity(labels: Tensor, clusters: Tensor) -> float:
    """``(1/n) sum_k max_c |{i: cluster_i = k, y_i = c}|``: the share of samples whose class is
    their cluster's majority class."""
    y = labels.detach().long().cpu()
    k = clusters.detach().long().cpu()
    if y.numel() == 0 or y.shape != k.shape:
        raise ValueError(f"purity needs as many labels as cluster indices (and some), got {tuple(y.shape)} "
                         f"and {tuple(k.shape)}")
    n_c, n_k = int(y.max()) + 1, int(k.max()) + 1
    table = torch.bincount(k * n_c + y, minlength=n_k * n_c).view(n_k, n_c)
    return float(table.max(1).values.sum()) / y.numel()


def reinit_strength(purity_train: float, purity_val: float, lam: float) -> tuple[float, float]:
    """``(gap, w)``: ``gap = |P_train - P_val|`` and ``w = tanh(lam * gap)``."""
    gap = abs(float(purity_train) - float(purity_val))
    return gap, math.tanh(float(lam) * gap)


def blend(current: Tensor, init: Tensor, w: float) -> Tensor:
    """``w * init + (1 - w) * current``, computed in float64, in ``current``'s dtype."""
    mixed = float(w) * init.detach().double() + (1.0 - float(w)) * current.detach().double()
    return mixed.to(current.dtype)


def reinit_tensors(module: nn.Module, *, buffers: bool = True) -> dict[str, Tensor]:
    """``{name: tensor}``: the floating-point parameters (and, with ``buffers``, buffers) of
    ``module`` that a re-initialisation blends."""
    out: dict[str, Tensor] = {n: p for n, p in module.named_parameters() if p.is_floating_point()}
    if buffers:
        out.update({n: b for n, b in module.named_buffers() if b.is_floating_point()})
    return out


@torch.no_grad()
def soft_reinit_(module: nn.Module, init: Mapping[str, Tensor], w: float, *, buffers: bool = True) -> None:
    """In place: every tensor of :func:`reinit_tensors` becomes ``w * init + (1 - w) * current``."""
    for name, t in reinit_tensors(module, buffers=buffers).items():
        if name not in init:
            raise ValueError(f"no initial value of {name!r} to re-initialise towards")
        t.copy_(blend(t, init[name].to(t.device), w))


def scaled_period(reinit_epoch: int, epochs: int | None, *, scale: bool = True) -> int:
    """Epochs between re-initialisations: ``max(1, round(reinit_epoch * epochs / 90))`` when
    ``scale`` and the run's length is known, else ``reinit_epoch``."""
    if not scale or not epochs:
        return int(reinit_epoch)
    return max(1, round(reinit_epoch * epochs / REFERENCE_EPOCHS))


def is_due(epoch: int, period: int, done: int, reinit_num: int) -> bool:
    """Whether the encoders are re-initialised after epoch ``epoch`` (0-based): ``epoch > 0``,
    a multiple of ``period``, and fewer than ``reinit_num`` done (``ours.py:418-420``)."""
    return epoch > 0 and epoch % period == 0 and done < reinit_num


@register
class Relearn(BalancingMethod):
    """Diagnosing & Re-learning: each encoder pulled back to its init by tanh(λ·train/val clustering-purity gap).

    Wei et al., ECCV 2024; see the module docstring. ``encoders``: ``{modality: module}``
    (two or more; their weights now are the initial ones kept for the re-initialisation);
    ``num_classes`` (k of k-means). Keyword-only: ``lam``, ``reinit_epoch``, ``reinit_num``,
    ``scale_schedule``, ``n_init``, ``buffers`` (the options), ``epochs`` (the run's
    length, for the scaled schedule), ``seed`` (of the clusterings).

    In a plain loop, after each epoch ``e``::

        if method.split_features_due(e):
            method.split_features(e, train=encoder_features(model, train_loader),
                                  heldout=encoder_features(model, val_loader))
    """

    name = "relearn"
    paper = "Wei, Li, Feng, Hu, 'Diagnosing and Re-learning for Balanced Multimodal Learning', ECCV 2024"
    options = (
        Option("lam", float, 3.0, "lambda of the strength w = tanh(lambda * abs(purity gap))", low=0.0, low_open=True,
               source=f"{_SRC}:53 (move_lambda; script/ours.sh)", space=Space.log_uniform(0.3, 10.0)),
        Option("reinit_epoch", int, 20, "epochs between re-initialisations (of 90, scaled to the run with "
               "scale_schedule)", low=1, source=f"{_SRC}:55 (script/ours.sh)", space=Space.int_range(5, 45)),
        Option("reinit_num", int, 3, "most re-initialisations in a run", low=0, source=f"{_SRC}:56 (script/ours.sh)",
               space=Space.int_range(1, 5)),
        Option("scale_schedule", bool, True, "scale reinit_epoch by the run's epochs / the authors' 90",
               source="this project (the released schedule assumes 90 epochs, script/ours.sh)"),
        Option("n_init", int, 10, "k-means initialisations per clustering (the best inertia is kept)", low=1,
               source=f"{_SRC}:110 (none passed: scikit-learn < 1.4's default 10)"),
        Option("buffers", bool, True, "also blend the encoders' floating-point buffers (BatchNorm statistics)",
               source=f"this project (released: parameters only, {_SRC}:156-166)"),
    )
    min_modalities = 2
    fits_on_validation = True
    cross_fit = "split"
    needs_validation = True
    wants_split_features = True
    tie_rank = 8.5
    authors_schedule = {"optimizer": "sgd", "lr": 2e-3, "epochs": 90, "batch_size": 64, "weight_decay": 1e-4,
                        "note": "no decay: the scheduler arguments are never used",
                        "source": f"{_SRC}:34-40, 368; code/script/ours.sh:10"}
    ddp = "refused"
    ddp_reason = ("the re-initialisation is computed from whole-split features and a clustering on one process; "
                  "the loop does not share it between ranks")

    @classmethod
    def build(cls, ctx, **options) -> Relearn:
        opts = cls.resolve_options(options)
        if ctx.encoders is None:
            raise ValueError("method relearn re-initialises the encoders: the model must expose them "
                             "(model.encoders, a {modality: module} dict)")
        if ctx.num_classes < 1:
            raise ValueError("method relearn clusters with k = the number of classes: the model's fusion head "
                             "must say it (num_classes)")
        return cls(ctx.encoders, ctx.num_classes, epochs=ctx.epochs, seed=ctx.component_seed(cls.name), **opts)

    def __init__(
        self,
        encoders: Mapping[str, nn.Module],
        num_classes: int,
        *,
        lam: float = 3.0,
        reinit_epoch: int = 20,
        reinit_num: int = 3,
        scale_schedule: bool = True,
        n_init: int = 10,
        buffers: bool = True,
        epochs: int | None = None,
        seed: int = 0,
    ) -> None:
        if isinstance(encoders, nn.ModuleDict):
            encoders = dict(encoders.items())
        if not isinstance(encoders, Mapping) or not all(isinstance(e, nn.Module) for e in encoders.values()):
            raise TypeError(f"encoders must be a dict of modality name -> nn.Module, got {type(encoders).__name__}")
        self.modalities = check_modalities("encoders", list(encoders))
        self.encoders = dict(encoders)
        self.num_classes = check_positive_int("num_classes", num_classes)
        self.lam = check_number("lam", lam, lo=0.0, lo_open=True)
        self.reinit_epoch = check_positive_int("reinit_epoch", reinit_epoch)
        self.reinit_num = check_number("reinit_num", reinit_num, lo=0, integer=True)
        self.scale_schedule = bool(scale_schedule)
        self.n_init = check_positive_int("n_init", n_init)
        self.buffers = bool(buffers)
        self.epochs = epochs
        self.period = scaled_period(self.reinit_epoch, epochs, scale=self.scale_schedule)
        self.seed = int(seed)
        #: theta(init): the encoders' weights when the method was built (a resumed run loads them)
        self.init = {u: {n: t.detach().clone() for n, t in reinit_tensors(enc, buffers=True).items()}
                     for u, enc in self.encoders.items()}
        self.done = 0
        self.last: dict[str, dict[str, float]] = {u: self._blank() for u in self.modalities}
        self.last_epoch = -1
        #: the last clustering of each modality and split (not checkpointed; for inspection and the oracle)
        self.assignments: dict[str, dict[str, Tensor]] = {}

    @staticmethod
    def _blank() -> dict[str, float]:
        return {"purity_train": 0.0, "purity_val": 0.0, "gap": 0.0, "w": 0.0}

    # ------------------------------------------------------------------ the hook
    def split_features_due(self, epoch: int) -> bool:
        return is_due(epoch, self.period, self.done, self.reinit_num)

    def cluster_seed(self, epoch: int, modality: str, split: str) -> int:
        """The k-means seed of one clustering, from the run's seed, the epoch, modality and split."""
        return component_seed(self.seed, f"{epoch}/{modality}/{split}")

    def split_features(self, epoch: int, *, train, heldout) -> None:
        """Diagnose every modality on ``train`` and ``heldout`` (each ``({modality: (n, D)}, labels)``)
        and re-initialise its encoder; does nothing unless :meth:`split_features_due`."""
        if not self.split_features_due(epoch):
            return
        if heldout is None:
            raise ValueError("method relearn diagnoses on held-out validation features; got none")
        stats: dict[str, dict[str, float]] = {}
        for u in self.modalities:
            pur = {}
            self.assignments[u] = {}
            for split, (feats, labels) in (("train", train), ("val", heldout)):
                if u not in feats:
                    raise ValueError(f"method relearn needs {split} features of modality {u!r}, got {sorted(feats)}")
                clusters = kmeans_assign(minmax_scale(feats[u]), self.num_classes,
                                         seed=self.cluster_seed(epoch, u, split), n_init=self.n_init)
                self.assignments[u][split] = clusters
                pur[split] = purity(labels, clusters)
            gap, w = reinit_strength(pur["train"], pur["val"], self.lam)
            stats[u] = {"purity_train": pur["train"], "purity_val": pur["val"], "gap": gap, "w": w}
        self.apply(stats)
        self.last, self.last_epoch = stats, epoch
        self.done += 1

    def apply(self, stats: Mapping[str, Mapping[str, float]]) -> None:
        """``theta_u <- w_u theta_u(init) + (1 - w_u) theta_u`` for every modality (``stats[u]["w"]``)."""
        for u in self.modalities:
            soft_reinit_(self.encoders[u], self.init[u], stats[u]["w"], buffers=self.buffers)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"modalities": list(self.modalities), "period": self.period, "done": self.done,
                "last_epoch": self.last_epoch, "last": {u: dict(v) for u, v in self.last.items()},
                "init": {u: dict(v) for u, v in self.init.items()}}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", [])) != list(self.modalities):
            raise ValueError(f"relearn state is for modalities {state.get('modalities')}, this one has "
                             f"{list(self.modalities)}")
        for u in self.modalities:
            want = set(self.init[u])
            got = set(state["init"][u])
            if got != want:
                raise ValueError(f"relearn state: the initial weights of {u!r} name {sorted(got ^ want)} "
                                 "differently from this encoder")
        self.init = {u: {n: t.detach().clone().to(self.init[u][n].device) for n, t in state["init"][u].items()}
                     for u in self.modalities}
        self.done = int(state["done"])
        self.last_epoch = int(state["last_epoch"])
        self.last = {u: {k: float(v) for k, v in state["last"][u].items()} for u in self.modalities}

    def trace_row(self) -> dict[str, float]:
        row: dict[str, float] = {"relearn_reinits": float(self.done)}
        for u in self.modalities:
            row[f"relearn_w/{u}"] = self.last[u]["w"]
            row[f"relearn_gap/{u}"] = self.last[u]["gap"]
        return row

    def __repr__(self) -> str:
        return (f"Relearn(modalities={list(self.modalities)}, lam={self.lam}, reinit_epoch={self.reinit_epoch}, "
                f"period={self.period}, reinit_num={self.reinit_num}, n_init={self.n_init}, "
                f"buffers={self.buffers}, done={self.done})")
