"""Sample-/modality-level valuation (``valuate``): its pieces, its options, the tags that carry
an epoch's re-sampled copies to ``transform_features``, training by name on three bring-your-own
modalities through the CLI, evaluation, and exact resume across an epoch boundary."""

from __future__ import annotations

import pytest
import torch

from ogmge import methods
from ogmge.data.collate import collate_samples
from ogmge.data.views import TaggedRows
from ogmge.methods import BuildContext
from ogmge.methods.valuate import (
    Valuate,
    keep_only,
    masked_correct,
    modality_copies,
    modality_values,
    resample_plan,
    sample_copies,
)
from ogmge.training import Trainer, load_run
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.training_standins import (
    TinyDataset,
    metric_rows,
    resumed_equals_uninterrupted,
    tiny_bundle,
    tiny_config,
)


class Head(torch.nn.Module):
    """``logits = Σ_u x_u @ W_u`` with fixed weights: class = which modality's first entry is set."""

    def __init__(self, names):
        super().__init__()
        self.names = names
        self.w = torch.nn.Parameter(torch.zeros(2, 2), requires_grad=False)

    def forward(self, feats):
        return sum(feats[u] for u in self.names)


# ------------------------------------------------------------------------------- pieces
def test_masked_correct_zeroes_the_left_out_modalities():
    names = ("a", "b")
    head = Head(names)
    # sample 0: a says class 0, b says class 1 (fused: tie -> argmax 0); sample 1: only b speaks (class 1)
    feats = {"a": torch.tensor([[1.0, 0.0], [0.0, 0.0]]), "b": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    got = masked_correct(head, feats, torch.tensor([0, 1]), names)
    # columns: ∅, {a}, {b}, {a,b}
    assert got.tolist() == [[False, True, False, True], [False, False, True, True]]


def test_two_modality_values_are_the_released_formula():
    # every combination of (v_a, v_v, v_all): contrib_a = (v_a + 2·c_all − v_v) / 2
    rows = []
    for ca, cv, call in [(a, v, f) for a in (0, 1) for v in (0, 1) for f in (0, 1)]:
        rows.append([False, bool(ca), bool(cv), bool(call)])
    phi = modality_values(torch.tensor(rows))
    for (_, ca, cv, call), (pa, pv) in zip(rows, phi.tolist()):
        assert pa == (ca + 2 * call - cv) / 2 and pv == (cv + 2 * call - ca) / 2


def test_values_are_efficient_for_every_n():
    g = torch.Generator().manual_seed(0)
    for n_mod in range(2, 7):
        correct = torch.rand(50, 2 ** n_mod, generator=g) < 0.5
        correct[:, 0] = False
        phi = modality_values(correct)
        torch.testing.assert_close(phi.sum(1), n_mod * correct[:, -1].double(), rtol=0, atol=1e-12)


def test_copies_by_contribution_and_the_plan():
    c = torch.tensor([[-0.5, 1.5], [0.0, 1.0], [0.5, 0.4], [-0.1, 0.9999]], dtype=torch.float64)
    copies = sample_copies(c)
    assert copies.tolist() == [[3, 0], [2, 0], [1, 2], [2, 1]]
    indices, tags = resample_plan(copies)
    assert indices.tolist() == [0, 1, 2, 3, 0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3]
    assert tags.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 2, 2, 1, 1, 2]


def test_modality_copies_go_to_the_larger_gaps():
    assert modality_copies([0.5, 1.0], 300, 1.0) == [100, 0]
    assert modality_copies([1.0, 0.25], 300, 2.0) == [0, 300]
    assert modality_copies([0.7, 0.7], 300, 1.0) == [0, 0]
    assert modality_copies([1.0, 0.7, 0.4], 100, 1.0) == [0, 20, 40]


def test_keep_only_masks_the_other_modalities_per_tag():
    feats = {u: torch.ones(4, 3) * (k + 1) for k, u in enumerate("abc")}
    out = keep_only(feats, torch.tensor([0, 1, 2, 3]), "abc")
    assert out["a"][:, 0].tolist() == [1, 1, 0, 0]
    assert out["b"][:, 0].tolist() == [2, 0, 2, 0]
    assert out["c"][:, 0].tolist() == [3, 0, 0, 3]


