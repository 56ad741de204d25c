"""Cost of one OGM-GE modulation step: ours vs the official per-step control flow.

On the paper's audio-visual model (two ResNet-18 encoders, about 22 M conv
parameters) at batch 64, times, in several rounds that alternate their order
(timings on a shared machine drift; a round compares like with like):

  (a) a reference that mirrors the official code's per-step control flow:
      a per-sample softmax loop for the scores, a host-side branch on the ratio,
      a walk over every named parameter, ``std().item()`` per tensor and new
      tensors for each modulated gradient;
  (b) ``ogmge.OGMGE.step`` (batched scores, multi-tensor in-place updates,
      no host synchronisation);
  (c) the floor of any GE step: drawing as many Gaussian numbers as there are
      selected gradient values (into a preallocated buffer) plus one ``std``
      pass over those gradients;

and one forward+backward pass of the model at that batch. It prints, for each,
the median and the range over the rounds, the per-round ratios (median and
range), and the modulation's cost as a fraction of the forward+backward pass.

    python benchmarks/modulation_overhead.py                 # CPU, paper input sizes
    python benchmarks/modulation_overhead.py --rounds 9 --fwd-bwd-repeats 0 --threads 1
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


def _time(fn, device, before=None) -> tuple[float, float]:
    """``(wall, cpu)`` seconds of ``fn()``: wall-clock, and the process's CPU time (all its
    threads; on a shared machine the steadier of the two, as it leaves out the time the
    process waited for a core)."""
    if before is not None:
        before()
    _sync(device)
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - w0, time.process_time() - c0


def _summary(values) -> str:
    return f"median {statistics.median(values):9.2f}  range {min(values):.2f}-{max(values):.2f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=7, help="rounds of the three contenders, alternating order")
    ap.add_argument("--fwd-bwd-repeats", type=int, default=3, help="forward+backward passes timed (0: skip)")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--spec", type=int, nargs=2, default=(257, 188), help="spectrogram F T")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--mode", default="OGM_GE", choices=("OGM", "OGM_GE"))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
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

    step_times = []
    if args.fwd_bwd_repeats > 0:
        forward_backward()  # warm-up
        step_times = [_time(forward_backward, device)[0] for _ in range(args.fwd_bwd_repeats)]

    opt.zero_grad(set_to_none=True)
    out = model(inputs, labels=y)
    nn.functional.cross_entropy(out.logits, y).backward()
    logits = {n: t.detach() for n, t in out.modality_logits.items()}
    saved = {p: p.grad.clone() for p in model.parameters() if p.grad is not None}

    def restore():
        for p, g in saved.items():
            p.grad = g.clone()

    modulator = OGMGE(model.encoders, mode=args.mode, alpha=0.8)
    selected = [p for name in modulator.modalities for _, p in modulator.params[name]]
    count = sum(p.numel() for p in selected)
    noise = torch.empty(count, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def floor():
        torch.randn(count, generator=gen, out=noise)
        for p in selected:
            p.grad.std()

    # The reference splits names at position 1 ("encoders.audio...."), as the official code does.
    contenders = {
        "official-style modulation": lambda: official_reference_step(
            model, logits["audio"], logits["visual"], y, 0.8, args.mode),
        "ogmge OGMGE.step": lambda: modulator.step(modality_logits=logits, labels=y, epoch=0),
        "floor (draw + one std pass)": floor,
    }
    for fn in contenders.values():  # warm-up (allocations, the modulator's scratch buffer)
        _time(fn, device, before=restore)
    wall: dict[str, list[float]] = {k: [] for k in contenders}
    cpu: dict[str, list[float]] = {k: [] for k in contenders}
    for r in range(args.rounds):
        order = list(contenders) if r % 2 == 0 else list(contenders)[::-1]
        for key in order:
            w, c = _time(contenders[key], device, before=restore)
            wall[key].append(w * 1e3)
            cpu[key].append(c * 1e3)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name}; batch {b}; mode {args.mode}; conv parameters per encoder: {conv}; "
          f"selected values {count:,}")
    print(f"{args.rounds} rounds, alternating order; times in ms")
    clocks = [("wall-clock", wall)] + ([("CPU time", cpu)] if device.type == "cpu" else [])
    for label, times in clocks:
        ref, ours, low = (times[k] for k in contenders)
        print(f"-- {label}")
        for key, values in times.items():
            print(f"{key:30s}: {_summary(values)}")
        print(f"{'official-style / ours':30s}: {_summary([a / o for a, o in zip(ref, ours)])}  (per round)")
        print(f"{'ours / floor':30s}: {_summary([o / f for o, f in zip(ours, low)])}  (per round)")
    ours = wall["ogmge OGMGE.step"]
    ref = wall["official-style modulation"]
    if step_times:
        fb = statistics.median(step_times) * 1e3
        print(f"{'forward+backward':30s}: {_summary([t * 1e3 for t in step_times])}")
        print(f"{'modulation / fwd+bwd':30s}: ours {100 * statistics.median(ours) / fb:.2f}%, "
              f"official-style {100 * statistics.median(ref) / fb:.2f}%")


if __name__ == "__main__":
    main()
