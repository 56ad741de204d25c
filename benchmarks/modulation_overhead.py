"""Cost of one OGM-GE modulation step: ours vs the official per-step control flow.

On the paper's audio-visual model (two ResNet-18 encoders, about 22 M conv
parameters) at batch 64, times

  (a) a reference that mirrors the official code's per-step control flow:
      a per-sample softmax loop for the scores, a host-side branch on the ratio,
      a walk over every named parameter, ``std().item()`` per tensor and new
      tensors for each modulated gradient;
  (b) ``ogmge.OGMGE.step`` (batched scores, multi-tensor in-place updates,
      no host synchronisation);

and one forward+backward pass of the model at that batch, and prints the
medians, their ratio and the modulation's cost as a fraction of the
forward+backward pass.

    python benchmarks/modulation_overhead.py                 # CPU, paper input sizes
    python benchmarks/modulation_overhead.py --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from ogmge import OGMGE
from ogmge.models import build_paper_model


def official_reference_step(model, out_a, out_v, label, alpha, mode="OGM_GE"):
    """Per-step modulation as the official training loop writes it (nothing slower)."""
    softmax = nn.Softmax(dim=1)
    relu = nn.ReLU(inplace=True)
    tanh = nn.Tanh()
    score_v = sum([softmax(out_v)[i][label[i]] for i in range(out_v.size(0))])
    score_a = sum([softmax(out_a)[i][label[i]] for i in range(out_a.size(0))])
    ratio_v = score_v / score_a
    ratio_a = 1 / ratio_v
    if ratio_v > 1:
        coeff_v = 1 - tanh(alpha * relu(ratio_v))
        coeff_a = 1
    else:
        coeff_a = 1 - tanh(alpha * relu(ratio_a))
        coeff_v = 1
    for name, parms in model.named_parameters():
        if parms.grad is None:
            continue
        layer = str(name).split(".")[1]
        for key, coeff in (("audio", coeff_a), ("visual", coeff_v)):
            if key in layer and len(parms.grad.size()) == 4:
                if mode == "OGM_GE":
                    parms.grad = parms.grad * coeff + torch.zeros_like(parms.grad).normal_(
                        0, parms.grad.std().item() + 1e-8
                    )
                else:
                    parms.grad *= coeff


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_time(fn, repeats, device, before=None):
    times = []
    for _ in range(repeats):
        if before is not None:
            before()
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--spec", type=int, nargs=2, default=(257, 188), help="spectrogram F T")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--mode", default="OGM_GE", choices=("OGM", "OGM_GE"))
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)

    model = build_paper_model(fusion="concat", num_classes=args.classes).to(device)
    conv = {n: sum(p.numel() for p in model.encoders[n].parameters() if p.dim() >= 3) for n in model.encoders}
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)  # for zero_grad
    b = args.batch_size
    inputs = {
        "audio": torch.randn(b, 1, *args.spec, device=device),
        "visual": torch.randn(b, args.frames, 3, args.image_size, args.image_size, device=device),
    }
    y = torch.randint(0, args.classes, (b,), device=device)

    def forward_backward():
        opt.zero_grad(set_to_none=True)
        out = model(inputs, labels=y)
        nn.functional.cross_entropy(out.logits, y).backward()

    forward_backward()  # warm-up
    step_time = _median_time(forward_backward, args.repeats, device)

    opt.zero_grad(set_to_none=True)
    out = model(inputs, labels=y)
    nn.functional.cross_entropy(out.logits, y).backward()
    logits = {n: t.detach() for n, t in out.modality_logits.items()}
    saved = {p: p.grad.clone() for p in model.parameters() if p.grad is not None}

    def restore():
        for p, g in saved.items():
            p.grad = g.clone()

    # The reference splits names at position 1 ("encoders.audio...."), as the official code does.
    ref = _median_time(
        lambda: official_reference_step(model, logits["audio"], logits["visual"], y, 0.8, args.mode),
        args.repeats, device, before=restore,
    )
    modulator = OGMGE(model.encoders, mode=args.mode, alpha=0.8)
    ours = _median_time(
        lambda: modulator.step(modality_logits=logits, labels=y, epoch=0), args.repeats, device, before=restore
    )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; batch {b}; mode {args.mode}; conv parameters per encoder: {conv}")
    print(f"official-style modulation : {ref * 1e3:9.2f} ms (median of {args.repeats})")
    print(f"ogmge OGMGE.step          : {ours * 1e3:9.2f} ms (median of {args.repeats})")
    print(f"speed-up                  : {ref / ours:9.2f}x")
    print(f"forward+backward          : {step_time * 1e3:9.2f} ms (median of {args.repeats})")
    print(f"modulation / fwd+bwd      : ours {100 * ours / step_time:.2f}%, official-style {100 * ref / step_time:.2f}%")


if __name__ == "__main__":
    main()
