"""MCR: the Multimodal Competition Regularizer.

Kontras, Strypsteen, Chatzichristos, Liang, Blaschko, De Vos, "Balancing
Multimodal Training Through Game-Theoretic Regularization", NeurIPS 2025
(arXiv 2411.07335). Released code: kkontras/MCR; the wired version of the
regulariser is kkontras/SynIB ``src/synib/training/pipeline/helpers/Bias_Infusion.py``
(``Bias_Infusion_MCR`` l.2071-2295, ``Bias_Infusion_MCR3D`` l.2296-2551) with the
model's permuted passes in ``src/synib/models/crema_d/crema_backbone_fusion_models.py``
(``MCR_Model`` l.1041-1350).

One step, for encoder features ``z_u`` (B, D_u), the fusion head ``f`` and the
clean fused logits ``o = f(z)``, ``K`` = ``num_samples`` batch permutations
``pi_1..pi_K`` (drawn once per step, shared by every modality):

- the permuted prediction with modality m shuffled and the gradient reaching
  encoder k only::

      o~_{k,m,s} = f({m: z_m[pi_s]} ∪ {u: z_u, u != m}),  every z_u with u != k detached,

- the divergence ``J_{k,m} = mean_s mean_i JSD(softmax o~_{k,m,s,i} || softmax o_i)``
  (``JSD(p||q) = ½ KL(p||r) + ½ KL(q||r)``, ``r = ½ (p + q)``, natural log; the
  clean prediction ``o`` is a stop-gradient target),
- the game (``game``; signs as *minimised*)::

      greedy:  L_game = sum_m ( -J_{m,m} + sum_{k != m} J_{k,m} )
      ind:     L_game = sum_m   -J_{m,m}
      colab:   L_game = sum_m   -J_{*,m}          (no detaching: every encoder)

  ``greedy`` (the authors' default): each encoder *raises* the divergence caused by
  permuting its own modality (makes itself matter) and *lowers* the divergence
  caused by permuting any other one. For two modalities it is exactly the
  released ``l * (-enc0_p0 + enc1_p0 - enc1_p1 + enc0_p1)`` (SynIB
  Bias_Infusion.py:2230-2234). For N > 2 each modality's permutation enters
  once with a minus sign for its own encoder and a plus sign for each of the
  N - 1 others (unweighted sums, as ``Bias_Infusion_MCR3D`` l.2487-2499 adds its
  terms); only single-modality permutations are used (MCR3D also permutes pairs).
- the supervised contrastive term (NT-Xent with labels, temperature ``tau``) over
  the L2-normalised features of all modalities stacked (N·B rows): for every
  positive pair (i, j), i != j with the same label,
  ``-log(e^{s_ij/τ} / (e^{s_ij/τ} + sum_{n: y_n != y_i} e^{s_in/τ}))``, averaged
  over the positive pairs (pytorch-metric-learning's ``NTXentLoss`` with labels,
  SynIB Bias_Infusion.py:2050-2069); 0 when the batch has no positive pair,
- the unimodal cross-entropies of the per-modality linear heads.

Total: ``CE(o, y) + multil * sum_u CE(h_u(z_u), y) + l * L_game + contr * L_con``.

Choices where the released code differs or the paper is silent (docs/methods.md):

- The 2-modality ``Bias_Infusion_MCR.before_backward`` never adds ``reg_term`` nor
  the contrastive term to the total (SynIB Bias_Infusion.py:2218-2295 returns
  ``total`` unchanged; the MCR repository at 338d370 does not even dispatch the
  config's method name). We add them, as the paper and ``Bias_Infusion_MCR3D``
  (l.2549, ``total += reg_term + cca_loss_reg``) do.
- The released model re-runs the encoders in eval mode for the permuted passes
  (crema_backbone_fusion_models.py:1277, 1281); we permute the training
  forward's features (one encoder pass; BatchNorm/dropout as in training).
- Their clean target carries gradient (``n_pred``, l.1295/1346); ours is
  detached. For ``greedy`` with N = 2 this changes nothing: ``J_{0,m}`` and
  ``J_{1,m}`` have equal values and enter with opposite signs, so their gradients
  through the clean prediction cancel.
- We detach the non-receiving modalities' *features*, for every head, as they do
  for FiLM/gated/transformer heads (l.1197-1210); for their linear head they
  detach the logit contribution ``W_u z_u`` (l.1147-1162), so only the receiver's
  slice of the head gets a term's gradient. Ours gets each term's whole gradient
  (with greedy, N = 2, these cancel: the game then acts on the encoders only).
- Only the ``rand`` permutation (plain ``randperm``, fixed points allowed) is
  offered, not ``rsl``/``rsi``/same-/different-label shuffles.
- The CEB "lib" term and the starting/ending epochs are not implemented.
- Warm start (``warm_start``, default off): the encoders are loaded from
  modality-alone runs (``ctx.dependencies["alone/<u>"]``, their ``best.pt``), as the
  authors' ``pretrainedEncoder`` configs do; ``compare`` runs them first
  (``depends_on = ("alone",)``) and the trainer loads them on a fresh run
  (``loads_alone_encoders``); a single run takes ``train(..., dependencies=...)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ogmge.validation import check_number

from .base import FUSED, BalancingMethod, check_modalities, cross_entropy, require_head_logits
from .registry import Option, Preset, Space, register

_SYN = "kkontras/SynIB src/synib/training/pipeline/helpers/Bias_Infusion.py"
_RUN = "kkontras/MCR run.sh:18 (CREMA-D ResNet)"
GAMES = ("greedy", "ind", "colab")
#: The released clamps (Bias_Infusion.py:2129, 2136).
_PROB_FLOOR = 1e-20


def js_divergence(logits: Tensor, target_logits: Tensor) -> Tensor:
    """Mean over rows of ``JSD(softmax(logits) || softmax(target_logits))`` (natural log),
    probabilities floored at 1e-20 as the released code does."""
    p = logits.float().softmax(-1) if logits.dtype in (torch.float16, torch.bfloat16) else logits.softmax(-1)
    q = target_logits.to(p.dtype).softmax(-1)
    log_m = (0.5 * (p + q)).clamp(_PROB_FLOOR, 1.0).log()
    p, q = p.clamp(_PROB_FLOOR, 1.0), q.clamp(_PROB_FLOOR, 1.0)
    kl_p = (p * (p.log() - log_m)).sum(-1)
    kl_q = (q * (q.log() - log_m)).sum(-1)
    return 0.5 * (kl_p + kl_q).mean()


def draw_permutations(batch_size: int, num_samples: int, generator: torch.Generator) -> Tensor:
    """(K, B) long: ``num_samples`` permutations of the batch from ``generator``."""
    return torch.stack([torch.randperm(batch_size, generator=generator, device=generator.device)
                        for _ in range(num_samples)])


def permuted_inputs(features: Mapping[str, Tensor], perms: Tensor, permuted: str,
                    receiver: str | None) -> dict[str, Tensor]:
    """Features ``{u: (K·B, D)}``: modality ``permuted`` shuffled by each row of ``perms``,
    the others repeated K times; every modality other than ``receiver`` detached
    (``receiver`` None: none detached)."""
    k, b = perms.shape
    out = {}
    for u, z in features.items():
        x = z[perms.reshape(-1)] if u == permuted else z.repeat(k, *([1] * (z.dim() - 1)))
        out[u] = x if receiver is None or u == receiver else x.detach()
    return out


def game_signs(modalities: Sequence[str], game: str) -> dict[tuple[str | None, str], float]:
    """``{(receiver, permuted): sign}`` of the minimised game (receiver None: every encoder)."""
    if game == "greedy":
        return {(k, m): (-1.0 if k == m else 1.0) for m in modalities for k in modalities}
    if game == "ind":
        return {(m, m): -1.0 for m in modalities}
    if game == "colab":
        return {(None, m): -1.0 for m in modalities}
    raise ValueError(f"game must be one of {list(GAMES)}, got {game!r}")


def game_loss(fusion, features: Mapping[str, Tensor], clean_logits: Tensor, perms: Tensor,
              modalities: Sequence[str], game: str = "greedy") -> tuple[Tensor, dict[tuple, Tensor]]:
    """``(L_game, {(receiver, permuted): J})``: the signed sum of the permutation divergences
    against the detached clean prediction (module docstring)."""
    target = clean_logits.detach().repeat(perms.shape[0], 1)
    divs: dict[tuple, Tensor] = {}
    total = clean_logits.new_zeros(())
    for (k, m), sign in game_signs(modalities, game).items():
        j = js_divergence(fusion(permuted_inputs(features, perms, m, k)), target)
        divs[(k, m)] = j
        total = total + sign * j
    return total, divs


def supervised_nt_xent(features: Sequence[Tensor], labels: Tensor, tau: float) -> Tensor:
    """Supervised NT-Xent over the L2-normalised rows of every tensor in ``features`` stacked,
    each row labelled by ``labels``: mean over positive pairs (same label, i != j) of
    ``-log(e^{s_ij/τ} / (e^{s_ij/τ} + sum_{y_n != y_i} e^{s_in/τ}))``; 0 without positive pairs."""
    z = torch.cat(list(features), 0)
    z = F.normalize(z.float() if z.dtype in (torch.float16, torch.bfloat16) else z, p=2, dim=1)
    y = labels.repeat(len(features))
    sim = z @ z.t() / tau
    same = y[:, None] == y[None, :]
    eye = torch.eye(len(y), dtype=torch.bool, device=z.device)
    pos = same & ~eye
    if not bool(pos.any()):
        return sim.sum() * 0.0
    has_neg = (~same).any(1, keepdim=True)
    # rows without negatives get finite fillers (no NaN gradient) and a zero loss below
    neg_sim = torch.where(has_neg, sim.masked_fill(same, float("-inf")), torch.zeros_like(sim))
    neg_lse = torch.logsumexp(neg_sim, dim=1, keepdim=True).expand_as(sim)
    per_pair = torch.where(has_neg, torch.logaddexp(sim, neg_lse) - sim, torch.zeros_like(sim))
    return per_pair[pos].mean()


@register
class MCR(BalancingMethod):
    """MCR: latent-permutation game (JSD) + supervised contrastive + unimodal CE (any fusion).

    Kontras et al., NeurIPS 2025; see the module docstring. ``modalities`` (2 or more),
    ``fusion`` (``fusion({u: (B, D)}) -> logits``), ``generator`` (the permutations'
    stream). Keyword-only: ``l`` (0.1), ``multil`` (0.01), ``contr`` (1.0), ``tau`` (0.5),
    ``num_samples`` (32), ``game`` ("greedy"), ``warm_start`` (False).
    """

    name = "mcr"
    paper = ("Kontras et al., 'Balancing Multimodal Training Through Game-Theoretic Regularization', "
             "NeurIPS 2025")
    options = (
        Option("l", float, 0.1, "weight of the latent-permutation game", low=0.0,
               source=f"{_RUN}: --l 0.1", space=Space.log_uniform(0.01, 1.0)),
        Option("multil", float, 0.01, "weight of the unimodal heads' cross-entropies", low=0.0,
               source=f"{_RUN}: --multil 0.01", space=Space.log_uniform(0.001, 1.0)),
        Option("contr", float, 1.0, "weight of the supervised contrastive term between modality features",
               low=0.0, source=f"{_RUN}: --contr_coeff 1", space=Space.log_uniform(0.01, 3.0)),
        Option("tau", float, 0.5, "temperature of the supervised contrastive term", low=0.0, low_open=True,
               source=f"{_SYN}:2090"),
        Option("num_samples", int, 32, "batch permutations per step", low=1,
               source=f"{_RUN}: --num_samples 32", space=Space.int_range(4, 32, log=True)),
        Option("game", str, "greedy", "sign pattern of the game", choices=GAMES,
               source=f"{_RUN}: --reg_by greedy; {_SYN}:2087, 2230-2245"),
        Option("warm_start", bool, False, "load each encoder from the comparison's modality-alone run",
               source=f"{_RUN}: --pre (pretrainedEncoder, kkontras/SynIB run/configs/CREMA_D/synergy/jan/MCR.json:53,58)"),
    )
    needs_heads = True
    needs_features = True
    min_modalities = 2
    #: warm starts (``warm_start``) come from the comparison's modality-alone runs
    depends_on = ("alone",)
    tie_rank = 12.0
    dataset_presets = {"ave": Preset({"l": 0.01}, source="kkontras/MCR run.sh:68 (AVE ResNet): --l 0.01")}
    authors_schedule = {"lr": 1e-4, "batch_size": 32, "weight_decay": 1e-4,
                        "note": "from unimodal warm starts (--pre)", "source": _RUN}
    ddp = "identical"

    @classmethod
    def build(cls, ctx, **options) -> MCR:
        opts = cls.resolve_options(options)
        if ctx.fusion is None:
            raise ValueError("MCR needs the fusion head (ctx.fusion) to re-run it on permuted features")
        dims = {ctx.feature_dims.get(u) for u in ctx.modalities}
        if opts["contr"] > 0 and len(dims) > 1:
            raise ValueError(f"MCR's contrastive term compares the modalities' features, which needs equal "
                             f"feature sizes; got {dict(ctx.feature_dims)} (set contr=0 or equal out_dim)")
        return cls(ctx.modalities, ctx.fusion, ctx.generator("mcr"), **opts)

    def __init__(self, modalities, fusion, generator: torch.Generator | None = None, *,
                 l: float = 0.1,  # noqa: E741 - the authors' name of the game's weight
                 multil: float = 0.01, contr: float = 1.0, tau: float = 0.5, num_samples: int = 32,
                 game: str = "greedy", warm_start: bool = False) -> None:
        self.modalities = check_modalities("modalities", modalities)
        if not callable(fusion):
            raise TypeError("MCR needs the fusion head (a callable on {modality: features})")
        self.fusion = fusion
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.l = check_number("l", l, lo=0.0)
        self.multil = check_number("multil", multil, lo=0.0)
        self.contr = check_number("contr", contr, lo=0.0)
        self.tau = check_number("tau", tau, lo=0.0, lo_open=True)
        self.num_samples = int(check_number("num_samples", num_samples, integer=True, lo=1))
        if game not in GAMES:
            raise ValueError(f"game must be one of {list(GAMES)}, got {game!r}")
        self.game = game
        self.warm_start = bool(warm_start)
        #: the trainer starts the encoders from the modality-alone runs on a fresh run
        self.loads_alone_encoders = self.warm_start
        self.last: dict[str, Tensor] = {}

    def loss(self, logits: Tensor, labels: Tensor, *, head_logits=None, sample_keep=None, features=None):
        """``CE + multil·ΣCE_u + l·L_game + contr·L_con``; terms: the heads' CEs and ``mcr_game``/``mcr_contr``."""
        if features is None:
            raise ValueError("MCR.loss needs features= (the encoders' outputs)")
        heads = require_head_logits("MCR", self.modalities, head_logits)
        fused = cross_entropy(logits, labels, sample_keep)
        terms: dict[str, Tensor] = {FUSED: fused}
        total = fused
        for u in self.modalities:
            terms[u] = cross_entropy(heads[u], labels)
            total = total + self.multil * terms[u]
        feats = {u: features[u] for u in self.modalities}
        last: dict[str, Tensor] = {}
        if self.l > 0:
            perms = draw_permutations(labels.shape[0], self.num_samples, self.generator)
            game, divs = game_loss(self.fusion, feats, logits, perms, self.modalities, self.game)
            total = total + self.l * game
            terms["mcr_game"] = game.detach()
            for (k, m), j in divs.items():
                if k == m or k is None:
                    last[f"mcr_jsd/{m}"] = j.detach()
        if self.contr > 0:
            con = supervised_nt_xent([feats[u].flatten(1) for u in self.modalities], labels, self.tau)
            total = total + self.contr * con
            terms["mcr_contr"] = con.detach()
        self.last = last
        return total, terms

    def state_dict(self) -> dict:
        return {"modalities": list(self.modalities), "generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state.get("modalities", [])) != list(self.modalities):
            raise ValueError(f"MCR state is for modalities {state.get('modalities')}, this one has "
                             f"{list(self.modalities)}")
        self.generator.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).cpu())

    def trace_row(self) -> dict:
        return dict(self.last)

    def __repr__(self) -> str:
        return (f"MCR(modalities={list(self.modalities)}, l={self.l}, multil={self.multil}, contr={self.contr}, "
                f"tau={self.tau}, num_samples={self.num_samples}, game={self.game!r}, "
                f"warm_start={self.warm_start})")


__all__ = ["MCR", "draw_permutations", "game_loss", "game_signs", "js_divergence",
           "permuted_inputs", "supervised_nt_xent"]
