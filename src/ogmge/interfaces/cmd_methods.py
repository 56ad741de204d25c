"""``ogmge methods [NAME]``: the registered balancing methods, their papers and options."""

from __future__ import annotations

import argparse


def register(subparsers) -> argparse.ArgumentParser:
    from .config_cli import add_plugin_flag

    p = subparsers.add_parser(
        "methods",
        help="list the balancing methods (papers, requirements, options)",
        description="List the registered balancing methods; with NAME, one method's paper, requirements "
        "and options (type, default and its source, range, tuning space), its presets per paper dataset "
        "(the authors' settings there, used unless the option is set) and the authors' schedule. Options "
        "are set with --method NAME --method-opt KEY=VALUE, or in YAML as method: {name: NAME, KEY: VALUE}.",
    )
    p.add_argument("name", nargs="?", help="a method's name (e.g. gblend, or a+b for a chain)")
    add_plugin_flag(p)
    return p


def run(args) -> int:
    from ogmge import methods

    from .config_cli import load_plugins

    load_plugins(args)
    if args.name:
        print(methods.describe(methods.get(args.name)))
        return 0
    for name in methods.names():
        cls = methods.get(name)
        opts = ", ".join(o.name for o in cls.options) or "-"
        print(f"{name:<14} {methods.registry.first_line(cls)}")
        presets = f"; dataset presets: {', '.join(cls.dataset_presets)}" if cls.dataset_presets else ""
        print(f"{'':<14} paper: {cls.paper or '-'}; options: {opts}{presets}")
    return 0
