"""Evidence that the built-in data shows modality imbalance (issue 5).

For each seed: train a joint audio-visual model (concat head) with plain
training ("Normal") and with OGM-GE (alpha 0.8), and the visual encoder alone.
Report the weak (visual) modality's test accuracy inside each joint model
(its per-modality logits, the linear split of the concat head:
``o_v = W_v phi_v + b/2``) next to the unimodal one. The built-in default counts
as showing the phenomenon when the Normal gap is at least 10 points.

    python benchmarks/imbalance_gap.py                 # 3 seeds, defaults
    python benchmarks/imbalance_gap.py --seeds 0 1 2 3 --epochs 15

Uses ``ogmge.models.build_model`` when it is importable, else the small local
CNN encoders below (a conv net per modality, a concat linear head).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

from ogmge import OGMGE
from ogmge.data.builtin import DEFAULT_IMBALANCE, DEFAULT_SEED, make_builtin_dataset
from ogmge.data.collate import collate_samples


# ---------------------------------------------------------------- local models
def _conv_stack(in_ch: int, width: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    ch = in_ch
    for out in (width, 2 * width, 4 * width):
        layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        ch = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


class ImageEncoder(nn.Module):
    """Small CNN on ``(B, C, H, W)`` (spectrogram, image) or per frame on ``(B, T, C, H, W)``."""

    def __init__(self, in_channels: int, width: int = 16) -> None:
        super().__init__()
        self.net = _conv_stack(in_channels, width)
        self.out_dim = 4 * width

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 5:  # video: shared 2-D CNN per frame, mean over time
            b, t = x.shape[:2]
            return self.net(x.flatten(0, 1)).view(b, t, -1).mean(1)
        return self.net(x)


class ConcatClassifier(nn.Module):
    """Encoders keyed by modality, concat fusion, linear head; per-modality logits by linear split."""

    def __init__(self, encoders: dict[str, nn.Module], num_classes: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleDict(encoders)
        self.head = nn.Linear(sum(e.out_dim for e in encoders.values()), num_classes)

    def forward(self, inputs: dict[str, torch.Tensor], lengths=None, labels=None):
        feats = {n: e(inputs[n]) for n, e in self.encoders.items()}
        logits = self.head(torch.cat([feats[n] for n in self.encoders], dim=1))
        split, start = {}, 0
        bias = self.head.bias / len(feats)
        for n, f in feats.items():
            w = self.head.weight[:, start:start + f.shape[1]]
            split[n] = f @ w.t() + bias
            start += f.shape[1]
        return logits, split


def make_model(modalities: dict, num_classes: int, *, local: bool = False) -> nn.Module:
    """``ogmge.models.build_model`` (3 conv blocks of 16/32/64 channels per modality) or the local twin."""
    if not local:
        try:
            from ogmge.models import build_model
        except ImportError:
            pass
        else:
            return build_model(modalities, num_classes=num_classes, fusion="concat", hidden=32, out_dim=64)
    encoders = {}
    for name, spec in modalities.items():
        channels = spec.shape[1] if spec.kind == "video" else spec.shape[0]
        encoders[name] = ImageEncoder(channels)
    return ConcatClassifier(encoders, num_classes)


def forward(model, batch):
    out = model(batch["inputs"], batch.get("lengths") or None)
    if isinstance(out, tuple):
        return out
    return out.logits, out.modality_logits


# ------------------------------------------------------------------- training
def train_and_eval(train_ds, test_ds, names, *, mode, seed, epochs, lr, batch_size, alpha, local=False):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train = train_ds.select_modalities(names)
    test = test_ds.select_modalities(names)
    model = make_model(train.modalities, train.num_classes, local=local)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=1e-4)
    modulator = None
    if len(names) > 1 and mode != "Normal":
        modulator = OGMGE(model.encoders, mode=mode, alpha=alpha, start_epoch=0, end_epoch=None, seed=seed)
    loader = DataLoader(train, batch_size=batch_size, shuffle=True, generator=gen, collate_fn=collate_samples)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        for batch in loader:
            logits, mod_logits = forward(model, batch)
            loss = loss_fn(logits, batch["labels"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if modulator is not None:
                modulator.step(
                    modality_logits={n: v.detach() for n, v in mod_logits.items()},
                    labels=batch["labels"], epoch=epoch,
                )
            opt.step()
    return evaluate(model, test, batch_size)


@torch.no_grad()
def evaluate(model, ds, batch_size):
    model.eval()
    loader = DataLoader(ds, batch_size=256, collate_fn=collate_samples)
    correct = {"fused": 0}
    for batch in loader:
        logits, mod_logits = forward(model, batch)
        y = batch["labels"]
        correct["fused"] += int((logits.argmax(1) == y).sum())
        for n, v in mod_logits.items():
            correct[n] = correct.get(n, 0) + int((v.argmax(1) == y).sum())
    return {k: 100.0 * v / len(ds) for k, v in correct.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    p.add_argument("--data-seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--imbalance", type=float, default=DEFAULT_IMBALANCE)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--alpha", type=float, default=0.8)
    p.add_argument("--weak", default="visual")
    p.add_argument("--local-models", action="store_true", help="use the local CNNs, not ogmge.models")
    p.add_argument("--runs", nargs="+", default=["joint", "alone", "ogmge"],
                   choices=["joint", "alone", "ogmge", "ogm", "strong"])
    args = p.parse_args(argv)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    train_ds = make_builtin_dataset("train", imbalance=args.imbalance, seed=args.data_seed)
    test_ds = make_builtin_dataset("test", imbalance=args.imbalance, seed=args.data_seed)
    names = list(train_ds.modalities)
    strong = [n for n in names if n != args.weak][0]
    common = dict(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, alpha=args.alpha,
                  local=args.local_models)
    print(f"built-in data: imbalance={args.imbalance} data_seed={args.data_seed} "
          f"train={len(train_ds)} test={len(test_ds)}; epochs={args.epochs} lr={args.lr}; "
          f"models: {'local' if args.local_models else 'ogmge.models (if importable)'}")
    rows = []
    for seed in args.seeds:
        row = {"seed": seed}
        t0 = time.perf_counter()
        if "joint" in args.runs:
            r = train_and_eval(train_ds, test_ds, names, mode="Normal", seed=seed, **common)
            row.update({"normal_fused": r["fused"], "normal_weak": r[args.weak], "normal_strong": r[strong]})
        if "alone" in args.runs:
            r = train_and_eval(train_ds, test_ds, [args.weak], mode="Normal", seed=seed, **common)
            row["alone_weak"] = r["fused"]
        if "strong" in args.runs:
            r = train_and_eval(train_ds, test_ds, [strong], mode="Normal", seed=seed, **common)
            row["alone_strong"] = r["fused"]
        if "ogmge" in args.runs:
            r = train_and_eval(train_ds, test_ds, names, mode="OGM_GE", seed=seed, **common)
            row.update({"ogmge_fused": r["fused"], "ogmge_weak": r[args.weak], "ogmge_strong": r[strong]})
        if "ogm" in args.runs:  # OGM without the GE noise, for diagnosis
            r = train_and_eval(train_ds, test_ds, names, mode="OGM", seed=seed, **common)
            row.update({"ogm_fused": r["fused"], "ogm_weak": r[args.weak], "ogm_strong": r[strong]})
        row["seconds"] = time.perf_counter() - t0
        rows.append(row)
        print("  ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
    if "joint" in args.runs and "alone" in args.runs:
        gaps = [r["alone_weak"] - r["normal_weak"] for r in rows]
        print(f"{args.weak} accuracy gap (alone - inside joint Normal): "
              + ", ".join(f"{g:.1f}" for g in gaps) + f"; mean {sum(gaps) / len(gaps):.1f}; "
              + ("all >= 10" if min(gaps) >= 10 else "NOT all >= 10"))
    if "ogmge" in args.runs and "alone" in args.runs:
        gaps = [r["alone_weak"] - r["ogmge_weak"] for r in rows]
        print(f"{args.weak} accuracy gap (alone - inside joint OGM-GE): "
              + ", ".join(f"{g:.1f}" for g in gaps) + f"; mean {sum(gaps) / len(gaps):.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
