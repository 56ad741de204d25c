"""UMT: uni-modal teachers.

Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, "On Uni-Modal Feature Learning in Supervised
Multi-Modal Learning", ICML 2023. Each modality ``u`` has a unimodal teacher
``T_u``: an encoder of the student's architecture trained on ``u`` alone (its own
linear classifier, cross-entropy), then frozen. The student's encoders ``E_u``
learn their modality's features by distillation while the fusion head learns from
the fused loss::

    loss = CE(fusion(E_1(x_1), ..., E_N(x_N)), y) + lam * sum_u MSE(T_u(x_u), E_u(x_u))

``MSE`` is the mean over the batch and the feature dimension (``nn.MSELoss``);
the teachers' features carry no gradient. The paper's equations are written for
any number of modalities and the distillation happens before fusion, so N >= 1
modalities and any fusion head are accepted (N = 1 is plain distillation from
one teacher). Pure tensor function: :func:`distillation_terms`.

Where the teachers come from (``ctx.dependencies``, declared ``depends_on =
("alone",)``):

- **from the comparison's modality-alone runs** (``ogmge compare``): the encoder
  weights ``encoders.<u>.*`` of each ``only-<u>/seed-<s>/best.pt`` (the alone run's
  selected checkpoint); an encoder whose parameter/buffer names or shapes differ
  from the student's is refused, naming the difference;
- **trained on the fly** (``ogmge train --method umt``, no alone runs): a
  *teacher phase* of ``teacher_epochs`` epochs (default: half the run's epochs)
  trains every encoder with its own linear head (``needs_heads``) on
  ``sum_u CE(head_u(E_u(x_u)), y)`` (the encoders and heads are disjoint, so this
  is N separate unimodal trainings sharing the batch order; a global ``grad_clip``
  would couple them); the fusion head is not trained. At the first step of epoch
  ``teacher_epochs`` the encoders are copied as the frozen teachers, the encoders
  are reset to their initial weights and the optimizer's state is cleared, and the
  main phase trains the student from scratch for the remaining epochs. The LR
  schedule and the epoch count span both phases. The state (the initial weights
  during the teacher phase, the teachers after) is checkpointed, so a run resumes
  exactly in either phase.

Choices against BalanceBenchmark (GeWu-Lab/BalanceBenchmark [4c1482f]
``balancemm/trainer/UMT_trainer.py``; the authors' code was not found):

- teachers in **eval mode** (batch-norm running statistics, no dropout); BB never
  calls ``.eval()`` on its loaded unimodal models, so their BN statistics update
  and dropout stays active during the student's training (l.140-143);
- BB takes the newest unimodal run's first checkpoint file (l.44-48); here the
  alone run's selected checkpoint (``best.pt``);
- BB applies the distillation term only for ``modulation_starts <= epoch <=
  modulation_ends`` (l.139; 0 and 80 in ``configs/trainer_config.yaml:62-66``);
  here in every epoch of the main phase.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FUSED, BalancingMethod, cross_entropy, require_head_logits
from .registry import Option, Space, register

_BB = "GeWu-Lab/BalanceBenchmark"
#: The prefix of a modality-alone dependency's key in ``ctx.dependencies``: ``alone/<modality>``.
ALONE = "alone"
#: The checkpoint of an alone run the teacher is read from.
TEACHER_CHECKPOINT = "best.pt"


def distillation_terms(student: Mapping[str, Tensor], teacher: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``{u: mean((student_u - teacher_u)^2)}`` over the batch and the feature dimension,
    the teachers' features detached."""
    missing = set(student) ^ set(teacher)
    if missing:
        raise ValueError(f"umt: student and teacher features must name the same modalities, differing in "
                         f"{sorted(missing)}")
    out = {}
    for u, s in student.items():
        t = teacher[u].detach()
        if s.shape != t.shape:
            raise ValueError(f"umt: modality {u!r}: student features {tuple(s.shape)} but teacher features "
                             f"{tuple(t.shape)}")
        out[u] = F.mse_loss(s.float(), t.float())
    return out


def _frozen(module: nn.Module) -> nn.Module:
    teacher = copy.deepcopy(module)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.eval()


