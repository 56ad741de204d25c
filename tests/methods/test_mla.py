"""MLA: its pieces (entropy weights, projector, shared head), its options, and training by name
on three-modality bring-your-own data through the CLI, with evaluation and exact resume."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from ogmge.methods import MLA, SharedHead, get
from ogmge.methods.mla import (
    entropy_fusion,
    entropy_weights,
    project_grad_,
    projector_update,
    released_alpha,
)
from ogmge.models.classifier import ModelOutput
from ogmge.training import load_checkpoint_file, load_run, train
from ogmge.training.factory import build_model_from_config
from support.byo_three import evaluates, results, three_modality_npz, train_cli
from support.training_standins import generic_model, resumed_equals_uninterrupted, tiny_config


# ------------------------------------------------------------------------------- pieces
def test_entropy_weights_are_per_sample_on_the_simplex_and_favour_the_confident_modality():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 4, generator=g, dtype=torch.float64)
    logits[1, 2] = torch.tensor([9.0, 0.0, 0.0, 0.0], dtype=torch.float64)  # modality 1 confident on sample 2
    w = entropy_weights(logits)
    assert w.shape == (3, 7)
    torch.testing.assert_close(w.sum(0), torch.ones(7, dtype=torch.float64))
    assert int(w[:, 2].argmax()) == 1
    # per sample: a sample's weights do not depend on the rest of the batch
    torch.testing.assert_close(entropy_weights(logits[:, 2:3])[:, 0], w[:, 2])
    # = softmax over the modalities of minus the entropy
    logp = torch.log_softmax(logits, -1)
    torch.testing.assert_close(w, torch.softmax((logp.exp() * logp).sum(-1), 0))


def test_entropy_fusion_of_equal_outputs_is_that_output():
    o = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(entropy_fusion({"a": o, "b": o.clone()}), o)


def test_projector_update_is_symmetric_unit_norm_and_nearly_annihilates_the_mean_input():
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, generator=g, dtype=torch.float64)
    P = projector_update(torch.eye(6, dtype=torch.float64), s, 1e-8)
    torch.testing.assert_close(P, P.t())
    assert abs(float(torch.linalg.matrix_norm(P)) - 1.0) < 1e-12
    assert float((P @ s).norm()) < 1e-6 * float(s.norm())
    u = torch.randn(6, generator=g, dtype=torch.float64)
    u = u - (u @ s) / (s @ s) * s  # orthogonal to s: kept, up to the norm's scale
    torch.testing.assert_close(P @ u, u / float(torch.linalg.matrix_norm(torch.eye(6) - torch.outer(s, s) / (s @ s))),
                               rtol=1e-6, atol=1e-9)


def test_project_grad_replaces_the_gradient():
    w = nn.Parameter(torch.zeros(2, 3, dtype=torch.float64))
    w.grad = torch.arange(6, dtype=torch.float64).reshape(2, 3)
    P = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 0.5]], dtype=torch.float64)
    expected = w.grad @ P.t()
    project_grad_(w, P)
    torch.testing.assert_close(w.grad, expected)


def test_released_alpha_schedule():
    assert released_alpha(0, 10) == pytest.approx(0.1)
    assert released_alpha(5, 10) == pytest.approx(0.1 ** 1.5)


def test_shared_head_maps_only_the_modalities_whose_size_differs():
    head = SharedHead({"a": 8, "b": 5, "c": 8}, 3)
    assert head.dim == 8 and set(head.proj) == {"b"} and head.shared.in_features == 8
    head = SharedHead({"a": 8, "b": 5}, 3, dim=5)
    assert set(head.proj) == {"a"}
    x = {"a": torch.randn(4, 8), "b": torch.randn(4, 5)}
    parts = head.linear_split(x)
    torch.testing.assert_close(parts["b"], head.shared(x["b"]))
    torch.testing.assert_close(head(x), entropy_fusion(parts))
    with pytest.raises(KeyError, match="missing features"):
        head({"a": x["a"]})


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="option dim"):
        MLA.resolve_options({"dim": 0})
    with pytest.raises(ValueError, match="option as_released"):
        MLA.resolve_options({"as_released": "no"})
    with pytest.raises(ValueError, match="has no option 'alpha'"):
        MLA.resolve_options({"alpha": 0.1})
    with pytest.raises(TypeError, match="SharedHead"):
        MLA(nn.Linear(3, 3))  # type: ignore[arg-type]


def test_declarations():
    cls = get("mla")
    assert cls is MLA and cls.owns_step and cls.ddp == "refused" and cls.ddp_reason
    assert cls.min_modalities == 2 and cls.max_modalities is None


# ------------------------------------------------------------------------------- one step
class _Model(nn.Module):
    def __init__(self, dims):
        super().__init__()
        self.encoders = nn.ModuleDict({m: nn.Linear(d, d) for m, d in dims.items()})
        self.fusion = SharedHead(dims, 3)

    def forward(self, x):
        f = {m: e(x[m]) for m, e in self.encoders.items()}
        return ModelOutput(logits=self.fusion(f), modality_logits={}, features=f)


def _step(as_released, dims=None):
    from ogmge.methods import StepTools

    torch.manual_seed(0)
    dims = dims or {"a": 4, "b": 6, "c": 4}
    model = _Model(dims)
    calls = []
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    method = MLA(model.fusion, as_released=as_released)
    tools = StepTools(forward=lambda b: model(b["inputs"]), loss=None,  # type: ignore[arg-type]
                      backward=lambda total, terms: total.backward(), guard=lambda total: None,
                      optimizer_step=lambda skip: (calls.append(1), opt.step()),
                      zero_grad=lambda: opt.zero_grad(set_to_none=True))
    method.begin_epoch(0, train_size=16)
    x = {m: torch.randn(8, d) for m, d in dims.items()}
    y = torch.arange(8) % 3
    _, total, terms, skip = method.train_step({"inputs": x, "labels": y}, tools, epoch=0)
    return model, method, calls, terms, skip


def test_one_optimizer_step_per_modality_and_projection_only_when_not_as_released():
    model, method, calls, terms, skip = _step(False)
    assert len(calls) == 3 and method.count == 3 and skip is None
    assert set(terms) == {"fused", "a", "b", "c"}
    assert method.P is not None and method.P.shape == (6, 6)  # the head's size: the largest feature size
    assert set(model.fusion.proj) == {"a", "c"}
    _, released, _, _, _ = _step(True)
    assert released.P is None and released.count == 3
    state = method.state_dict()
    fresh = MLA(model.fusion)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.P, method.P) and fresh.count == 3
    with pytest.raises(ValueError, match="unknown keys"):
        fresh.load_state_dict({"Q": 1})


# ------------------------------------------------------------------------------- through the trainer
def test_cli_trains_mla_on_three_byo_modalities_and_evaluates(tmp_path, capsys):
    path = three_modality_npz(tmp_path)
    run = tmp_path / "mla"
    assert train_cli(path, "mla", run, epochs=2) == 0
    assert results(run)["method"] == "mla" and results(run)["modalities"] == ["a", "b", "c"]
    trace = load_run(run).trace()
    assert all({"mla_loss/a", "mla_loss/b", "mla_loss/c"} <= set(t) for t in trace)
    state = load_checkpoint_file(run / "last.pt")["method"]
    assert state["count"] % 3 == 0 and state["count"] >= 3 * 2  # three optimizer steps per batch
    assert state["P"] is not None and state["P"].shape == (8, 8)
    capsys.readouterr()
    assert evaluates(run / "best.pt")


def test_the_model_predicts_with_the_entropy_weighted_shared_head(tmp_path):
    cfg = tiny_config(tmp_path, method="mla", model_options={"hidden": 8, "out_dim": 8})
    from support.training_standins import tiny_bundle

    bundle = tiny_bundle()
    model = build_model_from_config(cfg, bundle.modalities, bundle.num_classes, builder="generic")[0].eval()
    assert isinstance(model.fusion, SharedHead)
    x = {m: torch.stack([bundle.train[i]["inputs"][m] for i in range(6)]) for m in model.modalities}
    with torch.no_grad():
        out = model(x)
        feats = model.encode(x)
    expected = entropy_fusion({m: model.fusion.shared(feats[m]) for m in model.modalities})
    torch.testing.assert_close(out.logits, expected)


def test_interrupted_and_resumed_equals_uninterrupted(tmp_path):

    def cfg(where):
        return tiny_config(where, method="mla", model_options={"hidden": 8, "out_dim": 8})

    _, _, a, b = resumed_equals_uninterrupted(cfg, tmp_path, model=generic_model)
    assert torch.equal(a["method"]["P"], b["method"]["P"]) and a["method"]["count"] == b["method"]["count"]


def test_blend_prediction_pools_the_shared_heads_outputs_with_weights_fitted_on_validation(tmp_path):
    from ogmge.methods.mla import SharedHeadView
    from support.training_standins import tiny_bundle

    cfg = tiny_config(tmp_path, method="mla", prediction="blend", epochs=2,
                      model_options={"hidden": 8, "out_dim": 8})
    result = train(cfg, datasets=tiny_bundle(), model=generic_model)
    results = json.loads((result.run_dir / "results.json").read_text())
    assert results["val_protocol"] == "cross-fit"
    row = load_run(result.run_dir).metrics[-1]
    assert {"blend_w/fused", "blend_w/a", "blend_w/b"} <= set(row)
    ck = load_checkpoint_file(result.run_dir / "last.pt")
    assert not any(k.startswith("heads.") for k in ck["model"])  # the views hold no weights
    model = generic_model(tiny_bundle(), cfg)
    assert all(isinstance(h, SharedHeadView) for h in model.heads.values())
    f = torch.randn(4, 8)
    torch.testing.assert_close(model.heads["b"](f), model.fusion.shared(f))
    assert {id(p) for p in model.parameters()} == {id(p) for p in model.fusion.parameters()} | {
        id(p) for p in model.encoders.parameters()} | {id(p) for p in model.estimator.parameters()} | {
        id(p) for p in model.parts.parameters()}


def test_wrap_heads_is_a_generic_hook_the_factory_applies(tmp_path):
    """A method's ``wrap_heads`` replaces the model's per-modality heads (default: unchanged)."""
    from ogmge.methods import BalancingMethod, register
    from support.training_standins import tiny_bundle

    class _Doubled(nn.Module):
        def __init__(self, head):
            super().__init__()
            self.inner = head

        def forward(self, x):
            return 2 * self.inner(x)

    @register
    class WrapHeadsProbe(BalancingMethod):
        """A test method whose heads are doubled."""

        name = "wrap_heads_probe"
        needs_heads = True

        @classmethod
        def wrap_heads(cls, heads, fusion, **options):
            return nn.ModuleDict({m: _Doubled(h) for m, h in heads.items()})

    from ogmge.methods import registry

    bundle = tiny_bundle()
    try:
        model = generic_model(bundle, tiny_config(tmp_path, method="wrap_heads_probe",
                                              model_options={"hidden": 8, "out_dim": 8}))
    finally:
        registry._REGISTRY.pop(WrapHeadsProbe.name, None)  # keep the registry as the other tests see it
    assert all(isinstance(h, _Doubled) for h in model.heads.values())
    plain = generic_model(bundle, tiny_config(tmp_path, method="multitask", model_options={"hidden": 8, "out_dim": 8}))
    assert all(isinstance(h, nn.Linear) for h in plain.heads.values())
