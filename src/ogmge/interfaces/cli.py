"""The ``ogmge`` command line. Each subcommand lives in ``cmd_<name>.py``
with ``register(subparsers)`` and ``run(args) -> int``."""

from __future__ import annotations

import argparse
import importlib
import sys

#: Subcommands, in the order ``ogmge --help`` lists them.
SUBCOMMANDS: tuple[str, ...] = ("prepare", "train", "eval", "compare", "demo", "plot", "methods")


def build_parser() -> argparse.ArgumentParser:
    from ogmge import __version__

    parser = argparse.ArgumentParser(
        prog="ogmge",
        description="Balanced multimodal learning with OGM-GE (CVPR 2022) and OPM (TPAMI 2024).",
    )
    parser.add_argument("--version", action="version", version=f"ogmge {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"ogmge.interfaces.cmd_{name}")
        p = module.register(sub)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, TypeError) as exc:
        print(f"ogmge {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
