"""Lightning integration: OGM-GE as a callback, the training step unchanged.

Accumulate scores in ``training_step`` with the module's modulator; the
callback applies the modulation in ``on_before_optimizer_step``, which
Lightning calls after backward and after mixed-precision unscaling, before
gradient clipping and the optimizer step — the place the method needs. With
``accumulate_grad_batches > 1`` scores of every micro-batch count and the
modulation runs once per optimizer step::

    class Model(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = build_paper_model(num_classes=6)
            self.ogmge = OGMGE(self.net.encoders, mode="OGM_GE", alpha=0.8)

        def training_step(self, batch, _):
            out = self.net(batch["inputs"], labels=batch["labels"])
            self.ogmge.accumulate(out.modality_logits, batch["labels"])
            return F.cross_entropy(out.logits, batch["labels"])

    L.Trainer(callbacks=[OGMGECallback()]).fit(Model(), loader)
"""

from __future__ import annotations

from lightning.pytorch.callbacks import Callback

from ogmge.modulation import OGMGE, ModulationStats


class OGMGECallback(Callback):
    """Apply ``OGMGE.apply_`` once per optimizer step and log its statistics.

    ``modulator``: the modulator, or None to use ``pl_module.<attribute>``.
    ``log_stats``: log scores, ratios and coefficients as ``ogmge/...``.
    """

    def __init__(self, modulator: OGMGE | None = None, *, attribute: str = "ogmge", log_stats: bool = True):
        super().__init__()
        self.modulator = modulator
        self.attribute = attribute
        self.log_stats = log_stats
        self.last_stats: ModulationStats | None = None
        self._resolved: OGMGE | None = modulator
        self._pending_state: dict | None = None

    def _modulator(self, pl_module) -> OGMGE:
        mod = self.modulator if self.modulator is not None else getattr(pl_module, self.attribute, None)
        if not isinstance(mod, OGMGE):
            raise AttributeError(
                f"OGMGECallback needs an OGMGE: pass modulator= or set pl_module.{self.attribute}"
            )
        self._resolved = mod
        if self._pending_state:
            mod.load_state_dict(self._pending_state)
            self._pending_state = None
        return mod

    def setup(self, trainer, pl_module, stage: str) -> None:
        if stage == "fit":
            self._modulator(pl_module)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.last_stats = stats = self._modulator(pl_module).apply_(epoch=trainer.current_epoch)
        if self.log_stats:
            values = {}
            for key, table in (("score", stats.scores), ("ratio", stats.ratios), ("coeff", stats.coefficients)):
                values.update({f"ogmge/{key}/{name}": v.detach() for name, v in table.items()})
            pl_module.log_dict(values, on_step=True, on_epoch=False)

    def state_dict(self) -> dict:
        """The modulator's noise streams, saved in Lightning checkpoints."""
        return self._resolved.state_dict() if self._resolved is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        if not state_dict:
            return
        if self._resolved is not None:
            self._resolved.load_state_dict(state_dict)
        else:
            self._pending_state = state_dict
