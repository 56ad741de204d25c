"""Per-modality logit estimators (DESIGN §2): linear split, masking, Shapley, probes."""

import copy
import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from ogmge.models import (
    AttentionFusion,
    ConcatFusion,
    LogitEstimator,
    SumFusion,
    shapley_weights,
)
from support.model_helpers import NUM_CLASSES, tiny_model


def feats(names, batch=5, dim=6, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(batch, dim, generator=g, dtype=dtype) for n in names}


@pytest.mark.parametrize("cls", [ConcatFusion, SumFusion])
@pytest.mark.parametrize("n", [2, 3])
def test_linear_split_sums_to_fused_logits(cls, n):
    names = [f"m{i}" for i in range(n)]
    head = cls(dict.fromkeys(names, 6), 5)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    x = feats(names)
    parts = head.linear_split(x)
    assert (sum(parts.values()) - head(x)).abs().max() <= 1e-5
    head64 = copy.deepcopy(head).double()
    x64 = {k: v.double() for k, v in x.items()}
    assert (sum(head64.linear_split(x64).values()) - head64(x64)).abs().max() <= 1e-12


def test_linear_split_is_the_papers_rule_by_hand():
    head = ConcatFusion({"audio": 2, "visual": 3}, 2)
    x = feats(["audio", "visual"], dim=1)
    x = {"audio": torch.randn(4, 2), "visual": torch.randn(4, 3)}
    w, b = head.fc.weight, head.fc.bias
    parts = head.linear_split(x)
    torch.testing.assert_close(parts["audio"], x["audio"] @ w[:, :2].t() + b / 2, rtol=0, atol=0)
    torch.testing.assert_close(parts["visual"], x["visual"] @ w[:, 2:].t() + b / 2, rtol=0, atol=0)
    head_sum = SumFusion({"audio": 2, "visual": 3}, 2)
    torch.testing.assert_close(head_sum.linear_split(x)["audio"], head_sum.fc["audio"](x["audio"]), rtol=0, atol=0)


def brute_force_shapley(f, names):
    """Textbook formula over all coalitions, one head call per subset."""
    n = len(names)
    out = {}
    for i, u in enumerate(names):
        others = [j for j in range(n) if j != i]
        total = 0
        for k in range(n):
            for s in itertools.combinations(others, k):
                w = math.factorial(k) * math.factorial(n - k - 1) / math.factorial(n)
                total = total + w * (f(set(s) | {i}) - f(set(s)))
        out[u] = total
    return out


@pytest.mark.parametrize("n", [2, 3, 4])
def test_shapley_exact_matches_brute_force_and_is_efficient(n):
    names = [f"m{i}" for i in range(n)]
    head = AttentionFusion(dict.fromkeys(names, 6), 3, d_model=8, heads=2).double()
    x = feats(names, dtype=torch.float64)
    est = LogitEstimator("shapley").bind(head).double().eval()
    out = est(head, x).modality_logits

    def f(subset):
        return head({m: x[m] if j in subset else torch.zeros_like(x[m]) for j, m in enumerate(names)})

    with torch.no_grad():
        phi = brute_force_shapley(f, names)
        empty, full = f(set()), f(set(range(n)))
    for u in names:
        torch.testing.assert_close(out[u], phi[u] + empty / n, rtol=0, atol=1e-10)
    # efficiency: sum_u phi_u = f(all) - f(empty), and so sum_u o_u = f(all)
    assert (sum(phi.values()) - (full - empty)).abs().max() <= 1e-5
    assert (sum(out.values()) - full).abs().max() <= 1e-5


def test_shapley_weights_sum_to_zero_over_subsets_with_and_without():
    w = shapley_weights(3)
    # phi of the constant function is 0; phi of f(S) = [u in S] is 1 for u.
    assert torch.allclose(w.sum(dim=1), torch.zeros(3, dtype=torch.float64), atol=1e-15)
    indicator = torch.tensor([[(s >> u) & 1 for s in range(8)] for u in range(3)], dtype=torch.float64)
    torch.testing.assert_close(w @ indicator.t(), torch.eye(3, dtype=torch.float64))


def test_shapley_equals_linear_split_on_concat_with_zero_baseline():
    names = ["audio", "visual", "text"]
    head = ConcatFusion(dict.fromkeys(names, 6), 5)
    x = feats(names)
    shap = LogitEstimator("shapley").bind(head)(head, x).modality_logits
    lin = LogitEstimator("linear").bind(head)(head, x).modality_logits
    for u in names:
        assert (shap[u] - lin[u]).abs().max() <= 1e-5


def test_shapley_symmetry_for_identical_modalities():
    # two and three modalities through attention; "a" and "b" have identical
    # features, projections and modality embeddings, so the game is symmetric in them
    for names in (["a", "b"], ["a", "b", "c"]):
        att = AttentionFusion(dict.fromkeys(names, 6), 4, d_model=8, heads=2)
        with torch.no_grad():
            att.proj["b"].load_state_dict(att.proj["a"].state_dict())
            att.modality_embedding[1].copy_(att.modality_embedding[0])
        x = feats(names)
        x["b"] = x["a"].clone()
        out = LogitEstimator("shapley").bind(att)(att, x).modality_logits
        assert (out["a"] - out["b"]).abs().max() <= 1e-6
        if "c" in names:
            assert (out["a"] - out["c"]).abs().max() > 1e-3