def _ctx(names=("a", "b")):
    return BuildContext(modalities=names, feature_dims={u: 2 for u in names}, num_classes=2, fusion=Head(names))


def test_warmup_returns_none_then_a_tagged_plan():
    method = Valuate.build(_ctx(), warmup=2)
    calls = []

    def outputs(*, index=None, features=False):
        calls.append((index, features))
        return {"features": {"a": torch.eye(2), "b": torch.zeros(2, 2)}, "labels": torch.tensor([0, 1])}

    assert method.begin_epoch(1, train_size=2, outputs=outputs) is None and not calls
    assert method.epoch_row() == {}
    indices, tags = method.begin_epoch(2, train_size=2, outputs=outputs)
    # sample 0: a, b (zero logits: argmax 0) and both right: φ = (1, 1), no copy;
    # sample 1: a and both right, b wrong: φ_a = (1 + 2 − 0)/2 = 1.5, φ_b = (0 + 2 − 1)/2 = 0.5: one b copy
    assert calls == [(None, True)]
    assert indices.tolist() == [0, 1, 1] and tags.tolist() == [0, 0, 2]
    row = method.epoch_row()
    assert row["valuate_contrib/a"] == 1.25 and row["valuate_contrib/b"] == 0.75
    assert row["valuate_copies/a"] == 0.0 and row["valuate_copies/b"] == 1.0 and row["valuate_epoch_size"] == 3


def test_options_and_refusals_name_the_cause():
    cls = methods.get("valuate")
    for key, bad in (("level", "batch"), ("part", 0.0), ("part", 1.5), ("warmup", -1), ("alpha", -1.0)):
        with pytest.raises(ValueError, match=f"option {key}"):
            cls.resolve_options({key: bad})
    with pytest.raises(ValueError, match="at most 6"):
        Valuate(tuple("abcdefg"), Head(tuple("abcdefg")))
    with pytest.raises(ValueError, match="fusion head"):
        Valuate.build(BuildContext(modalities=("a", "b")))
    with pytest.raises(ValueError, match="two or more"):
        Valuate(("a",), Head(("a",)))
    method = Valuate.build(_ctx())
    with pytest.raises(ValueError, match="modalities"):
        method.load_state_dict({"modalities": ["x", "y"], "level": "sample"})


# ------------------------------------------------------------------------------- the data path of tags
def test_tags_follow_their_samples_through_the_view_and_collate():
    ds = TinyDataset(5, 0)
    view = TaggedRows(ds, [0, 0, 3], [0, 2, 1])
    batch = collate_samples(view.__getitems__([0, 1, 2]))
    assert batch["tag"].tolist() == [0, 2, 1] and batch["labels"].tolist() == [0, 0, 0]
    assert view[1]["tag"] == 2 and "tag" not in ds[0]
    with pytest.raises(ValueError, match="one tag per index"):
        TaggedRows(ds, [0, 1], [0])


def test_tagged_rows_keep_a_batched_fetch_s_buffers():
    from ogmge.data.collate import BufferedSamples, batch_buffers

    class Buffered(TinyDataset):
        def __getitems__(self, rows):
            bufs = batch_buffers(len(rows), {"a": ((6,), torch.float32), "b": ((6,), torch.float32)})
            for k, i in enumerate(rows):
                bufs["a"][k], bufs["b"][k] = self.a[i], self.b[i]
            return BufferedSamples([{"inputs": {"a": bufs["a"][k], "b": bufs["b"][k]}, "label": int(self.labels[i])}
                                    for k, i in enumerate(rows)], bufs)

    ds = Buffered(6, 0)
    got = TaggedRows(ds, [5, 2, 2], [1, 0, 2]).__getitems__([0, 1, 2])
    assert isinstance(got, BufferedSamples) and [s["tag"] for s in got] == [1, 0, 2]
    batch = collate_samples(got)
    assert batch["inputs"]["a"] is got.buffers["a"] and torch.equal(batch["inputs"]["a"][0], ds.a[5])
    assert batch["tag"].tolist() == [1, 0, 2]


