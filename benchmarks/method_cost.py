"""Cost of one training step of each balancing method, relative to a Normal step.

On the paper's audio-visual model (two ResNet-18 encoders, ``build_paper_model``,
concat fusion) at batch 64 and the paper's input sizes (spectrogram 257 x 188,
one 224 x 224 RGB frame), one step = forward, loss, backward (the method's own
for MMPareto), the method's hooks, SGD step. Steps of the methods alternate
within each round (the order rotates between rounds) so that drift of a shared
machine hits every method alike; each method's time per round is the median of
``--steps`` steps, and the report gives, per method, the median over rounds of
its ratio to that round's Normal step and the range (min-max) of that ratio.

MMPareto is also compared with a reference of the authors' per-step control
flow (GeWu-Lab/MMPareto_ICML2024, ``code/MMPareto.py``), written here: three
backward passes with a retained graph (fused, audio, visual loss), cloning every
encoder gradient after each, cosines and the min-norm branch decided on the
host, then a fourth backward of the summed loss and a new tensor per gradient.
MASAM (two forward and three backward passes per step) is timed against the
same Normal step (the issue's expectation: about 3-4x). Goals: MMPareto <= 0.8x that reference; G-Blending and modality dropout <= 1.05x
Normal per step. G-Blending also needs one evaluation pass over the validation
split per epoch (the trainer runs it anyway to select the model) and one over
the training split on the initial model: reported separately, per batch.

    python benchmarks/method_cost.py                  # paper sizes (slow on a CPU)
    python benchmarks/method_cost.py --small          # batch 16, 64 x 64 inputs, width 16
    python benchmarks/method_cost.py --device cuda --rounds 5
    python benchmarks/method_cost.py --small --clock cpu --threads 1   # on a busy shared CPU

``--clock cpu`` measures the process's CPU time (``time.process_time``) instead of
wall time: on a CPU shared with other jobs, wall time mostly measures the others;
with one thread, CPU time is the work of the step itself.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ogmge.methods import (
    AGM,
    MASAM,
    PMR,
    CosineHead,
    GBlending,
    InfoReg,
    MMPareto,
    ModalityDropout,
    UnimodalEnsemble,
)
from ogmge.models import MultimodalClassifier, build_paper_model


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def authors_style_mmpareto_step(model, inputs, y, opt, scale=1.5):
    """The authors' control flow (four backward passes, host-side branch), re-written."""
    out = model(inputs, labels=y)
    losses = {"both": F.cross_entropy(out.logits, y)}
    for n in model.modalities:
        losses[n] = F.cross_entropy(out.head_logits[n], y)
    enc = {n: list(model.encoders[n].named_parameters()) for n in model.modalities}
    grads: dict[str, dict[str, dict[str, torch.Tensor]]] = {n: {} for n in model.modalities}
    for key, loss in losses.items():
        loss.backward(retain_graph=True)
        for n in model.modalities:
            if key in ("both", n):
                grads[n][key] = {name: p.grad.detach().clone() for name, p in enc[n]}
        opt.zero_grad()
    weights = {}
    for n in model.modalities:
        a = torch.cat([g.flatten() for g in grads[n]["both"].values()])
        b = torch.cat([g.flatten() for g in grads[n][n].values()])
        if F.cosine_similarity(a, b, dim=0) > 0:  # host synchronisation, as in the original
            weights[n] = (0.5, 0.5)
        else:
            gamma = float(torch.clamp(torch.dot(b - a, b) / (a - b).pow(2).sum(), 0, 1))
            weights[n] = (gamma, 1 - gamma)
    sum(losses.values()).backward()
    for n in model.modalities:
        w_mm, w_u = weights[n]
        for name, p in enc[n]:
            three = torch.norm(p.grad.detach().clone())
            new = 2 * w_mm * grads[n]["both"][name] + 2 * w_u * grads[n][n][name]
            ratio = three / torch.norm(new)
            p.grad = (ratio * new * scale) if ratio > 1 else new * scale
    opt.step()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--small", action="store_true", help="batch 16, 64 x 64 inputs, width 16 (a quick CPU run)")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="steps per method per round (median)")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or the process's CPU time (robust on a shared CPU; use with --threads 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--only", default=None, metavar="A,B",
                    help="time only these methods (normal is always timed), e.g. gblend,mdrop")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    b = args.batch_size or (16 if args.small else 64)
    spec, image, width = ((64, 64), 64, 16) if args.small else ((257, 188), 224, 64)
    torch.manual_seed(0)

    def make(**kw):
        torch.manual_seed(0)
        return build_paper_model(fusion="concat", num_classes=args.classes, width=width, **kw).to(device)

    names = ["audio", "visual"]
    models = {
        "normal": make(),
        "gblend": make(heads=True),
        "mdrop": make(feature_transform=ModalityDropout(names, p=0.5)),
        "mmpareto": make(heads=True),
        "mmpareto_authors": make(heads=True),
        "uni_ensemble": make(heads=True, prediction="ensemble"),
        "masam": make(heads=True),
        "inforeg": make(heads=True),
        "pmr": make(),
        "mmcosine": make(),
        "agm": make(),
    }
    if args.only:
        wanted = {"normal", *args.only.split(",")}
        unknown = wanted - set(models)
        if unknown:
            raise SystemExit(f"--only: unknown methods {sorted(unknown)}; choose from {sorted(models)}")
        models = {k: m for k, m in models.items() if k in wanted}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-4, momentum=0.9, weight_decay=1e-4) for k, m in models.items()}
    methods = {"gblend": GBlending(names), "uni_ensemble": UnimodalEnsemble(names)}
    if "mmpareto" in models:
        methods["mmpareto"] = MMPareto(models["mmpareto"].encoders)
    if "inforeg" in models:
        methods["inforeg"] = InfoReg(models["inforeg"].encoders, epochs=12)
    if "masam" in models:
        mm = models["masam"]
        methods["masam"] = MASAM(mm.encoders, modules=[mm.heads, mm.fusion])
    if "mmcosine" in models:  # the cosine classifier on the concat head's weights
        m = models["mmcosine"]
        models["mmcosine"] = MultimodalClassifier(dict(m.encoders.items()), CosineHead(m.fusion)).to(device)
        opts["mmcosine"] = torch.optim.SGD(models["mmcosine"].parameters(), lr=1e-4, momentum=0.9)
    if "pmr" in models:  # prototypes from random features (the per-epoch prototype pass is not timed)
        pmr = PMR(names, args.classes)
        dims = {n: int(d) for n, d in models["pmr"].fusion.in_dims.items()}
        pmr.start_epoch(0, features={n: torch.randn(4 * args.classes, d, device=device) for n, d in dims.items()},
                        labels=torch.arange(4 * args.classes, device=device) % args.classes)
        methods["pmr"] = pmr
    if "agm" in models:
        methods["agm"] = AGM(names, models["agm"].fusion, list(models["agm"].parameters()))
    inputs = {"audio": torch.randn(b, 1, *spec, device=device),
              "visual": torch.randn(b, 1, 3, image, image, device=device)}
    y = torch.randint(0, args.classes, (b,), device=device)

    def step(key):
        model, opt = models[key], opts[key]
        opt.zero_grad(set_to_none=True)
        if key == "mmpareto_authors":
            authors_style_mmpareto_step(model, inputs, y, opt)
            return
        out = model(inputs, labels=y)
        method = methods.get(key)
        if key == "masam":  # owns the step: a second forward/backward at the perturbed weights
            def recompute():
                o = model(inputs, labels=y)
                return method.loss(o.logits, y, head_logits=o.head_logits)

            total, terms = method.loss(out.logits, y, head_logits=out.head_logits)
            method.backward(total, terms, recompute=recompute)
        elif method is None:
            F.cross_entropy(out.logits, y).backward()
        else:
            extra = {"features": out.features} if method.needs_features else {}
            total, terms = method.loss(out.logits, y, head_logits=out.head_logits, **extra)
            method.backward(total, terms)
            if key == "inforeg":  # the Fisher-trace sums and the proximal pull
                method.after_backward(modality_logits=out.modality_logits, labels=y, epoch=0)
        opt.step()

    def timed(fn):
        _sync(device)
        t0 = clock()
        fn()
        _sync(device)
        return clock() - t0

    keys = list(models)
    for k in keys:  # warm-up
        step(k)
    per_round: dict[str, list[float]] = {k: [] for k in keys}
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            per_round[k].append(statistics.median(timed(lambda k=k: step(k)) for _ in range(args.steps)))
    model = models.get("gblend", models["normal"]).eval()
    with torch.no_grad():
        eval_t = [timed(lambda: model(inputs)) for _ in range(args.steps)]
    model.train()

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {where}; batch {b}; audio {spec}; visual 1 x 3 x {image} x {image}; width {width}; "
          f"{args.rounds} rounds x {args.steps} steps; {args.clock} clock")

    def ratio(k, ref):
        values = [a / n for a, n in zip(per_round[k], per_round[ref])]
        return statistics.median(values), min(values), max(values)

    print(f"{'method':18s} {'step ms (median)':>17s} {'x normal':>9s} {'range':>15s}")
    for k in keys:
        med, lo, hi = ratio(k, "normal")
        print(f"{k:18s} {1e3 * statistics.median(per_round[k]):17.1f} {med:9.3f} {f'{lo:.3f}-{hi:.3f}':>15s}")
    if {"mmpareto", "mmpareto_authors"} <= set(keys):
        med, lo, hi = ratio("mmpareto", "mmpareto_authors")
        verdict = "goal met" if med <= 0.8 else "MISS"
        print(f"mmpareto / authors' four-pass flow: {med:.3f} (range {lo:.3f}-{hi:.3f}); goal <= 0.8: {verdict}")
    for k in [k for k in ("gblend", "mdrop") if k in keys]:
        med = ratio(k, "normal")[0]
        print(f"{k} / normal: {med:.3f}; goal <= 1.05: {'goal met' if med <= 1.05 else 'MISS'}")
    normal = statistics.median(per_round["normal"])
    print(f"held-out pass (G-Blending's validation losses; eval forward of one batch): "
          f"{1e3 * statistics.median(eval_t):.1f} ms = {statistics.median(eval_t) / normal:.3f} x a normal step")


if __name__ == "__main__":
    main()
