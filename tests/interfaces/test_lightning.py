"""The Lightning callback modulates after backward, before the optimizer step."""

import pytest
import torch
from torch import nn

L = pytest.importorskip("lightning", reason="the lightning extra is not installed")

from ogmge import OGMGE  # noqa: E402
from ogmge.interfaces.lightning import OGMGECallback  # noqa: E402


class TwoStream(L.LightningModule):
    def __init__(self, mode="OGM"):
        super().__init__()
        self.a = nn.Conv1d(2, 3, 3)
        self.v = nn.Conv1d(2, 3, 3)
        self.head = nn.Linear(6, 4)
        self.ogmge = OGMGE({"audio": self.a, "visual": self.v}, mode=mode, alpha=0.8)

    def training_step(self, batch, _):
        x, y = batch
        fa, fv = self.a(x).mean(-1), self.v(x * 0.05).mean(-1)
        out = self.head(torch.cat([fa, fv], 1))
        w, b = self.head.weight, self.head.bias
        logits = {"audio": fa @ w[:, :3].t() + b / 2, "visual": fv @ w[:, 3:].t() + b / 2}
        self.ogmge.accumulate({k: t.detach() for k, t in logits.items()}, y)
        return nn.functional.cross_entropy(out, y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Capture(L.Callback):
    def __init__(self):
        self.before, self.after = [], []

    def on_after_backward(self, trainer, pl_module):
        self.before.append({k: p.grad.clone() for k, p in pl_module.named_parameters()})

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        self.after.append({k: p.grad.clone() for k, p in pl_module.named_parameters()})


def test_callback_modulates_each_optimizer_step():
    torch.manual_seed(0)
    x = torch.randn(16, 2, 10)
    y = torch.arange(16) % 4
    loader = torch.utils.data.DataLoader(list(zip(x, y)), batch_size=8)
    cb, cap = OGMGECallback(), Capture()
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", callbacks=[cb, cap], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(TwoStream(), loader)
    assert len(cap.after) == 2
    k = {n: float(v) for n, v in cb.last_stats.coefficients.items()}
    assert min(k.values()) < 1
    before, after = cap.before[-1], cap.after[-1]
    for name, mod in (("audio", "a"), ("visual", "v")):
        torch.testing.assert_close(after[f"{mod}.weight"], k[name] * before[f"{mod}.weight"], rtol=1e-6, atol=0)
        assert torch.equal(after[f"{mod}.bias"], before[f"{mod}.bias"])
    assert torch.equal(after["head.weight"], before["head.weight"])


def test_missing_modulator_is_a_clear_error():
    class Bare(TwoStream):
        def __init__(self):
            super().__init__()
            del self.ogmge

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.head(torch.cat([self.a(x).mean(-1), self.v(x).mean(-1)], 1)), y)

    loader = torch.utils.data.DataLoader(list(zip(torch.randn(8, 2, 10), torch.arange(8) % 4)), batch_size=8)
    trainer = L.Trainer(max_epochs=1, accelerator="cpu", callbacks=[OGMGECallback()], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(AttributeError, match="pl_module.ogmge"):
        trainer.fit(Bare(), loader)


def test_checkpoint_carries_the_noise_stream(tmp_path):
    """Resuming from a Lightning checkpoint continues the GE noise stream."""
    x = torch.randn(16, 2, 10, generator=torch.Generator().manual_seed(0))
    y = torch.arange(16) % 4

    def loader():
        return torch.utils.data.DataLoader(list(zip(x, y)), batch_size=8)

    def trainer(epochs, cb):
        return L.Trainer(max_epochs=epochs, accelerator="cpu", callbacks=[cb], logger=False,
                         default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False,
                         enable_checkpointing=True)

    torch.manual_seed(0)
    full = TwoStream(mode="OGM_GE")
    trainer(2, OGMGECallback()).fit(full, loader())

    torch.manual_seed(0)
    first = TwoStream(mode="OGM_GE")
    t1 = trainer(1, OGMGECallback())
    t1.fit(first, loader())
    ckpt = tmp_path / "one.ckpt"
    t1.save_checkpoint(ckpt)
    resumed = TwoStream(mode="OGM_GE")
    resumed.ogmge.generators.get("cpu").manual_seed(12345)  # a different stream unless restored
    trainer(2, OGMGECallback()).fit(resumed, loader(), ckpt_path=ckpt)
    for (name, p), (_, q) in zip(full.named_parameters(), resumed.named_parameters()):
        assert torch.equal(p, q), name
