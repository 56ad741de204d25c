"""Which per-modality logit estimator should each fusion head use by default?

Synthetic two-modality task where "strong" carries the class far more clearly
than "weak" (class centres of norm 1.5 vs 0.4, unit Gaussian noise, 16-d). For each fusion head
one model is trained jointly (plain SGD, no modulation); at every step every
applicable estimator is applied to the same features and we record:

- order: fraction of steps whose batch scores (Eq. 8) rank strong above weak
  (the fact OGM-GE must get right to slow the right encoder), overall and in
  the first 20 steps;
- rho: mean discrepancy ratio of the strong modality;
- gap: efficiency gap  mean|sum_u o_u - logits| / mean|logits|  (0 means the
  per-modality logits partition the actual prediction);
- estimators: linear split (sum/concat), masking and Shapley with a zero
  baseline and with the running-mean baseline ("-mean"), probe heads;
- acc: the fused model's training-batch accuracy over the last 50 steps
  (whether the head learned to use the strong modality at all);
- ms: time of the estimator alone per batch (batch 64, median, one thread).

Run:  python benchmarks/estimators.py [--steps 150] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ogmge import batch_scores, discrepancy_ratios
from ogmge.contracts import ModalitySpec
from ogmge.models import LogitEstimator, build_model

CLASSES, DIM, BATCH = 4, 16, 64


def make_batch(means: dict[str, torch.Tensor], gen: torch.Generator):
    y = torch.randint(0, CLASSES, (BATCH,), generator=gen)
    x = {n: m[y] + torch.randn(BATCH, DIM, generator=gen) for n, m in means.items()}
    return x, y


def run(fusion: str, seed: int, steps: int) -> tuple[dict[str, dict[str, float]], float]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    centres = torch.randn(CLASSES, DIM, generator=gen)
    centres = centres / centres.norm(dim=1, keepdim=True)
    means = {"strong": 1.5 * centres, "weak": 0.4 * centres[torch.randperm(CLASSES, generator=gen)]}
    specs = {n: ModalitySpec(n, "vector", (DIM,)) for n in means}
    opts = {"attention": {"d_model": 32, "heads": 4}, "film": {"condition": "strong"}, "gated": {"gate": "strong"},
            "gated(gate=weak)": {"gate": "weak"}}.get(fusion, {})
    model = build_model(specs, num_classes=CLASSES, fusion=fusion.split("(")[0], estimator="probe",
                        hidden=32, out_dim=32, fusion_options=opts)
    kinds = {"masking": ("masking", "zeros"), "shapley": ("shapley", "zeros"),
             "masking-mean": ("masking", "mean"), "shapley-mean": ("shapley", "mean")}
    if fusion in ("sum", "concat"):
        kinds["linear"] = ("linear", "zeros")
    names = list(kinds)
    others = {n: LogitEstimator(m, baseline=b).bind(model.fusion) for n, (m, b) in kinds.items()}
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rec = {n: {"order": [], "rho": [], "gap": [], "ms": []} for n in [*names, "probe"]}
    accuracy = []
    for _ in range(steps):
        x, y = make_batch(means, gen)
        out = model(x, labels=y)
        estimates = {"probe": out.modality_logits}
        for n, est in others.items():
            t0 = time.perf_counter()
            estimates[n] = est(model.fusion, out.features).modality_logits
            rec[n]["ms"].append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        with torch.no_grad():
            model.estimator(model.fusion, out.features)
        rec["probe"]["ms"].append(1e3 * (time.perf_counter() - t0))
        fused = out.logits.detach()
        accuracy.append((fused.argmax(1) == y).float().mean().item())
        for n, o in estimates.items():
            s = batch_scores(o, y)
            rho = discrepancy_ratios(s)["strong"].item()
            rec[n]["order"].append(float(s["strong"] > s["weak"]))
            rec[n]["rho"].append(rho)
            rec[n]["gap"].append(((o["strong"] + o["weak"] - fused).abs().mean() / fused.abs().mean()).item())
        opt.zero_grad()
        (F.cross_entropy(out.logits, y) + out.probe_loss).backward()
        opt.step()
    return {
        n: {
            "order": statistics.mean(r["order"]),
            "order@20": statistics.mean(r["order"][:20]),
            "rho": statistics.mean(r["rho"]),
            "gap": statistics.mean(r["gap"]),
            "ms": statistics.median(r["ms"]),
        }
        for n, r in rec.items()
    }, statistics.mean(accuracy[-50:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'fusion':<18}{'estimator':<14}{'order':>7}{'order@20':>10}{'rho':>7}{'gap':>8}{'ms':>7}")
    for fusion in ("sum", "concat", "film", "gated", "gated(gate=weak)", "attention"):
        results = [run(fusion, seed, args.steps) for seed in range(args.seeds)]
        runs = [r for r, _ in results]
        print(f"{fusion}: fused training accuracy, last 50 steps: {statistics.mean(a for _, a in results):.3f}")
        for est in runs[0]:
            row = {k: statistics.mean(r[est][k] for r in runs) for k in runs[0][est]}
            print(f"{fusion:<18}{est:<14}{row['order']:>7.2f}{row['order@20']:>10.2f}{row['rho']:>7.2f}"
                  f"{row['gap']:>8.3f}{row['ms']:>7.2f}")


if __name__ == "__main__":
    main()
