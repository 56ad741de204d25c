"""``ogmge eval --checkpoint PATH``: metrics of a checkpoint on its run's test split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ogmge.io_utils import atomic_write_text


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "eval",
        help="evaluate a checkpoint (fused and per-modality accuracy, macro-F1, mAP)",
        description="Rebuild the model of a checkpoint and evaluate it on a split of its run's data.",
    )
    p.add_argument("--checkpoint", required=True, metavar="PATH", help="a checkpoint file, or a run directory (best.pt)")
    p.add_argument("--split", choices=("test", "val", "train"), default="test")
    p.add_argument("--data-root", metavar="DIR", help="where the data are now, if moved")
    p.add_argument("--split-file", metavar="FILE")
    p.add_argument("--data", metavar="FILE", help="bring-your-own data file, if moved")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="FILE", help="also write the metrics as JSON")
    p.add_argument("--allow-data-change", action="store_true",
                   help="evaluate although the data differ from the run's (fingerprint)")
    from .config_cli import add_plugin_flag

    add_plugin_flag(p)
    return p


def run(args) -> int:
    from ogmge.training import evaluate_checkpoint
    from ogmge.training.checkpoint import best_checkpoint_path

    from .config_cli import load_plugins

    load_plugins(args)
    path = Path(args.checkpoint)
    if path.is_dir():
        path = best_checkpoint_path(path)
    overrides = {k: str(Path(getattr(args, k)).absolute()) for k in ("data_root", "split_file", "data")
                 if getattr(args, k)}
    metrics = evaluate_checkpoint(path, split=args.split, overrides=overrides, device=args.device,
                                  allow_data_change=args.allow_data_change)
    print(f"{path} on {args.split} ({metrics['n']} samples)")
    print(f"  accuracy  {metrics['acc']:.4f}")
    print(f"  macro-F1  {metrics['macro_f1']:.4f}")
    print(f"  mAP       {metrics['map']:.4f}")
    for key, value in metrics.items():
        if key.startswith("modality_acc/"):
            print(f"  {key.split('/', 1)[1]:<9} {value:.4f}  (per-modality accuracy)")
    for key, value in metrics.items():
        if key.startswith("head_acc/"):
            print(f"  {key.split('/', 1)[1]:<9} {value:.4f}  (its own head's accuracy)")
    per_class = ", ".join("-" if v is None else f"{v:.3f}" for v in metrics["per_class_acc"])
    print(f"  per class [{per_class}]")
    if metrics.get("behaviour"):
        print(f"  behaviour {metrics['behaviour']}")
    if args.json:
        try:
            atomic_write_text(args.json, json.dumps(metrics, indent=2) + "\n")
        except OSError as exc:
            raise ValueError(f"cannot write --json {args.json}: {exc.strerror or exc}") from None
        print(f"metrics written to {args.json}")
    return 0
