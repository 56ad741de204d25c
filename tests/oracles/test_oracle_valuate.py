"""Sample-/modality-level valuation (Wei, Feng, Wang, Hu, CVPR 2024): one epoch's re-sampling plan
and one masked training step, re-derived from the paper's equations and the authors' released rules
in float64, independently of ``ogmge.methods.valuate``.

The oracle's Shapley values average the marginal value ``v(P_<u ∪ {u}) − v(P_<u)`` over all N!
orderings of the modalities (the definition), with ``v(S) = |S|·1[head on S predicts y]`` and the
head's masked logits written as ``W·[x_S; 0] + b`` from the concat head's weights; for two
modalities also the authors' ``(v_a + v_all − v_v)/2`` with ``v_all ∈ {0, 2}``
(``code/sample_level.py:110-118``). Copies follow the released if-chains
(``code/datasets/dataloader.py:154-186`` and ``:297-316``). Tolerance, fixed before any comparison:
rtol 1e-6 on the step's loss and updated weights; the plans are integers and compared exactly.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import torch

from ogmge.contracts import ModalitySpec
from ogmge.methods.valuate import Valuate
from ogmge.models import build_model

C = 3


def setup(names, n=60, seed=0):
    torch.manual_seed(seed)
    specs = {u: ModalitySpec(u, "vector", (4,)) for u in names}
    model = build_model(specs, num_classes=C, fusion="concat").double()
    g = torch.Generator().manual_seed(seed + 1)
    feats = {u: torch.randn(n, model.fusion.in_dims[u], generator=g, dtype=torch.float64) for u in names}
    labels = torch.randint(0, C, (n,), generator=g)
    return model, feats, labels


def oracle_logits(model, feats, keep, names):
    """``W·[x_u if u in keep else 0 ...] + b`` (float64), the concat head written out."""
    w, b = model.fusion.fc.weight.detach(), model.fusion.fc.bias.detach()
    x = torch.cat([feats[u] if u in keep else torch.zeros_like(feats[u]) for u in names], dim=1)
    return x @ w.T + b


def oracle_contributions(model, feats, labels, names):
    """``{u: [φ_u(i)]}``: Shapley values by enumerating the N! orderings."""
    n = labels.shape[0]
    correct = {}
    for r in range(len(names) + 1):
        for s in itertools.combinations(names, r):
            pred = oracle_logits(model, feats, set(s), names).argmax(1)
            correct[frozenset(s)] = [bool(pred[i] == labels[i]) if s else False for i in range(n)]
    out = {u: [] for u in names}
    orders = list(itertools.permutations(names))
    for i in range(n):
        def v(s, i=i):
            return len(s) * (1.0 if correct[frozenset(s)][i] else 0.0)
        for u in names:
            total = 0.0
            for order in orders:
                before = set(order[:order.index(u)])
                total += v(before | {u}) - v(before)
            out[u].append(total / math.factorial(len(names)))
    return out, correct


def released_copies(c):
    """The released if-chain (dataloader.py:156-186): copies for one contribution."""
    if 0.4 < c < 1:
        return 1
    if -0.1 < c < 0.4:
        return 2
    if c < -0.1:
        return 3
    return 0


def plan_of(method, epoch, n, model, feats, labels):
    def outputs(*, index=None, features=False):
        idx = torch.arange(n) if index is None else torch.as_tensor(index)
        return {"features": {u: f[idx] for u, f in feats.items()}, "labels": labels[idx]}
    indices, tags = method.begin_epoch(epoch, train_size=n, outputs=outputs)
    return Counter(zip(indices.tolist(), tags.tolist()))


def test_sample_level_plan_equals_the_paper_for_three_modalities():
    names = ("a", "b", "c")
    model, feats, labels = setup(names)
    contrib, _ = oracle_contributions(model, feats, labels, names)
    expected = Counter({(i, 0): 1 for i in range(len(labels))})
    for k, u in enumerate(names):
        for i, c in enumerate(contrib[u]):
            if released_copies(c):
                expected[(i, k + 1)] += released_copies(c)
    method = Valuate(names, model.fusion, warmup=2)
    got = plan_of(method, 2, len(labels), model, feats, labels)
    assert got == expected
    # the efficiency axiom: Σ_u φ_u = N · 1[fused prediction correct]
    for i in range(len(labels)):
        assert abs(sum(contrib[u][i] for u in names) - 3 * contrib_full(model, feats, labels, names, i)) < 1e-12
    # the oracle can fail: copies that kept the *other* modalities (a flipped rule) give another plan
    flipped = Counter({(i, t if t == 0 else len(names) + 1 - t): m for (i, t), m in expected.items()})
    assert flipped != expected
    assert len(set(expected) - {(i, 0) for i in range(len(labels))}) > 0  # some copies exist


def contrib_full(model, feats, labels, names, i):
    return float(oracle_logits(model, feats, set(names), names).argmax(1)[i] == labels[i])


def test_two_modalities_match_the_authors_formula():
    names = ("audio", "visual")
    model, feats, labels = setup(names, n=80, seed=3)
    _, correct = oracle_contributions(model, feats, labels, names)
    expected = Counter({(i, 0): 1 for i in range(len(labels))})
    for i in range(len(labels)):
        v_all = 2.0 if correct[frozenset(names)][i] else 0.0
        v_a = 1.0 if correct[frozenset({"audio"})][i] else 0.0
        v_v = 1.0 if correct[frozenset({"visual"})][i] else 0.0
        con_a, con_v = (v_a + v_all - v_v) / 2.0, (v_v + v_all - v_a) / 2.0
        expected[(i, 1)] += released_copies(con_a)  # released drop=2 (visual zeroed): keeps audio, tag 1
        expected[(i, 2)] += released_copies(con_v)  # released drop=1 (audio zeroed): keeps visual, tag 2
    expected = +expected  # drop zero counts
    method = Valuate(names, model.fusion, warmup=0)
    assert plan_of(method, 0, len(labels), model, feats, labels) == expected


def test_modality_level_plan_equals_the_released_count():
    names = ("audio", "visual")
    model, feats, labels = setup(names, n=90, seed=5)
    n, part, alpha, epoch = len(labels), 0.2, 1.0, 6
    method = Valuate(names, model.fusion, level="modality", warmup=5, part=part, alpha=alpha, seed=11)
    gen = method.generator(epoch)  # our draws, fed to the oracle (a copy of the stream)
    size = int(n * part)
    chosen = torch.randperm(n, generator=gen)[:size]
    _, correct = oracle_contributions(model, {u: f[chosen] for u, f in feats.items()}, labels[chosen], names)
    cona = conv = 0.0
    for j in range(size):
        v_all = 2.0 if correct[frozenset(names)][j] else 0.0
        v_a = 1.0 if correct[frozenset({"audio"})][j] else 0.0
        v_v = 1.0 if correct[frozenset({"visual"})][j] else 0.0
        cona += (v_a + v_all - v_v) / 2.0
        conv += (v_v + v_all - v_a) / 2.0
    cona /= size
    conv /= size
    gap_a, gap_v = 1.0 - cona, 1.0 - conv
    count = int((abs(gap_a - gap_v) / 3 * 2) * alpha * n)
    keep = 1 if gap_a > gap_v else 2  # dataloader.py:313-316: drop visual (keep audio) when audio's gap is larger
    draws = torch.randint(n, (count,), generator=gen).tolist() if gap_a != gap_v else []
    expected = Counter({(i, 0): 1 for i in range(n)})
    for i in draws:
        expected[(i, keep)] += 1
    assert plan_of(method, epoch, n, model, feats, labels) == expected
    assert count > 0  # the data give the modalities different gaps: copies were drawn


def test_a_masked_training_step_equals_the_hand_computation():
    """One SGD step on a tagged batch: loss = CE over W·[kept features; 0] + b, weights − lr·grad."""
    names = ("a", "b", "c")
    model, feats, labels = setup(names, n=12, seed=7)
    method = Valuate(names, model.fusion, warmup=0)
    tags = torch.tensor([0, 1, 2, 3, 0, 3, 2, 1, 1, 0, 2, 3])
    w0, b0 = model.fusion.fc.weight.detach().clone(), model.fusion.fc.bias.detach().clone()
    model.train()
    logits = model.fusion(method.transform_features(feats, tags=tags))
    loss = torch.nn.functional.cross_entropy(logits, labels)
    loss.backward()
    lr = 0.1
    new_w = w0 - lr * model.fusion.fc.weight.grad
    # oracle: per-sample concatenation with the non-kept blocks zeroed, softmax CE, its gradient
    rows = []
    for i, t in enumerate(tags.tolist()):
        keep = set(names) if t == 0 else {names[t - 1]}
        rows.append(torch.cat([feats[u][i] if u in keep else torch.zeros_like(feats[u][i]) for u in names]))
    x = torch.stack(rows)
    z = x @ w0.T + b0
    p = torch.exp(z - z.max(1, keepdim=True).values)
    p = p / p.sum(1, keepdim=True)
    onehot = torch.zeros_like(p)
    onehot[torch.arange(len(labels)), labels] = 1.0
    expected_loss = -(torch.log(p[torch.arange(len(labels)), labels])).mean()
    expected_w = w0 - lr * ((p - onehot).T @ x) / len(labels)
    torch.testing.assert_close(loss.detach(), expected_loss, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(new_w, expected_w, rtol=1e-6, atol=1e-12)
    # the oracle can fail: with no masking the loss differs
    with torch.no_grad():
        unmasked = torch.nn.functional.cross_entropy(model.fusion(feats), labels)
    assert abs(float(unmasked) - float(expected_loss)) > 1e-6
