"""``ogmge prepare DATASET --source RAW_DIR --out CACHE_DIR``: build the fast cache of a paper dataset."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    from ogmge.data.paper import DATASETS

    p = subparsers.add_parser(
        "prepare",
        help="extract frames and audio features of a paper dataset into a cache",
        description="Extract 1 fps frames and audio (PyAV) from a paper dataset's raw layout and "
        "write a compact, resumable cache that the readers load (see docs/datasets.md).",
    )
    p.add_argument("dataset", choices=sorted(DATASETS), help="which paper dataset")
    p.add_argument("--source", required=True, metavar="RAW_DIR", help="the dataset's extracted/raw folder")
    p.add_argument("--out", required=True, metavar="CACHE_DIR", help="where to write the cache")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="parallel processes (default 1)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="stop at the first bad clip (default) or skip and list it in skipped.txt")
    p.add_argument("--split-file", default=None, metavar="FILE",
                   help="the train split list, if not at its official name in RAW_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def run(args) -> int:
    from ogmge.data.prepare import prepare_dataset

    report = prepare_dataset(
        args.dataset, args.source, args.out, workers=args.workers, on_error=args.on_error,
        split_file=args.split_file, progress=not args.no_progress,
    )
    print(report.summary())
    if report.skipped:
        print(f"skipped clips and reasons: {args.out}/skipped.txt")
    return 0