def test_the_loop_hands_each_batch_its_tags(tmp_path):
    cfg = tiny_config(tmp_path, method={"name": "valuate", "warmup": 0}, out=None,
                      model_options={"builder": "generic", "hidden": 8, "out_dim": 8})
    trainer = Trainer(cfg, datasets=tiny_bundle())
    trainer._begin_epoch(0)
    seen = []
    original = trainer.method.transform_features

    def spy(features, **kw):
        seen.append(kw.get("tags"))
        return original(features, **kw)

    trainer.method.transform_features = spy
    trainer.train_sampler.set_epoch(0)
    batch = next(iter(trainer.train_loader))
    trainer.net.train()
    trainer._train_step(batch, 0)
    assert seen and torch.equal(seen[0].cpu(), batch["tag"])
    assert len(trainer.train_loader.dataset) == int(trainer.method.epoch_row()["valuate_epoch_size"])


def test_a_chain_passes_tags_only_to_the_member_that_made_them():
    chain = methods.get("valuate+mdrop").build(_ctx(), warmup=0, p=0.0)
    outputs = lambda **kw: {"features": {"a": torch.eye(2), "b": torch.zeros(2, 2)}, "labels": torch.tensor([0, 1])}  # noqa: E731
    indices, tags = chain.begin_epoch(0, train_size=2, outputs=outputs)
    feats = {"a": torch.ones(3, 2), "b": torch.ones(3, 2)}
    out = chain.transform_features(feats, tags=torch.tensor([0, 1, 2]))  # mdrop (p=0) takes no tags
    assert out["a"][:, 0].tolist() == [1, 1, 0] and out["b"][:, 0].tolist() == [1, 0, 1]


# ------------------------------------------------------------------------------- training by name
@pytest.mark.parametrize("level", ["sample", "modality"])
def test_cli_trains_on_three_byo_modalities_and_evaluates(tmp_path, level, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / level
    assert train_cli(path, "valuate", run, "--method-opt", "warmup=1", "--method-opt", f"level={level}",
                     epochs=3) == 0
    assert results(run)["method"] == "valuate" and results(run)["modalities"] == ["a", "b", "c"]
    rows = load_run(run).metrics
    assert "valuate_epoch_size" not in rows[0]  # the warm-up epoch trains on the plain split
    originals = set()
    for row in rows[1:]:
        assert {"valuate_contrib/a", "valuate_contrib/b", "valuate_contrib/c", "valuate_copies/c"} <= set(row)
        originals.add(row["valuate_epoch_size"] - sum(row[f"valuate_copies/{u}"] for u in "abc"))
    assert len(originals) == 1  # every epoch: the training split once, plus the copies
    assert any(sum(r[f"valuate_copies/{u}"] for u in "abc") > 0 for r in rows[1:])
    capsys.readouterr()
    assert evaluates(run / "best.pt")


@pytest.mark.parametrize("level", ["sample", "modality"])
def test_interrupted_and_resumed_across_a_resampled_epoch_equals_uninterrupted(tmp_path, level):
    def cfg(where):
        return tiny_config(where, method={"name": "valuate", "warmup": 1, "level": level}, epochs=3,
                           model_options={"builder": "generic", "hidden": 8, "out_dim": 8})

    full, resumed, a, b = resumed_equals_uninterrupted(cfg, tmp_path)  # interrupted after epoch 1, re-sampled
    assert resumed.start_epoch == 2
    assert a["method"] == b["method"]
    rows = metric_rows(full.run_dir)
    assert rows[2]["valuate_epoch_size"] > 48 or level == "modality"
    assert load_run(full.run_dir).trace() == load_run(resumed.run_dir).trace()


def test_the_modality_level_values_only_its_part(tmp_path, monkeypatch):
    """The released script values the whole split and then averages a part (modality_level.py:90-153);
    here the evaluation pass runs over the part only."""
    from ogmge.training import balancing

    sizes = []
    collect = balancing.collect

    def spy(*args, **kw):
        out = collect(*args, **kw)
        sizes.append(len(out["labels"]))
        return out

    monkeypatch.setattr(balancing, "collect", spy)
    cfg = tiny_config(tmp_path, method={"name": "valuate", "warmup": 0, "level": "modality", "part": 0.25},
                      out=None, model_options={"builder": "generic", "hidden": 8, "out_dim": 8})
    trainer = Trainer(cfg, datasets=tiny_bundle())
    trainer._begin_epoch(0)
    assert sizes == [12]  # 25% of the 48 training samples
