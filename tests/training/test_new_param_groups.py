"""The generic ``new_param_groups`` hook: parameters a method starts training mid-run join the
optimizer (at the current learning rate), are recorded by name in checkpoints, and a resumed
run re-adds them in their order before loading the optimizer's state (exact resume)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ogmge.methods import BalancingMethod
from ogmge.training import load_checkpoint_file, train
from support.training_standins import Stop, metric_rows, stop_after, tiny_bundle, tiny_config


class LateParts(BalancingMethod):
    """Fused CE plus a pull on two model parts that start training after epochs 0 and 1."""

    name = "late_parts_example"
    paper = "none (a test)"

    @classmethod
    def model_parts(cls, ctx, **options):
        parts = {"first": nn.Linear(3, 2), "second": nn.Linear(2, 3)}
        for p in parts.values():
            p.requires_grad_(False)
        return parts

    @classmethod
    def build(cls, ctx, **options):
        return cls(ctx.parts)

    def __init__(self, parts) -> None:
        self.parts = dict(parts)
        self.started: list[str] = []
        self._pending: list[dict] = []

    def loss(self, logits, labels, *, head_logits=None, sample_keep=None):
        total, terms = super().loss(logits, labels, head_logits=head_logits, sample_keep=sample_keep)
        pull = sum(((p - 1.0) ** 2).sum() for m in self.parts.values() for p in m.parameters())
        return total + 0.01 * logits.mean() * pull, terms

    def end_epoch(self, epoch, *, train_losses=None, val_losses=None):
        key = ("first", "second")[epoch] if epoch < 2 else None
        if key is not None:
            self.parts[key].requires_grad_(True)
            self.started.append(key)
            self._pending.append({"params": list(self.parts[key].parameters())})

    def new_param_groups(self):
        out, self._pending = self._pending, []
        return out

    def state_dict(self):
        return {"started": list(self.started)}

    def load_state_dict(self, state):
        self.started = list(state["started"])
        for key in self.started:
            self.parts[key].requires_grad_(True)


def cfg(where):
    return tiny_config(where, model_options={"builder": "generic", "hidden": 8, "out_dim": 8}, epochs=4,
                       lr_step=1, lr_gamma=0.5)


def test_groups_added_mid_run_train_at_the_current_lr_and_resume_exactly(tmp_path):
    full = train(cfg(tmp_path / "full"), datasets=tiny_bundle(), method=LateParts)
    last = load_checkpoint_file(full.run_dir / "last.pt")
    names = last["optimizer_groups"]
    assert names[1:] == [["parts.first.weight", "parts.first.bias"], ["parts.second.weight", "parts.second.bias"]]
    groups = last["optimizer"]["param_groups"]
    assert [g["lr"] for g in groups] == [groups[0]["lr"]] * 3  # each joined at the then-current lr
    cut = cfg(tmp_path / "cut")
    with pytest.raises(Stop):
        train(cut, datasets=tiny_bundle(), method=LateParts, callbacks=[stop_after(1)])
    resumed = train(cut, resume=True, datasets=tiny_bundle(), method=LateParts)
    other = load_checkpoint_file(resumed.run_dir / "last.pt")
    for k, v in last["model"].items():
        if torch.is_tensor(v):
            assert torch.equal(v, other["model"][k]), k
    n0 = len(names[0])
    assert set(range(n0, n0 + 4)) <= set(last["optimizer"]["state"])  # the added parameters were stepped
    for i, state in last["optimizer"]["state"].items():
        for key, v in state.items():
            assert torch.equal(torch.as_tensor(v), torch.as_tensor(other["optimizer"]["state"][i][key])), (i, key)
    assert metric_rows(full.run_dir) == metric_rows(resumed.run_dir)
