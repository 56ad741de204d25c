"""``ogmge prepare DATASET --source RAW_DIR --out CACHE_DIR``: build the fast cache of a paper
dataset, or (``ogmge prepare clips --source DIR_OR_CSV``) of your own folder or list of clips."""

from __future__ import annotations

import argparse
import sys

#: Options of ``prepare clips`` only: (flag, type, metavar, help).
CLIP_OPTIONS = (
    ("--fps", float, "F", "frames kept per second of video (default 1)"),
    ("--max-frames", int, "N", "at most N frames per clip, from its start (default 30)"),
    ("--sample-rate", int, "HZ", "audio resampled to HZ (default 22050, as CREMA-D)"),
    ("--seconds", float, "S", "audio seconds kept, tiled if shorter (default 3)"),
    ("--n-fft", int, "N", "STFT size (default 512)"),
    ("--hop-length", int, "N", "STFT hop (default 353)"),
    ("--min-seconds", float, "S", "refuse clips whose audio or video is shorter (default 0.5)"),
)


def register(subparsers) -> argparse.ArgumentParser:
    from ogmge.data.paper import DATASETS

    p = subparsers.add_parser(
        "prepare",
        help="extract frames and audio features of a paper dataset or of your clips into a cache",
        description="Extract frames and audio (PyAV) from a paper dataset's raw layout, or from your "
        "own clips ('clips': a folder DIR/<class>/<clip>.mp4 or a CSV path,label[,split][,group]), "
        "and write a compact, resumable cache that training reads (see docs/datasets.md).",
    )
    p.add_argument("dataset", choices=[*sorted(DATASETS), "clips"], help="which paper dataset, or 'clips'")
    p.add_argument("--source", required=True, metavar="RAW_DIR",
                   help="the dataset's extracted/raw folder; for clips a folder of class subfolders or a CSV")
    p.add_argument("--out", required=True, metavar="CACHE_DIR", help="where to write the cache")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="parallel processes (default 1)")
    p.add_argument("--on-error", choices=("raise", "skip"), default="raise",
                   help="stop at the first bad clip (default) or skip and list it in skipped.txt")
    p.add_argument("--split-file", default=None, metavar="FILE",
                   help="the train split list, if not at its official name in RAW_DIR (paper datasets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    g = p.add_argument_group("clips only (defaults: the CREMA-D pipeline)")
    for flag, kind, metavar, text in CLIP_OPTIONS:
        g.add_argument(flag, type=kind, default=None, metavar=metavar, help=text)
    return p


def _clip_options(args) -> dict:
    return {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, *_ in CLIP_OPTIONS
            if getattr(args, flag[2:].replace("-", "_")) is not None}


def run(args) -> int:
    options = _clip_options(args)
    if args.dataset == "clips":
        return _run_clips(args, options)
    if options:
        flags = ", ".join("--" + k.replace("_", "-") for k in options)
        raise ValueError(f"{flags} apply to 'prepare clips' only, not to {args.dataset!r}")
    from ogmge.data.prepare import prepare_dataset

    report = prepare_dataset(
        args.dataset, args.source, args.out, workers=args.workers, on_error=args.on_error,
        split_file=args.split_file, progress=not args.no_progress,
    )
    print(report.summary())
    if report.skipped:
        print(f"skipped clips and reasons: {args.out}/skipped.txt")
    return 0


def _run_clips(args, options: dict) -> int:
    from ogmge.data.clips import ClipSettings, prepare_clips

    if args.split_file:
        raise ValueError("--split-file does not apply to clips; give a CSV with a 'split' column as --source")
    settings = ClipSettings(**options)
    try:
        report = prepare_clips(args.source, args.out, settings=settings, workers=args.workers,
                               on_error=args.on_error, progress=not args.no_progress)
    except ImportError as exc:  # PyAV missing: name the extra, no traceback
        print(f"ogmge prepare clips: error: {exc}", file=sys.stderr)
        return 2
    print(report.summary())
    print(f"classes: {', '.join(report.class_names)}")
    if report.skipped:
        print("skipped:")
        for clip, kind, reason in report.skipped[:50]:
            print(f"  {clip}  [{kind}]  {reason}")
        more = len(report.skipped) - 50
        print(f"{'(and ' + str(more) + ' more) ' if more > 0 else ''}listed in {args.out}/skipped.txt")
    return 0
