"""``ogmge plot RUN_DIR [RUN_DIR...]``: accuracy and coefficient curves of runs, overlaid."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "plot",
        help="plot fused / per-modality accuracy and coefficients of one or more runs",
        description="One figure (PNG of 1500 x 1000 pixels, or PDF/SVG/... by the --out suffix): fused accuracy per epoch, per-modality accuracy per "
        "epoch and the modulation coefficients per step, several runs overlaid with a legend.",
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", metavar="FILE",
                   help="output file, its format by the suffix (.png, .pdf, .svg, ...; default: RUN_DIR/plot.png "
                   "for one run, ./ogmge-plot.png for several)")
    p.add_argument("--split", choices=("val", "test"), default="val",
                   help="per-epoch accuracy of which split (default val: the split that selects the model; "
                   "runs trained without one, val_fraction 0, show test; test needs runs trained with "
                   "eval_test_every_epoch true)")
    p.add_argument("--smooth", type=int, default=1, metavar="N", help="moving average over N steps for k")
    return p


def run(args) -> int:
    from .plots import PIXELS, plot_runs

    out = args.out or (str(Path(args.runs[0]) / "plot.png") if len(args.runs) == 1 else "ogmge-plot.png")
    path = plot_runs(args.runs, out, split=args.split, smooth=args.smooth)
    size = f"{PIXELS[0]} x {PIXELS[1]} px" if path.suffix.lower() == ".png" else path.suffix.lower().lstrip(".")
    print(f"plot ({size}) written to {path}")
    return 0
