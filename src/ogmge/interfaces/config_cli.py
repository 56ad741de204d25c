"""Command-line flags of a training configuration and their merge into ``TrainConfig``.

Resolution order: the ``--config`` preset or YAML file (or, with ``--resume``
and no ``--config``, the run's saved ``config.yaml``), then ``--set KEY=VALUE``
overrides, then the named flags. Every flag is its YAML key with ``-`` for ``_``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from ogmge import methods as method_registry
from ogmge.models import PREDICTIONS
from ogmge.modulation import MODES, SELECTIONS
from ogmge.training.config import (
    DATASETS,
    ESTIMATORS,
    FUSIONS,
    OPTIMIZERS,
    RETIRED_IMBALANCE,
    STOPPING_RULES,
    TrainConfig,
    yaml_key,
)

NO_END = "none"


def _none_or_int(text: str):
    return NO_END if text.lower() in ("none", "null", "") else int(text)


def _patience(text: str):
    low = text.lower()
    if low == "auto":
        return "auto"
    return NO_END if low in ("none", "null", "") else int(text)


class _Retired(argparse.Action):
    """A flag that no longer exists: a usage error that says what replaced it."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string}: {RETIRED_IMBALANCE}")


def add_config_flags(p: argparse.ArgumentParser) -> None:
    """The flags shared by ``ogmge train`` (all default to 'not given')."""
    g = p.add_argument_group("configuration")
    g.add_argument("--config", metavar="PRESET_OR_YAML",
                   help="a shipped preset name (see --list-presets) or a YAML file")
    g.add_argument("--set", metavar="KEY=VALUE", action="append", default=[],
                   help="override any YAML key (value parsed as YAML); repeatable")
    d = p.add_argument_group("data")
    d.add_argument("--dataset", choices=DATASETS)
    d.add_argument("--data-root", metavar="DIR", help="a paper dataset's prepared cache or extracted layout")
    d.add_argument("--split-file", metavar="FILE", help="the dataset's official split list")
    d.add_argument("--data", metavar="FILE", help="bring-your-own data (.npz or a directory with a manifest)")
    d.add_argument("--modalities", metavar="A,B", help="train only these modalities (e.g. a unimodal baseline)")
    d.add_argument("--val-fraction", type=float, metavar="F",
                   help="fraction of train held out for model selection (0: keep the last epoch)")
    d.add_argument("--imbalance", nargs="?", action=_Retired, help=argparse.SUPPRESS)
    m = p.add_argument_group("model")
    m.add_argument("--fusion", choices=FUSIONS)
    m.add_argument("--estimator", choices=ESTIMATORS, help="per-modality logits (default: by fusion)")
    m.add_argument("--width", type=int, help="ResNet-18 base width of the paper model (64 = paper)")
    m.add_argument("--opm", action=argparse.BooleanOptionalAction, default=None,
                   help="On-the-fly Prediction Modulation (TPAMI 2024), combinable with any mode")
    o = p.add_argument_group("balancing method")
    add_plugin_flag(o)
    o.add_argument("--method", metavar="NAME",
                   help=f"balancing method ({', '.join(method_registry.names())}, or a plug-in's; "
                   "'ogmge methods' lists them with their options; default: derived from --modulation and "
                   "--opm, the paper's flags; --method opm is --modulation Normal --opm; a+b chains methods)")
    o.add_argument("--method-opt", metavar="KEY=VALUE", action="append", default=[],
                   help="an option of the method (repeatable; 'ogmge methods NAME' lists them)")
    o.add_argument("--prediction", choices=PREDICTIONS,
                   help="the prediction rule (default: the method's own)")
    for flag, (key, owner, opt) in LEGACY_FLAGS.items():
        o.add_argument(flag, dest=key, type=opt.type, metavar=opt.name.upper(),
                       help=f"deprecated: --method {owner} --method-opt {opt.name}=VALUE ({opt.help})")
    o.add_argument("--modulation", choices=MODES)
    o.add_argument("--alpha", type=float)
    o.add_argument("--modulation-starts", type=int, metavar="EPOCH", help="first modulated epoch (0-based)")
    o.add_argument("--modulation-ends", type=_none_or_int, metavar="EPOCH",
                   help="last modulated epoch (0-based, inclusive; 'none' for no end)")
    o.add_argument("--modulate-params", choices=SELECTIONS)
    t = p.add_argument_group("optimisation")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="auto (default): SGD for the paper's encoders, Adam for generic encoders")
    t.add_argument("--patience", type=_patience, metavar="EPOCHS",
                   help="stop after this many epochs without a better validation accuracy ('none': never; "
                   "auto (default): max(10, a quarter of --epochs) for generic encoders, never for the paper's)")
    t.add_argument("--stopping", choices=STOPPING_RULES, metavar="RULE",
                   help="how the kept epoch is selected and when training stops: smoothed (mean validation "
                   "accuracy of the last epochs; no stop before 40%% of --epochs), raw (best single epoch), "
                   "auto (default: raw for the paper's encoders, smoothed otherwise); docs/training.md")
    t.add_argument("--seed", type=int)
    t.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (CUDA)")
    r = p.add_argument_group("run")
    r.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--out", metavar="RUN_DIR", help="run directory (checkpoints, logs, resolved config)")
    r.add_argument("--name", help="the run's name in plots (default: the run directory's name)")
    r.add_argument("--tensorboard", action=argparse.BooleanOptionalAction, default=None,
                   help="write TensorBoard event files to RUN_DIR/tb")
    r.add_argument("--num-workers", type=int)
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help="progress bars")
    r.add_argument("--eval-test-every-epoch", action=argparse.BooleanOptionalAction, default=None,
                   help="also log test metrics every epoch (default no: the test split is evaluated once, "
                   "at the end, on the checkpoint the validation split selected)")


