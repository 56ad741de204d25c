"""G-Blending as published (Wang, Tran, Feiszli, CVPR 2020, Alg. 1): weights from copies of the
model trained per head for a super-epoch, reproduced by hand on a tiny problem (float64).

The hand computation trains its own deep copies with plain SGD and measures the losses with
``F.cross_entropy``; only the model under test and the trainer's copy machinery come from
``ogmge``. Tolerance fixed up front: 1e-9 on the weights (both sides run the same float64
arithmetic in the same order of batches)."""

import copy

import torch
import torch.nn.functional as F

from ogmge.contracts import ModalitySpec
from ogmge.methods import GBlending
from ogmge.models import build_model
from ogmge.training.balancing import TrainerCopies, estimate_from_copies

NAMES = ("audio", "visual")
HEADS = ("fused", *NAMES)
C, D, SEED, LR, SUPER = 3, 5, 11, 0.2, 2


def tiny():
    torch.manual_seed(0)
    specs = {n: ModalitySpec(n, "vector", (D,)) for n in NAMES}
    return build_model(specs, num_classes=C, fusion="concat", hidden=6, out_dim=4, heads=True).double()


def batches(n_batches, size, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        y = torch.randint(0, C, (size,), generator=g)
        x = {n: torch.randn(size, D, generator=g, dtype=torch.float64) for n in NAMES}
        x["audio"][torch.arange(size), y] += 2.0
        x["visual"][torch.arange(size), y] += 0.7
        out.append({"inputs": x, "lengths": {}, "labels": y})
    return out


def head_logits(model, b):
    out = model(b["inputs"], labels=b["labels"])
    return {"fused": out.logits, **out.head_logits}


def mean_losses(model, data):
    model.eval()
    with torch.no_grad():
        logits = [head_logits(model, b) for b in data]
    y = torch.cat([b["labels"] for b in data])
    return {h: float(F.cross_entropy(torch.cat([lg[h] for lg in logits]), y)) for h in HEADS}


def half_a(data, seed):
    n = sum(int(b["labels"].numel()) for b in data)
    a = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: n // 2].sort().values
    x = {m: torch.cat([b["inputs"][m] for b in data])[a] for m in NAMES}
    return [{"inputs": x, "lengths": {}, "labels": torch.cat([b["labels"] for b in data])[a]}]


def test_weights_equal_the_hand_computation_from_copies_trained_for_a_super_epoch():
    model = tiny()
    train, val = batches(4, 12, seed=1), batches(2, 15, seed=2)
    with torch.no_grad():  # the hand copies start from the same weights
        reference = copy.deepcopy(model)

    # by hand: start losses of the current model, one copy per head trained SUPER epochs on that
    # head's loss alone (fresh SGD at LR), end losses; w ∝ dG / dO², normalised
    held = half_a(val, SEED)
    start_t, start_v = mean_losses(reference, train), mean_losses(reference, held)
    raw = {}
    for h in HEADS:
        c = copy.deepcopy(reference)
        opt = torch.optim.SGD(c.parameters(), lr=LR)
        for _ in range(SUPER):
            c.train()
            for b in train:
                loss = F.cross_entropy(head_logits(c, b)[h], b["labels"])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        end_t, end_v = mean_losses(c, train)[h], mean_losses(c, held)[h]
        d_g = start_v[h] - end_v
        d_o = (end_v - end_t) - (start_v[h] - start_t[h])
        raw[h] = max(d_g, 0.0) / d_o ** 2
    assert all(v > 0 for v in raw.values())  # every head generalised: no guard involved
    expected = {h: raw[h] / sum(raw.values()) for h in HEADS}

    gb = GBlending(list(NAMES), super_epoch=SUPER)
    assert gb.trains_copies and gb.w_min == 0.0
    main_opt = torch.optim.SGD(model.parameters(), lr=LR)
    copies = TrainerCopies(model, lambda ps: torch.optim.SGD(ps, lr=0.5), main_opt, train, train, val,
                           torch.device("cpu"), seed=SEED, epoch=0)
    estimate_from_copies(gb, copies, "cpu")
    for h in HEADS:
        assert abs(gb.weights[h] - expected[h]) <= 1e-9, (h, gb.weights, expected)
    # the current model is untouched (copies train), and an epoch off the super-epoch grid estimates nothing
    for p, q in zip(model.parameters(), reference.parameters()):
        assert torch.equal(p, q)
    before = dict(gb.weights)
    gb.estimate_from_copies(1, copies)
    assert gb.weights == before and gb.estimates == 1


def test_every_head_without_held_out_gain_keeps_the_previous_weights():
    class NoGain:
        def clone(self):
            return None

        def train_epoch(self, copy, head):
            pass

        def losses(self, copy, split):
            return {h: 1.0 for h in HEADS}  # nothing learnt: dG = 0 for every head

    gb = GBlending(list(NAMES), super_epoch=1, weights={"fused": 0.5, "audio": 0.3, "visual": 0.2})
    gb.estimate_from_copies(0, NoGain())
    assert gb.weights == {"fused": 0.5, "audio": 0.3, "visual": 0.2} and gb.last["fallback"]
