"""``ogmge train``: train from a preset / YAML file plus flags; ``--resume RUN_DIR`` continues a run."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys


def register(subparsers) -> argparse.ArgumentParser:
    from .config_cli import add_config_flags

    p = subparsers.add_parser(
        "train",
        help="train a multimodal classifier (Normal, OGM, OGM-GE, OPM)",
        description="Train from a preset or YAML file (--config) plus flag overrides. The resolved "
        "configuration, checkpoints (best.pt, last.pt), metrics.jsonl, trace.jsonl and results.json "
        "go to --out RUN_DIR. Under torchrun it trains with DDP (only rank 0 writes).",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the interrupted run in RUN_DIR")
    p.add_argument("--overwrite", action="store_true",
                   help="start over: delete the earlier run in --out first (only an ogmge run directory)")
    p.add_argument("--allow-data-change", action="store_true",
                   help="with --resume: continue although the data differ from the run's (fingerprint)")
    p.add_argument("--list-presets", action="store_true", help="list the shipped presets and exit")
    p.add_argument("--print-config", action="store_true", help="print the resolved YAML and exit")
    add_config_flags(p)
    return p


def setup_logging() -> None:
    """Log progress lines of ``ogmge.training`` to the current stderr (replacing an earlier handler)."""
    logger = logging.getLogger("ogmge.training")
    for h in list(logger.handlers):
        if getattr(h, "_ogmge_cli", False):
            logger.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    handler._ogmge_cli = True  # type: ignore[attr-defined]  # marks the handler as ours
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run(args) -> int:
    from ogmge.training import list_presets, train

    from .config_cli import config_from_args

    if args.list_presets:
        print("\n".join(list_presets()))
        return 0
    config = config_from_args(args, resume_dir=args.resume)
    if args.print_config:
        print(config.to_yaml(), end="")
        return 0
    if config.out is None:
        raise ValueError("train needs --out RUN_DIR (or out: in the config)")
    setup_logging()
    if args.overwrite and args.resume:
        raise ValueError("--overwrite starts a run over and --resume continues it: give one of them")
    try:
        result = train(config, resume=bool(args.resume), overwrite=args.overwrite,
                       allow_data_change=args.allow_data_change)
    except FileExistsError as exc:
        raise ValueError(str(exc)) from None
    except KeyboardInterrupt:
        print(f"ogmge train: interrupted; {_kept(config.out)}", file=sys.stderr, flush=True)
        return 130
    except OSError as exc:
        if isinstance(exc, FileNotFoundError) and not exc.filename:
            raise
        where = f"cannot write {exc.filename}" if exc.filename else "a write failed"
        free = " (free some space first)" if exc.errno == errno.ENOSPC else ""
        raise ValueError(f"{where}: {exc.strerror or exc}; {_kept(config.out)}{free}") from None
    if result.run_dir is not None and os.environ.get("RANK", "0") != "0":
        return 0  # under torchrun only rank 0 reports
    if result.test_metrics is not None:
        t = result.test_metrics
        mods = " ".join(f"{k.split('/', 1)[1]} {v:.4f}" for k, v in t.items() if k.startswith("modality_acc/"))
        print(f"test (epoch {result.best_epoch + 1}, selected by {result.selected_by}): acc {t['acc']:.4f} "
              f"macro-F1 {t['macro_f1']:.4f} mAP {t['map']:.4f} | {mods}")
    print(f"run directory: {result.run_dir}")
    return 0


def _kept(run_dir) -> str:
    """What an interrupted run left: its last checkpoint (the epoch) and how to continue."""
    from pathlib import Path

    from ogmge.training import load_checkpoint_file
    from ogmge.training.checkpoint import LAST

    last = Path(run_dir) / LAST
    try:
        epoch = int(load_checkpoint_file(last)["epoch"])
    except (OSError, ValueError, KeyError):
        return f"no checkpoint was written in {run_dir}, so there is nothing to resume: start the run again"
    return (f"the checkpoint of the last finished epoch is intact ({last}, epoch {epoch + 1}); "
            f"continue with: ogmge train --resume {run_dir}")