def test_sampled_shapley_is_within_2_percent_of_exact_for_four_modalities():
    names = ["a", "b", "c", "d"]
    head = AttentionFusion(dict.fromkeys(names, 6), 3, d_model=8, heads=2).double()
    x = feats(names, batch=8, dtype=torch.float64)
    exact = LogitEstimator("shapley").bind(head).double()(head, x).modality_logits
    sampled_est = LogitEstimator("shapley", exact_max=3, permutations=4000, seed=7).bind(head).double()
    sampled = sampled_est(head, x).modality_logits
    with torch.no_grad():
        empty = head({n: torch.zeros_like(v) for n, v in x.items()}) / 4
    e = torch.stack([exact[n] - empty for n in names])  # phi_u
    s = torch.stack([sampled[n] - empty for n in names])
    assert ((s - e).norm() / e.norm()).item() <= 0.02
    # still efficient, per permutation
    assert (sum(sampled.values()) - head(x)).abs().max() <= 1e-10
    # seeded => identical; another seed => different
    again = LogitEstimator("shapley", exact_max=3, permutations=4000, seed=7).bind(head).double()(head, x)
    other = LogitEstimator("shapley", exact_max=3, permutations=4000, seed=8).bind(head).double()(head, x)
    assert torch.equal(again.modality_logits["a"], sampled["a"])
    assert not torch.equal(other.modality_logits["a"], sampled["a"])


def test_masking_is_the_head_with_only_u_present():
    head = AttentionFusion({"a": 6, "b": 6}, 3, d_model=8, heads=2)
    x = feats(["a", "b"])
    out = LogitEstimator("masking").bind(head)(head, x).modality_logits
    with torch.no_grad():
        only_a = head({"a": x["a"], "b": torch.zeros_like(x["b"])})
    torch.testing.assert_close(out["a"], only_a, rtol=1e-6, atol=1e-6)


def test_running_mean_baseline_is_a_saved_buffer_never_the_current_batch():
    model = tiny_model("attention", LogitEstimator("masking", baseline="mean", momentum=0.5))
    est = model.estimator
    assert "estimator.means.mean_audio" in model.state_dict()
    g = torch.Generator().manual_seed(0)
    b1 = {"audio": torch.randn(6, 8, generator=g), "visual": torch.randn(6, 8, generator=g)}
    b2 = {"audio": torch.randn(6, 8, generator=g) + 3, "visual": torch.randn(6, 8, generator=g)}
    model.train()
    with torch.no_grad():
        f1 = model.encode(b1)
        model(b1)  # estimated with zeros, then initialises the mean
        torch.testing.assert_close(est.means.mean_audio, f1["audio"].mean(0))
        f2 = model.encode(b2)
        out2 = model(b2)
        # batch 2 was estimated with batch 1's mean, not its own
        only_a = model.fusion({"audio": f2["audio"], "visual": f1["visual"].mean(0).expand(6, -1)})
        torch.testing.assert_close(out2.modality_logits["audio"], only_a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(est.means.mean_audio, 0.5 * f1["audio"].mean(0) + 0.5 * f2["audio"].mean(0))
    # eval: no update, and the estimate does not depend on the batch composition
    model.eval()
    before = est.means.mean_audio.clone()
    with torch.no_grad():
        full = model(b2).modality_logits["audio"]
        first_two = model({k: v[:2] for k, v in b2.items()}).modality_logits["audio"]
    assert torch.equal(est.means.mean_audio, before)
    torch.testing.assert_close(full[:2], first_two, rtol=1e-5, atol=1e-6)
    # saved and restored with the model
    clone = tiny_model("attention", LogitEstimator("masking", baseline="mean"))
    clone.load_state_dict(model.state_dict())
    assert torch.equal(clone.estimator.means.mean_audio, est.means.mean_audio)


@pytest.mark.parametrize("fusion", ["concat", "film", "attention"])
def test_probe_heads_leave_main_gradients_bit_identical(fusion):
    torch.manual_seed(3)
    base = tiny_model(fusion, "masking")
    with_probe = tiny_model(fusion, "probe")
    missing, unexpected = with_probe.load_state_dict(base.state_dict(), strict=False)
    assert unexpected == [] and all(k.startswith("estimator.probes") for k in missing)
    g = torch.Generator().manual_seed(0)
    x = {"audio": torch.randn(8, 8, generator=g), "visual": torch.randn(8, 8, generator=g)}
    y = torch.randint(0, NUM_CLASSES, (8,), generator=g)
    out_a = base(x, labels=y)
    F.cross_entropy(out_a.logits, y).backward()
    out_b = with_probe(x, labels=y)
    assert out_b.probe_loss is not None and out_b.probe_loss.item() > 0
    (F.cross_entropy(out_b.logits, y) + out_b.probe_loss).backward()
    main_b = dict(with_probe.named_parameters())
    for name, p in base.named_parameters():
        assert torch.equal(p.grad, main_b[name].grad), name
    probe_grads = [p.grad for n, p in with_probe.named_parameters() if n.startswith("estimator.probes")]
    assert len(probe_grads) == 4 and all(g.abs().sum() > 0 for g in probe_grads)
    # probe logits are what the estimator reports, detached
    torch.testing.assert_close(out_b.modality_logits["audio"], with_probe.estimator.probes["audio"](out_b.features["audio"]).detach())
    assert not out_b.modality_logits["audio"].requires_grad


def test_estimator_switch_validates():
    with pytest.raises(ValueError, match="estimator must be one of"):
        LogitEstimator("gradcam")
    with pytest.raises(ValueError, match="baseline"):
        LogitEstimator("shapley", baseline="batch_mean")
    with pytest.raises(ValueError, match="linear"):
        tiny_model("film", "linear")
    with pytest.raises(ValueError, match="permutations"):
        LogitEstimator("shapley", permutations=0)
