"""Chains (``a+b``) and the hooks added with the newer methods: each is forwarded to the member
that uses it, or the pair is refused when the chain is composed, with the reason."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ogmge import methods
from ogmge.methods import AUG, MLA, AUGHead, BalancingMethod, BuildContext, SharedHead
from ogmge.methods.chain import compose
from ogmge.methods.mla import SharedHeadView
from ogmge.models.fusion import ConcatFusion
from ogmge.training import Trainer, load_checkpoint_file, train
from support.training_standins import tiny_bundle, tiny_config

MODEL = {"builder": "generic", "hidden": 8, "out_dim": 8}


def _ctx(**kw):
    return BuildContext(modalities=("a", "b"), feature_dims={"a": 2, "b": 2}, num_classes=3, **kw)


# ------------------------------------------------------------------------- refused at composition
@pytest.mark.parametrize(("name", "reason"), [
    ("aug+mla", r"aug and mla both own the step \(train_step\)"),
    ("aug+mmcosine", r"aug and mmcosine both replace the fusion head \(wrap_fusion\)"),
    ("aug+multitask", "aug runs the step with its own losses .* which multitask's loss would never reach"),
    ("aug+opm", "which opm's loss would never reach"),
    ("mla+valuate", "which valuate's feature transform would never reach"),
    ("mla+mdrop", "which mdrop's feature transform would never reach"),
])
def test_pairs_that_cannot_work_are_refused_with_the_reason(name, reason):
    with pytest.raises(ValueError, match=reason):
        methods.get(name)


class _Plain(BalancingMethod):
    """A member that uses no hook."""

    name = "plain"


def _member(name, **attrs):
    return type(f"M_{name}", (BalancingMethod,), {"name": name, "__doc__": name, **attrs})


def test_two_owners_of_the_heads_the_copies_or_the_epoch_features_are_refused():
    views = classmethod(lambda cls, heads, fusion, **o: heads)
    with pytest.raises(ValueError, match=r"x and y both replace the per-modality heads \(wrap_heads\)"):
        compose([_member("x", wrap_heads=views), _member("y", wrap_heads=views)])
    with pytest.raises(ValueError, match=r"both train copies of the model.*\(trains_copies\)"):
        compose([_member("x", trains_copies=True), _member("y", trains_copies=True)])
    with pytest.raises(ValueError, match=r"both take the epoch's features.*\(wants_epoch_features\)"):
        compose([_member("x", wants_epoch_features=True), _member("y", wants_epoch_features=True)])
    with pytest.raises(ValueError, match="cross-fit their validation fits differently"):
        compose([_member("x", fits_on_validation=True, cross_fit="split"),
                 _member("y", fits_on_validation=True, cross_fit="swap")])


def test_a_step_owner_with_its_own_losses_is_declared_and_chains_with_gradient_methods():
    assert AUG.own_step_losses and MLA.own_step_losses and not methods.get("masam").own_step_losses
    chain = methods.get("aug+ogm_ge")
    assert chain.owns_step and chain.own_step_losses and not methods.get("ogm+opm").own_step_losses


# ------------------------------------------------------------------------- forwarded
def test_the_fusion_and_the_heads_are_the_owners_with_its_options():
    chain = methods.get("ogm_ge+aug")
    opts = chain.resolve_options({"hidden": 5, "merge_weights": "a=1,b=3"})
    head = chain.wrap_fusion(ConcatFusion({"a": 2, "b": 2}, 3), **opts)
    assert isinstance(head, AUGHead) and head.hidden == 5 and head.weights.tolist() == [1.0, 3.0]
    heads = nn.ModuleDict({m: nn.Linear(2, 3) for m in ("a", "b")})
    views = chain.wrap_heads(heads, head, **opts)
    torch.testing.assert_close(views["b"](torch.ones(4, 2)), head.branch("b", torch.ones(4, 2))[0])
    # a member that owns the heads but not the fusion (MLA's views), beside one that owns neither
    partner = _member("partner", predictions=("fused", "blend"))
    mla_chain = compose([partner, MLA])
    shared = SharedHead({"a": 2, "b": 2}, 3)
    assert all(isinstance(v, SharedHeadView) for v in mla_chain.wrap_heads(heads, shared).values())
    assert compose([partner, _Plain]).wrap_heads(heads, shared) is heads


def test_new_parameter_groups_of_a_chained_aug_join_the_optimizer(tmp_path):
    cfg = tiny_config(tmp_path, method={"name": "ogm_ge+aug", "check_every": 1, "tolerance": 0.0},
                      model_options=MODEL, epochs=3)
    trainer = Trainer(cfg, datasets=tiny_bundle())
    n0 = len(trainer.optimizer.param_groups)
    assert isinstance(trainer.model.fusion, AUGHead)  # wrap_fusion reached the member
    trainer.fit()  # train_step reached the member (the chain has none of its own)
    aug = trainer.method.members[1]
    assert len(aug.added) == 2 and len(trainer.optimizer.param_groups) == n0 + 2
    last = load_checkpoint_file(tmp_path / "run" / "last.pt")  # (the trainer's model is the selected epoch's)
    boost = [k for k in last["model"] if k.startswith("fusion.boost.")]
    assert len(boost) == 4 and sorted(n for g in last["optimizer_groups"][n0:] for n in g) == sorted(boost)
    assert last["model"][boost[-1]].abs().max() > 0  # the last layer's bias (zero at its start) trained


def test_the_step_owner_runs_the_step_and_every_members_gradient_hook():
    calls = []

    class Owner(BalancingMethod):
        name = "owner"
        owns_step = True

        def train_step(self, batch, tools, *, epoch):
            calls.append(("step", epoch))
            tools.guard(torch.zeros(()))
            return "out", 0.0, {}, None

    class Watcher(BalancingMethod):
        name = "watcher"

        def after_backward(self, **kw):
            calls.append(("after_backward", kw["epoch"]))

    chain = compose([Watcher, Owner]).build(_ctx())
    guard = lambda total: chain.after_backward(epoch=2)  # noqa: E731  (the loop's guard calls it)
    assert chain.train_step({}, type("T", (), {"guard": staticmethod(guard)})(), epoch=2)[0] == "out"
    assert calls == [("step", 2), ("after_backward", 2)]


def test_epoch_features_copies_features_and_warm_starts_reach_the_members_that_use_them():
    seen = []

    class Feats(BalancingMethod):
        name = "feats"
        wants_epoch_features = True
        subset = 0.25
        needs_features = True

        def start_epoch(self, epoch, *, features, labels):
            seen.append(("start_epoch", self.name, epoch))

        def loss(self, logits, labels, *, head_logits=None, sample_keep=None, features=None):
            seen.append(("features", sorted(features)))
            return super().loss(logits, labels)

    class Copies(BalancingMethod):
        name = "copies"
        trains_copies = True
        depends_on = ("alone",)

        @classmethod
        def build(cls, ctx, **options):
            obj = cls()
            obj.loads_alone_encoders = True  # an object's own setting (e.g. from a warm-start option)
            return obj

        def estimate_from_copies(self, epoch, copies):
            seen.append(("copies", self.name, epoch))

        def start_epoch(self, epoch, *, features, labels):  # not wanted: never called
            seen.append(("start_epoch", self.name, epoch))

    cls = compose([Feats, Copies])
    assert cls.wants_epoch_features and cls.subset == 0.25 and cls.trains_copies and cls.needs_features
    assert cls.depends_on == ("alone",)
    chain = cls.build(_ctx())
    assert chain.loads_alone_encoders and not compose([Feats, _Plain]).build(_ctx()).loads_alone_encoders
    chain.start_epoch(1, features={}, labels=torch.zeros(0))
    chain.estimate_from_copies(1, copies=None)
    chain.loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), features={"a": 1, "b": 2})
    assert seen == [("start_epoch", "feats", 1), ("copies", "copies", 1), ("features", ["a", "b"])]


def test_a_chain_with_a_features_loss_trains_through_the_loop(tmp_path):
    """PMR's loss takes the encoders' features and its start_epoch the epoch's: both through the chain."""
    result = train(tiny_config(tmp_path, method="ogm_ge+pmr", model_options=MODEL, epochs=2), datasets=tiny_bundle())
    assert load_checkpoint_file(result.run_dir / "last.pt")["epoch"] == 1


def test_two_members_that_resample_the_epoch_are_refused_when_it_happens():
    class Sampler(BalancingMethod):
        name = "sampler"

        def begin_epoch(self, epoch, *, train_size, outputs=None):
            return torch.arange(train_size)

    other = _member("other", begin_epoch=Sampler.begin_epoch)
    chain = compose([Sampler, other]).build(_ctx())
    with pytest.raises(ValueError, match=r"sampler and other both re-sample epoch 0's training samples"):
        chain.begin_epoch(0, train_size=4)
    assert torch.equal(compose([Sampler, _Plain]).build(_ctx()).begin_epoch(0, train_size=3), torch.arange(3))