def _legacy_flags() -> dict:
    """``{--flag: (config key, method, Option)}`` of the deprecated flat method flags (``Option.legacy_key``)."""
    out = {}
    for name in method_registry.names():
        for opt in method_registry.get(name).options:
            if opt.legacy_key:
                out["--" + opt.legacy_key.replace("_", "-")] = (opt.legacy_key, name, opt)
    return out


LEGACY_FLAGS = _legacy_flags()

#: Named flags that map one-to-one on a config key.
FLAG_KEYS = (
    "dataset", "data_root", "split_file", "data", "modalities", "val_fraction", "fusion",
    "estimator", "width", "opm", "method", "prediction", *(k for k, _, _ in LEGACY_FLAGS.values()),
    "modulation", "alpha", "modulation_starts", "modulation_ends",
    "modulate_params", "epochs", "batch_size", "lr", "optimizer", "patience", "stopping", "seed", "amp", "device", "out", "name",
    "tensorboard", "num_workers", "progress", "eval_test_every_epoch",
)


def add_plugin_flag(group) -> None:
    """``--plugin MODULE`` (repeatable): import a module that registers methods."""
    group.add_argument("--plugin", metavar="MODULE", action="append", default=[],
                       help="import MODULE first (it registers balancing methods; repeatable; also "
                       f"${method_registry.registry.PLUGIN_ENV}, comma-separated)")


def load_plugins(args: argparse.Namespace) -> None:
    """Import the ``--plugin`` modules and pass them on to worker processes (the environment)."""
    import os

    mods = [m for m in (getattr(args, "plugin", None) or []) if m]
    if not mods:
        method_registry.load_plugins()
        return
    method_registry.load_plugins(mods)
    env = method_registry.registry.PLUGIN_ENV
    have = [m for m in os.environ.get(env, "").split(",") if m]
    os.environ[env] = ",".join(dict.fromkeys([*have, *mods]))


def parse_method_opts(items: list[str], method_name: str | None) -> dict:
    """``--method-opt KEY=VALUE`` items as ``{key: value}``, each parsed by its declared type."""
    out: dict = {}
    if not items:
        return out
    if method_name is None:
        raise ValueError("--method-opt needs --method NAME (or method: in the config)")
    cls = method_registry.get(method_name)
    declared = {o.name: o for o in cls.options}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--method-opt needs KEY=VALUE, got {item!r}")
        key, value = (part.strip() for part in item.split("=", 1))
        if key not in declared:
            raise ValueError(f"method {cls.name} has no option {key!r} (its options: "
                             f"{', '.join(declared) or 'none'})")
        out[key] = declared[key].parse(value, owner=cls.name)
    return out