def _cpu_state(module: nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def check_same_architecture(modality: str, student: Mapping[str, Tensor], teacher: Mapping[str, Tensor],
                            where: str) -> None:
    """Refuse a teacher state whose names or shapes differ from the student encoder's, naming them."""
    extra, missing = sorted(set(teacher) - set(student)), sorted(set(student) - set(teacher))
    if extra or missing:
        raise ValueError(f"umt: the teacher for {modality!r} ({where}) does not match the student's encoder: "
                         f"teacher-only entries {extra[:5]}, student-only entries {missing[:5]}")
    for k in student:
        if tuple(student[k].shape) != tuple(teacher[k].shape):
            raise ValueError(f"umt: the teacher for {modality!r} ({where}) does not match the student's encoder: "
                             f"{k} has shape {tuple(teacher[k].shape)} there, {tuple(student[k].shape)} here")


def load_alone_teacher(modality: str, run_dir: str | Path, encoder: nn.Module) -> nn.Module:
    """A frozen copy of ``encoder`` with the weights of ``encoders.<modality>`` in the alone run
    ``run_dir``'s selected checkpoint."""
    path = Path(run_dir) / TEACHER_CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"umt: the teacher for {modality!r} needs {path} (the modality-alone run), "
                                "which does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    if not isinstance(model, Mapping):
        raise ValueError(f"umt: {path} holds no model state")
    prefix = f"encoders.{modality}."
    state = {k[len(prefix):]: v for k, v in model.items() if k.startswith(prefix)}
    if not state:
        raise ValueError(f"umt: {path} has no encoder for {modality!r} (its encoders: "
                         f"{sorted({k.split('.')[1] for k in model if k.startswith('encoders.')})})")
    check_same_architecture(modality, encoder.state_dict(), state, str(path))
    teacher = _frozen(encoder)
    teacher.load_state_dict(state)
    return teacher


@register
class UMT(BalancingMethod):
    """Uni-modal teachers: fused CE plus lam x feature MSE to frozen unimodal teachers (ICML 2023)."""

    name = "umt"
    paper = ("Du, Teng, Li, Liu, Yuan, Wang, Yuan, Zhao, 'On Uni-Modal Feature Learning in Supervised "
             "Multi-Modal Learning', ICML 2023 (arXiv 2305.01233)")
    options = (
        Option("lam", float, 10.0, "weight of the summed teacher-student feature MSE", low=0.0,
               source=f"{_BB} configs/trainer_config.yaml:66 (scaling)", space=Space.log_uniform(0.1, 100.0)),
        Option("teacher_epochs", int, None, "epochs of the teacher phase when no alone runs are given "
               "(None: half the run's epochs)", low=1, allow_none=True,
               source=f"this project ({_BB} trains its teachers in separate unimodal runs)"),
    )
    needs_heads = True  # the teacher phase trains each encoder with its own linear head
    owns_step = True  # the teachers need the batch's inputs
    depends_on = ("alone",)
    ddp = "refused"
    ddp_reason = ("each phase leaves parameters without a gradient (the fusion head while the teachers "
                  "train, the modality heads afterwards), which DDP without find_unused_parameters stops on")
    tie_rank = 45.0

    def __init__(self, encoders: Mapping[str, nn.Module], *, lam: float = 10.0, teacher_epochs: int | None = None,
                 teachers: Mapping[str, nn.Module] | None = None, epochs: int | None = None) -> None:
        self.encoders = dict(encoders)
        self.modalities = tuple(self.encoders)
        if not self.modalities:
            raise ValueError("umt needs at least one encoder")
        self.lam = float(lam)
        self.teachers: dict[str, nn.Module] | None = None
        self.initial: dict[str, dict[str, Tensor]] | None = None
        self.teacher_epochs = teacher_epochs
        if teachers is not None:
            if set(teachers) != set(self.modalities):
                raise ValueError(f"umt: teachers for {sorted(teachers)} but encoders for {sorted(self.modalities)}")
            self.teachers = dict(teachers)
            self.phase_end = 0
        else:
            k = teacher_epochs if teacher_epochs is not None else max(1, (epochs or 2) // 2)
            if epochs is not None and k >= epochs:
                raise ValueError(f"umt: teacher_epochs {k} leaves no epoch of the run's {epochs} for the "
                                 "student (set epochs > teacher_epochs, or give the modality-alone runs)")
            self.phase_end = k
            self.initial = {u: _cpu_state(e) for u, e in self.encoders.items()}
        self.last: dict[str, Tensor] = {}

    @classmethod
    def build(cls, ctx, **options) -> UMT:
        opts = cls.resolve_options(options)
        if ctx.encoders is None:
            raise ValueError("umt needs the model's encoders (ctx.encoders)")
        deps = {k.split("/", 1)[1]: v for k, v in (ctx.dependencies or {}).items() if k.startswith(f"{ALONE}/")}
        teachers = None
        if deps:
            missing = [u for u in ctx.modalities if u not in deps]
            if missing:
                raise ValueError(f"umt: modality-alone runs are given for {sorted(deps)} but not for {missing}")
            teachers = {u: load_alone_teacher(u, deps[u], ctx.encoders[u]) for u in ctx.modalities}
        return cls({u: ctx.encoders[u] for u in ctx.modalities}, lam=opts["lam"],
                   teacher_epochs=opts["teacher_epochs"], teachers=teachers, epochs=ctx.epochs)

    # ----------------------------------------------------------------- phases
    @property
    def in_teacher_phase(self) -> bool:
        return self.teachers is None

    def _switch(self, optimizer: torch.optim.Optimizer | None) -> None:
        """End of the teacher phase: the encoders become the frozen teachers, the student's
        encoders restart from their initial weights, the optimizer forgets its state."""
        assert self.initial is not None
        self.teachers = {u: _frozen(e) for u, e in self.encoders.items()}
        with torch.no_grad():
            for u, e in self.encoders.items():
                e.load_state_dict(self.initial[u])
        self.initial = None
        if optimizer is not None:
            optimizer.state.clear()

    # ----------------------------------------------------------------- the step
    def loss(self, logits, labels, *, head_logits=None, sample_keep=None):
        if not self.in_teacher_phase:
            return super().loss(logits, labels, head_logits=head_logits, sample_keep=sample_keep)
        heads = require_head_logits("umt's teacher phase", self.modalities, head_logits)
        terms = {FUSED: cross_entropy(logits, labels, sample_keep).detach()}
        for u in self.modalities:
            terms[u] = cross_entropy(heads[u], labels)
        return sum(terms[u] for u in self.modalities), terms

    def teacher_features(self, inputs: Mapping[str, Tensor], lengths: Mapping[str, Tensor] | None) -> dict:
        assert self.teachers is not None
        lengths = lengths or {}
        with torch.no_grad():
            out = {}
            for u, t in self.teachers.items():
                t.eval()
                n = lengths.get(u)  # encoders take ``lengths`` (the contract); a plain module may not
                out[u] = t(inputs[u]) if n is None else t(inputs[u], lengths=n)
            return out

    def train_step(self, batch, tools, *, epoch: int):
        if self.in_teacher_phase and epoch >= self.phase_end:
            self._switch(tools.optimizer)
        tools.zero_grad()
        out = tools.forward(batch)
        total, terms = tools.loss(out, batch["labels"])
        if self.in_teacher_phase:
            self.last = {}
        else:
            feats = self.teacher_features(batch["inputs"], batch.get("lengths") or None)
            distill = distillation_terms({u: out.features[u] for u in self.modalities}, feats)
            total = total + self.lam * sum(distill.values())
            self.last = {u: v.detach() for u, v in distill.items()}
        tools.backward(total, terms)
        skip = tools.guard(total)
        tools.optimizer_step(skip)
        return out, total, terms, skip

    # ----------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"teachers": None if self.teachers is None else {u: _cpu_state(t) for u, t in self.teachers.items()},
                "initial": self.initial}

    def load_state_dict(self, state: Mapping) -> None:
        unknown = set(state) - {"teachers", "initial"}
        if unknown:
            raise ValueError(f"UMT state has unknown keys {sorted(unknown)}")
        teachers = state.get("teachers")
        if teachers is not None:
            built = {}
            for u, e in self.encoders.items():
                check_same_architecture(u, e.state_dict(), teachers[u], "the checkpoint")
                t = _frozen(e)
                t.load_state_dict(teachers[u])
                built[u] = t
            self.teachers, self.initial = built, None
        else:
            self.teachers = None
            self.initial = {u: dict(s) for u, s in (state.get("initial") or {}).items()}
            if set(self.initial) != set(self.modalities):
                raise ValueError(f"UMT state: initial weights for {sorted(self.initial)}, encoders "
                                 f"{sorted(self.modalities)}")

    def trace_row(self) -> dict:
        """``umt_distill/<u>`` (the last step's feature MSE; absent in the teacher phase) and
        ``umt_teacher_phase`` (1 while the teachers train)."""
        row: dict = {f"umt_distill/{u}": v.detach() for u, v in self.last.items()}
        row["umt_teacher_phase"] = float(self.in_teacher_phase)
        return row

    def __repr__(self) -> str:
        return (f"UMT(modalities={list(self.modalities)}, lam={self.lam}, teacher_epochs={self.teacher_epochs}, "
                f"teachers={'given' if self.phase_end == 0 else 'trained on the fly'})")
