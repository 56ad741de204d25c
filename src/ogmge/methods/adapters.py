"""``OGMGE`` and ``OPM`` seen through the balancing-method protocol (their own API unchanged).

- :class:`OGMGEMethod` acts after backward: ``after_backward`` is ``OGMGE.step``
  (scores, ratios, coefficients, modulation; measure-only in ``Normal`` mode).
- :class:`OPMMethod` acts on the features before fusion: ``transform_features``
  draws OPM masks from the batch's discrepancy ratios and applies them; the fused
  loss then uses only the samples that kept a modality (``sample_keep``).
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor

from ogmge.modulation import (
    COEFFICIENT_RULES,
    OGMGE,
    OPM,
    SELECTIONS,
    Mode,
    ModulationStats,
    OPMMasks,
    batch_scores,
)
from ogmge.modulation.opm import OPM_RATIOS, OPM_RESCALES, feature_widths

from .base import BalancingMethod
from .registry import Option, Preset, Space, register

#: Where OPM's defaults come from (the TPAMI paper's released code).
_TPAMI = "GeWu-Lab/BML_TPAMI2024 code"
#: Where OGM-GE's defaults come from (the authors' ``main.py``, GeWu-Lab/OGM-GE_CVPR2022).
_OGM_SRC = "GeWu-Lab/OGM-GE_CVPR2022 main.py"
#: The authors' recommendation per dataset (their README: "we recommend alpha=0.1 for VGGSound
#: and alpha=0.8 for CREMA-D"; 0.8 is the option's default).
_OGM_PRESETS = {"vggsound": Preset({"alpha": 0.1}, source="GeWu-Lab/OGM-GE_CVPR2022 README.md:151 (and the "
                                   "VGGSound command, README.md:130)")}
_OGM_SCHEDULE = {"optimizer": "sgd", "lr": 1e-3, "epochs": 100, "batch_size": 64, "lr_decay": "x0.1 at epoch 70",
                 "weight_decay": 1e-4, "source": "GeWu-Lab/OGM-GE_CVPR2022 main.py:33-39, 246"}


def _ogm_options() -> tuple[Option, ...]:
    return (
        Option("alpha", float, 0.8, "strength of the modulation, k = 1 - tanh(alpha * rho) (Eq. 10)",
               low=0.0, low_open=True, source=f"{_OGM_SRC}:43 (required there, no default); 0.8 for CREMA-D, "
               "GeWu-Lab/OGM-GE_CVPR2022 README.md:151 (0.1 for VGGSound: the vggsound preset)",
               space=Space.log_uniform(0.05, 3.0), paper_key="alpha"),
        Option("start_epoch", int, 0, "first modulated epoch (0-based, inclusive)", low=0,
               source=f"{_OGM_SRC}:41", space=Space.int_range(0, 10), paper_key="modulation_starts"),
        Option("end_epoch", int, 50, "last modulated epoch (0-based, inclusive; null: no end)", low=0,
               allow_none=True, source=f"{_OGM_SRC}:42", space=Space.int_range(10, 100),
               paper_key="modulation_ends"),
        Option("select", str, "auto", "which encoder gradients are modulated (auto: conv kernels, else weights)",
               choices=tuple(SELECTIONS), source=f"{_OGM_SRC}:136,143 (len(grad.size()) == 4: conv kernels only)",
               paper_key="modulate_params"),
        Option("coefficient", str, "paper", "the coefficient rule (paper: Eq. 10)", choices=tuple(COEFFICIENT_RULES),
               source="Peng et al., CVPR 2022, Eq. 10", paper_key="coefficient"),
    )


@register
class OGMGEMethod(BalancingMethod):
    """OGM-GE: on-the-fly gradient modulation with generalisation enhancement (an :class:`ogmge.OGMGE`)."""

    name = "ogm_ge"
    paper = "Peng, Wei, Deng, Wang, Hu, 'Balanced Multimodal Learning via On-the-fly Gradient Modulation', CVPR 2022"
    mode: Mode = "OGM_GE"
    options = _ogm_options()
    tie_rank = 2.0
    min_modalities = 1  # with one modality there is nothing to balance: it trains as Normal
    paper_flags = {"modulation": "OGM_GE", "opm": False}
    dataset_presets = _OGM_PRESETS
    authors_schedule = _OGM_SCHEDULE

    @classmethod
    def build(cls, ctx, **options) -> OGMGEMethod:
        """``OGMGE(ctx.encoders, mode=cls.mode, ...)``; GE noise from ``component_seed(seed, "ogmge")``."""
        opts = cls.resolve_options(options)
        if ctx.encoders is None:
            raise ValueError(f"method {cls.name} needs the model's encoders (ctx.encoders)")
        if len(ctx.encoders) < 2:  # one modality: nothing to balance, it trains as Normal
            return BalancingMethod()  # type: ignore[return-value]
        modulator = OGMGE(dict(ctx.encoders), mode=cls.mode, alpha=opts["alpha"], start_epoch=opts["start_epoch"],
                          end_epoch=opts["end_epoch"], select=opts["select"], coefficient=opts["coefficient"],
                          seed=ctx.component_seed("ogmge"), process_group=ctx.process_group)
        return cls(modulator)

    def __init__(self, modulator: OGMGE) -> None:
        if not isinstance(modulator, OGMGE):
            raise TypeError(f"modulator must be an ogmge.OGMGE, got {type(modulator).__name__}")
        self.modulator = modulator
        self.modalities = modulator.modalities
        self.stats: ModulationStats | None = None

    def after_backward(self, *, modality_logits=None, labels=None, epoch=None, sample_weight=None):
        if modality_logits is None or labels is None:
            raise ValueError("OGM-GE needs modality_logits and labels after backward")
        self.stats = self.modulator.step(
            modality_logits={n: modality_logits[n] for n in self.modalities}, labels=labels, epoch=epoch,
            sample_weight=sample_weight,
        )
        return self.stats

    def state_dict(self) -> dict:
        return self.modulator.state_dict()

    def load_state_dict(self, state: Mapping) -> None:
        self.modulator.load_state_dict(state)

    def load_legacy_state(self, legacy: Mapping) -> None:
        if legacy.get("modulator"):
            self.modulator.load_state_dict(legacy["modulator"])

    def trace_row(self) -> dict:
        return {} if self.stats is None else self.stats.to_floats()

    def epoch_row(self) -> dict:
        """Nothing per epoch: the scores, ratios and coefficients are per step (the trace)."""
        return {}

    def current_options(self) -> dict:
        m = self.modulator
        return {"alpha": m.alpha, "start_epoch": m.start_epoch, "end_epoch": m.end_epoch,
                "coefficient": m.coefficient}

    def __repr__(self) -> str:
        return f"OGMGEMethod({self.modulator!r})"


@register
class OGMMethod(OGMGEMethod):
    """OGM: on-the-fly gradient modulation without the generalisation-enhancement noise."""

    name = "ogm"
    mode: Mode = "OGM"
    tie_rank = 1.0
    paper_flags = {"modulation": "OGM", "opm": False}


@register
class OPMMethod(BalancingMethod):
    """OPM: on-the-fly prediction modulation, drops the dominant modality's features (an :class:`ogmge.OPM`)."""

    name = "opm"
    paper = "Wei, Hu, Du, Wen, 'On-the-fly Modulation for Balanced Multimodal Learning', TPAMI 2024"
    options = (
        Option("q_base", float, 0.5, "base drop probability of the dominant modality", low=0.0, high=1.0,
               source=f"{_TPAMI}/main.py:42 (argparse; also scripts/train_opm.sh:5; config.py:52 says 0.4, "
                      "overridden; BalanceBenchmark configs/trainer_config.yaml:85: 0.4)",
               space=Space.uniform(0.1, 0.9), legacy_key="opm_q_base"),
        Option("lam", float, 0.5, "how fast the drop probability grows with the discrepancy ratio", low=0.0,
               source=f"{_TPAMI}/main.py:43, config.py:53", space=Space.uniform(0.0, 2.0), legacy_key="opm_lam"),
        Option("p_exe", float, 0.7, "probability that a batch is modulated at all", low=0.0, high=1.0,
               source=f"{_TPAMI}/main.py:44, config.py:51", space=Space.uniform(0.3, 1.0), legacy_key="opm_p_exe"),
        Option("rescale", str, "shared", "kept features x 1/(1-theta), theta = sum d_u q_u / sum d_u (shared); "
               "per_modality: this project's earlier 1/(1-q_u), for old runs", choices=OPM_RESCALES,
               source=f"{_TPAMI}/models/Classifier.py:39-49", legacy_key="opm_rescale"),
        Option("ratio", str, "mean", "N > 2: rho_u = s_u / mean (or sum) of the other modalities' scores",
               choices=OPM_RATIOS, source="this project, DESIGN §2 (mean; the released code has two modalities); BalanceBenchmark OPM_trainer.py:174-180 (sum, N = 3)",
               legacy_key="opm_ratio"),
        Option("start_epoch", int, 6, "first epoch with OPM (0-based, inclusive; the released warm-up)", low=0,
               source=f"{_TPAMI}/main.py:91 (warm_up = epoch <= 5)", legacy_key="opm_starts"),
        Option("end_epoch", int, None, "last epoch with OPM (0-based, inclusive; null: no end)", low=0,
               allow_none=True, source=f"{_TPAMI}/main.py:91 (no end)", legacy_key="opm_ends"),
    )
    min_modalities = 2
    tie_rank = 3.0
    transforms_features = True
    paper_flags = {"modulation": "Normal", "opm": True}
    authors_schedule = {"optimizer": "adamw", "lr": 5e-5, "epochs": 100, "batch_size": 32,
                        "lr_decay": "x0.1 every 40 epochs", "weight_decay": 0.01,
                        "source": f"{_TPAMI}/config.py:22-29, main.py:267-268"}

    @classmethod
    def build(cls, ctx, **options) -> OPMMethod:
        """``OPM(...)`` with masks from ``component_seed(seed, "opm")``."""
        opts = cls.resolve_options(options)
        return cls(OPM(q_base=opts["q_base"], lam=opts["lam"], p_exe=opts["p_exe"], rescale=opts["rescale"],
                       ratio=opts["ratio"], start_epoch=opts["start_epoch"], end_epoch=opts["end_epoch"],
                       seed=ctx.component_seed("opm")))

    def __init__(self, opm: OPM) -> None:
        if not isinstance(opm, OPM):
            raise TypeError(f"opm must be an ogmge.OPM, got {type(opm).__name__}")
        self.opm = opm
        self.masks: OPMMasks | None = None

    def begin_epoch(self, epoch: int, *, train_size: int, outputs=None) -> None:
        """OPM's window (the released warm-up) follows the trainer's epoch."""
        self.opm.set_epoch(epoch)
        return None

    def transform_features(self, features, *, labels=None, modality_logits=None, baseline=None):
        """Masked, rescaled features; unchanged (no masks drawn) without labels."""
        if labels is None:
            self.masks = None
            return dict(features)
        if modality_logits is None:
            raise ValueError("OPM needs modality_logits to draw its masks")
        ratios = self.opm.ratios(batch_scores(modality_logits, labels))
        first = next(iter(features.values()))
        self.masks = self.opm.sample(ratios, first.shape[0], device=first.device,
                                     widths=feature_widths({n: features[n] for n in ratios}))
        return self.masks.apply(features)

    @property
    def sample_keep(self) -> Tensor | None:
        return None if self.masks is None else self.masks.sample_keep

    def loss(self, logits, labels, *, head_logits=None, sample_keep=None):
        keep = sample_keep if sample_keep is not None else self.sample_keep
        return super().loss(logits, labels, head_logits=head_logits, sample_keep=keep)

    def state_dict(self) -> dict:
        return self.opm.state_dict()

    def load_state_dict(self, state: Mapping) -> None:
        self.opm.load_state_dict(state)

    def load_legacy_state(self, legacy: Mapping) -> None:
        if legacy.get("opm"):
            self.opm.load_state_dict(legacy["opm"])

    def epoch_row(self) -> dict:
        """Nothing per epoch: the masks are per step (the trace)."""
        return {}

    def current_options(self) -> dict:
        return {"q_base": self.opm.q_base, "lam": self.opm.lam, "p_exe": self.opm.p_exe}

    def trace_row(self) -> dict:
        if self.masks is None:
            return {}
        row = {f"opm_q/{n}": float(q) for n, q in self.masks.drop_probabilities.items()}
        row.update({f"opm_keep/{n}": float(k.float().mean()) for n, k in self.masks.keep.items()})
        return row