def parse_compare_method_opts(items: list[str]) -> dict[str, dict]:
    """``compare``'s ``--method-opt METHOD.KEY=VALUE`` items as ``{method: {key: value}}``,
    each value parsed by the option's declared type (errors name the method, the option
    and the value)."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, option = key.strip().partition(".")
        if not sep or not dot or not method or not option:
            raise ValueError(f"compare takes --method-opt METHOD.KEY=VALUE (e.g. ogm_ge.alpha=0.3), got {item!r}")
        cls = method_registry.get(method)
        declared = {o.name: o for o in cls.options}
        if option not in declared:
            raise ValueError(f"method {cls.name} has no option {option!r} (its options: "
                             f"{', '.join(declared) or 'none'})")
        out.setdefault(method, {})[option] = declared[option].parse(value.strip(), owner=cls.name)
    return out


def parse_set(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set needs KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[yaml_key(key.strip())] = yaml.safe_load(value)
    return out


def _as_written(base: dict, config) -> dict:
    """``base`` (a loaded config) without the method options the file left out and that sit at
    their defaults, so that a dataset given on the command line still applies its preset."""
    from ogmge.training.config import _read_config_text

    spec = base.get("method")
    if not isinstance(spec, dict):
        return base
    try:
        raw = yaml.safe_load(_read_config_text(config)[0]) or {}
    except (OSError, yaml.YAMLError):
        return base
    written = raw.get("method") if isinstance(raw, dict) else None
    keep = set(written) if isinstance(written, dict) else set()
    try:
        defaults = {o.name: o.default for o in method_registry.get(spec["name"]).options}
    except ValueError:  # a plug-in's method known only through method_class: keep it as loaded
        return base
    base["method"] = {k: v for k, v in spec.items()
                      if k == "name" or k in keep or k not in defaults or v != defaults[k]}
    return base


def config_from_args(args: argparse.Namespace, *, resume_dir: str | None = None) -> TrainConfig:
    """The resolved configuration of a command line (validated)."""
    load_plugins(args)
    if args.config:
        base = _as_written(TrainConfig.load(args.config).to_dict(), args.config)
    elif resume_dir:
        saved = Path(resume_dir) / "config.yaml"
        if not saved.is_file():
            raise FileNotFoundError(f"cannot resume {resume_dir}: no config.yaml there (is it a run directory?)")
        base = TrainConfig.load(saved).to_dict()
    else:
        base = TrainConfig().to_dict()
    base.update(parse_set(getattr(args, "set", []) or []))
    given = {k: getattr(args, k) for k in FLAG_KEYS if getattr(args, k, None) is not None}
    for key in ("modulation_ends", "patience"):
        if given.get(key) == NO_END:
            given[key] = None
    if "modalities" in given:
        given["modalities"] = [m.strip() for m in given["modalities"].split(",") if m.strip()]
    if given.get("data") and "dataset" not in given:
        given["dataset"] = "byo"
    if "method" in given:  # the method decides the paper's flags unless they are given too
        meaning = dict(method_registry.get(given["method"]).paper_flags)
        for flag, wanted in meaning.items():
            if flag in given and given[flag] != wanted:
                raise ValueError(f"--method {given['method']} means --{flag} {wanted}, but --{flag} "
                                 f"{given[flag]} was given too; give one of them")
        for flag in meaning:
            if flag not in given:
                base.pop(flag, None)
        old = base.get("method")
        same = isinstance(old, dict) and old.get("name") == given["method"] or old == given["method"]
        given["method"] = dict(old) if same and isinstance(old, dict) else {"name": given["method"]}
    opts = getattr(args, "method_opt", None) or []
    if opts:
        current = given.get("method", base.get("method"))
        if current is None:
            current = TrainConfig.from_dict({**base, **given}).resolved_method
        name = current if isinstance(current, str) else current["name"]
        spec = {"name": name} if isinstance(current, str) else dict(current)
        spec.update(parse_method_opts(opts, name))
        given["method"] = spec
    base.update(given)
    if resume_dir:
        if base.get("out") and "out" in given and Path(given["out"]) != Path(resume_dir):
            raise ValueError(f"--out ({given['out']}) and --resume ({resume_dir}) name different run directories")
        base["out"] = str(resume_dir)
    return TrainConfig.from_dict(base)
