"""Cost of every registered balancing method, relative to Normal, through the real trainer.

Each method is looked up in the registry and trained by the real ``Trainer``
(``ogmge.training.loop``: its model built for the method's declarations, its
hooks, the OGM-GE monitor, the non-finite guard, validation, the best-epoch copy)
on the same model and the same fixed small data set, with nothing in this script
knowing a method by name. A round trains every method once, for a short run of
``--epochs`` epochs of ``--steps`` training batches each (plus one validation
batch per epoch); the methods alternate within a round and their order rotates
between rounds, so that drift of a shared machine hits every method alike. Two
figures per method, each the median over rounds of its ratio to that round's
Normal, with the range (min-max) of that ratio over rounds:

- **step**: one training step (``Trainer._train_step``: forward, loss, backward, the
  method's per-step hooks, optimizer step), the median over the run's steps; and
  the cheapest and dearest epoch (median step per epoch) for methods whose step
  changes during a run (phases: UMT's teacher epochs, ReconBoost's stages);
- **run**: the whole short run (``Trainer.fit``): the steps and everything a method
  does per epoch beyond them (G-Blending's copies, PMR's prototype pass, Re-learning's
  clustering, valuation passes and re-sampled epochs, phases), validation included.
  This is the honest figure for a method that declares per-epoch work (the
  ``per-epoch work`` column lists what it declares: ``trains_copies``,
  ``wants_split_features``, ``wants_epoch_features``, ``wants_initial_losses``,
  its own ``begin_epoch``, ``extra_steps_per_epoch``). Schedules that depend on the
  run's length (G-Blending's ``super_epoch``, valuation's ``warmup``, the scaled
  schedules of Re-learning, ReconBoost, AUG, UMT) make this figure depend on
  ``--epochs``: 10 (the default) is one G-Blending super-epoch, whose copies then
  cost what they cost on average in any run of a multiple of 10 epochs.

Methods that depend on other runs (``depends_on``: UMT's teachers, warm starts) are
timed without them, with their defaults (UMT trains its teachers in the run).

``mmpareto_authors`` is a reference, not a registered method: MMPareto with the
authors' per-step control flow (GeWu-Lab/MMPareto_ICML2024, ``code/MMPareto.py``),
written here as a method class handed to the same trainer: three backward passes
with a retained graph (fused, audio, visual loss), cloning every encoder gradient
after each, cosines and the min-norm branch decided on the host, then a fourth
backward of the summed loss and a new tensor per gradient. It is timed whenever
``mmpareto`` is (``--no-reference`` leaves it out); the goal is MMPareto <= 0.8 x
this reference.

    python benchmarks/method_cost.py --small                    # all methods, paper model at reduced size
    python benchmarks/method_cost.py --small --only mmpareto,masam
    python benchmarks/method_cost.py --model vector             # a bring-your-own-like vector model
    python benchmarks/method_cost.py --device cuda --rounds 5   # paper sizes on a GPU
    python benchmarks/method_cost.py --small --clock cpu --threads 1   # on a busy shared CPU

``--clock cpu`` measures the process's CPU time (``time.process_time``) instead of
wall time: on a CPU shared with other jobs, wall time mostly measures the others;
with one thread (``--threads 1``), CPU time is the work of the step itself.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F

from ogmge.data.arrays import ArrayDataset
from ogmge.methods import BalancingMethod, MMPareto, registry
from ogmge.methods.base import FUSED
from ogmge.training import DataBundle, TrainConfig
from ogmge.training.compare.cost import declared_extra_steps
from ogmge.training.loop import Trainer

#: The reference's name (not a registered method).
REFERENCE = "mmpareto_authors"


class AuthorsMMPareto(MMPareto):
    """MMPareto with the authors' per-step control flow (module docstring); a timing reference."""

    name = REFERENCE
    paper = "reference: the authors' released step of MMPareto (GeWu-Lab/MMPareto_ICML2024, code/MMPareto.py)"
    all_params: list[torch.nn.Parameter]  # the model's, zeroed between passes like opt.zero_grad()

    @classmethod
    def build(cls, ctx, **options):
        method = cast(AuthorsMMPareto, super().build(ctx, **options))
        modules = [*(ctx.encoders or {}).values(), *(ctx.heads or {}).values(), ctx.fusion, *ctx.parts.values()]
        method.all_params = [p for m in modules if m is not None for p in m.parameters()]
        return method

    def _zero_grad(self) -> None:  # opt.zero_grad() of the released code
        for p in self.all_params:
            p.grad = None

    def backward(self, total, terms: Mapping, *, scaler=None) -> None:
        enc = {n: [p for p in self.params[n]] for n in self.modalities}
        grads: dict[str, dict[str, list]] = {n: {} for n in self.modalities}
        for key in (FUSED, *self.modalities):
            terms[key].backward(retain_graph=True)
            for n in self.modalities:
                if key in (FUSED, n):
                    grads[n][key] = [cast(torch.Tensor, p.grad).detach().clone() for p in enc[n]]
            self._zero_grad()
        weights = {}
        for n in self.modalities:
            a = torch.cat([g.flatten() for g in grads[n][FUSED]])
            b = torch.cat([g.flatten() for g in grads[n][n]])
            if F.cosine_similarity(a, b, dim=0) > 0:  # host synchronisation, as in the original
                weights[n] = (0.5, 0.5)
            else:
                gamma = float(torch.clamp(torch.dot(b - a, b) / (a - b).pow(2).sum(), 0, 1))
                weights[n] = (gamma, 1 - gamma)
        sum(terms[k] for k in (FUSED, *self.modalities)).backward()
        for n in self.modalities:
            w_mm, w_u = weights[n]
            for i, p in enumerate(enc[n]):
                three = torch.norm(cast(torch.Tensor, p.grad).detach().clone())
                new = 2 * w_mm * grads[n][FUSED][i] + 2 * w_u * grads[n][n][i]
                ratio = three / torch.norm(new)
                p.grad = (ratio * new * self.scale) if ratio > 1 else new * self.scale


class TimedTrainer(Trainer):
    """The trainer, each training step timed with ``clock`` (``steps``: ``(epoch, seconds)``)."""

    clock: Callable[[], float] = time.perf_counter
    steps: list[tuple[int, float]]

    def _train_step(self, batch, epoch):
        sync(self.device)
        t0 = self.clock()
        result = super()._train_step(batch, epoch)
        sync(self.device)
        self.steps.append((epoch, self.clock() - t0))
        return result


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- setup
def make_data(kind: str, *, small: bool, n_train: int, n_val: int, classes: int) -> DataBundle:
    """A fixed data set: the paper's two modalities (spectrogram, one RGB frame) or two vectors."""
    g = torch.Generator().manual_seed(0)
    n = n_train + n_val
    labels = torch.arange(n) % classes
    if kind == "paper":
        spec, image = ((64, 64), 64) if small else ((257, 188), 224)
        arrays = {"audio": torch.randn(n, 1, *spec, generator=g), "visual": torch.randn(n, 1, 3, image, image, generator=g)}
        kinds = {"audio": "spectrogram", "visual": "video"}
    else:
        centers = {"a": torch.randn(classes, 64, generator=g), "b": torch.randn(classes, 32, generator=g)}
        arrays = {m: c[labels] * s + torch.randn(n, c.shape[1], generator=g)
                  for (m, c), s in zip(centers.items(), (1.0, 0.3))}
        kinds = {"a": "vector", "b": "vector"}
    full = ArrayDataset(arrays, labels, kinds=kinds, num_classes=classes)
    return DataBundle(train=full.subset(range(n_train)), val=full.subset(range(n_train, n)), test=None)


def make_config(args, *, epochs: int) -> TrainConfig:
    model: dict[str, Any]
    if args.model == "paper":
        model = {"width": 16 if args.small else 64, "model_options": {"builder": "paper"}}
    else:
        model = {"model_options": {"builder": "generic", "hidden": 64, "out_dim": 64}}
    return TrainConfig(
        dataset="builtin", epochs=epochs, batch_size=args.batch_size, lr=1e-4, optimizer="sgd", momentum=0.9,
        weight_decay=1e-4, lr_step=1000, patience=None, seed=0, device=args.device, out=None, progress=False,
        num_workers=0, val_fraction=0.1, **model,
    )


def declared_work(method: BalancingMethod, steps: int) -> str:
    """What ``method`` declares it does per epoch beyond its steps (and other run-level traits)."""
    out = []
    if method.trains_copies:
        out.append("trains copies")
    if method.wants_split_features:
        out.append("split features")
    if method.wants_epoch_features:
        out.append(f"epoch features ({method.subset:g} of train)")
    if method.wants_initial_losses:
        out.append("initial losses")
    if method.fits_on_validation:
        out.append(f"fits on validation (cross-fit {method.cross_fit})")
    if method.predictions[0] != "fused":
        out.append(f"{method.predictions[0]} prediction fitted")
    if type(method).begin_epoch is not BalancingMethod.begin_epoch:
        out.append("begin_epoch")
    extra = declared_extra_steps(method, steps, 1)
    if extra:
        out.append(f"{extra:g} extra steps/epoch")
    if method.owns_step:
        out.append("owns the step")
    if method.depends_on:
        out.append(f"depends on {', '.join(method.depends_on)} (timed without)")
    return ", ".join(out) or "—"


def resolve_methods(args) -> dict[str, type[BalancingMethod]]:
    """Normal first, then the asked methods (registry order), then the reference."""
    names = list(registry.names())
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w != REFERENCE and not registry.is_registered(w)]
        if unknown:
            raise SystemExit(f"--only: unknown methods {unknown}; registered: {', '.join(names)}"
                             f" (and the reference {REFERENCE})")
        names = ["normal", *(w for w in wanted if w != "normal")]
    out: dict[str, type[BalancingMethod]] = {"normal": registry.get("normal")}
    for n in names:
        if n != REFERENCE:
            out.setdefault(n, registry.get(n))
    if (args.reference and "mmpareto" in out) or REFERENCE in names:
        out[REFERENCE] = AuthorsMMPareto
    return out


# ----------------------------------------------------------------------------- timing
def run_once(cls, config: TrainConfig, data: DataBundle, clock) -> dict:
    """One short run of ``cls``: its steps' times per epoch and the whole ``fit``'s time."""
    trainer = TimedTrainer(config, datasets=data, method=cls)
    trainer.clock, trainer.steps = clock, []
    sync(trainer.device)
    t0 = clock()
    trainer.fit()
    sync(trainer.device)
    run = clock() - t0
    per_epoch: dict[int, list[float]] = {}
    for epoch, seconds in trainer.steps:
        per_epoch.setdefault(epoch, []).append(seconds)
    return {"run": run, "step": statistics.median(s for _, s in trainer.steps),
            "epochs": {e: statistics.median(v) for e, v in per_epoch.items()},
            "work": declared_work(trainer.method, math.ceil(len(data.train) / config.batch_size))}


def ratios(values: list[float], ref: list[float]) -> tuple[float, float, float]:
    r = [a / b for a, b in zip(values, ref)]
    return statistics.median(r), min(r), max(r)


def fmt(med: float, lo: float, hi: float, *, normal: bool = False) -> str:
    return "1.00" if normal else f"{med:.2f} ({lo:.2f}–{hi:.2f})"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=("paper", "vector"), default="paper",
                    help="the paper's model (two ResNet-18 encoders, concat fusion) or a vector model "
                         "(two MLP encoders on 64- and 32-dim inputs, like a bring-your-own file)")
    ap.add_argument("--small", action="store_true",
                    help="paper model: batch 16, 64 x 64 inputs, width 16 (a quick CPU run)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default 16 with --small or --model vector, else 64")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="training steps per epoch (the data set's size in batches)")
    ap.add_argument("--epochs", type=int, default=10, help="epochs of each short run (see the run figure)")
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                    help="wall time, or the process's CPU time (robust on a shared CPU; use with --threads 1)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--only", default=None, metavar="A,B",
                     help=f"time only these methods (normal is always timed), e.g. gblend,mdrop,{REFERENCE}")
    sel.add_argument("--all", action="store_true", help="every registered method (the default)")
    ap.add_argument("--no-reference", dest="reference", action="store_false",
                    help=f"leave out {REFERENCE} (timed with mmpareto by default)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false",
                    help="skip the untimed warm-up run of every method (--epochs epochs of 1 step)")
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.steps < 1 or args.epochs < 2:
        raise SystemExit("--rounds and --steps must be >= 1 and --epochs >= 2 (phased methods need two)")
    args.batch_size = args.batch_size or (16 if args.small or args.model == "vector" else 64)
    threads, logger = torch.get_num_threads(), logging.getLogger("ogmge")
    level = logger.level
    limits: contextlib.AbstractContextManager = contextlib.nullcontext()
    if args.threads:
        torch.set_num_threads(args.threads)
        try:  # numpy's BLAS and OpenMP pools too (their idle spinning would count as CPU time)
            from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

            limits = threadpool_limits(args.threads)
        except ImportError:
            pass
    logger.setLevel(logging.ERROR)  # no per-run training logs between the rows
    try:
        with limits:
            return measure(args)
    finally:
        torch.set_num_threads(threads)
        logger.setLevel(level)


def measure(args) -> int:
    """Warm-up, the rounds, the table (``main``'s work); 1 when a method failed."""
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    methods = resolve_methods(args)
    data = make_data(args.model, small=args.small, n_train=args.steps * args.batch_size, n_val=args.batch_size,
                     classes=args.classes)
    config = make_config(args, epochs=args.epochs)

    failed: dict[str, str] = {}
    if args.warmup:  # first-call costs (kernels, lazy imports) out of round 1; a method that cannot run shows here
        warm = make_data(args.model, small=args.small, n_train=args.batch_size, n_val=args.batch_size,
                         classes=args.classes)
        for key, cls in methods.items():
            try:
                run_once(cls, config, warm, clock)  # every epoch's path (e.g. a clustering's first import)
            except Exception as exc:  # noqa: BLE001 - reported in the table, the others still timed
                failed[key] = f"{type(exc).__name__}: {exc}"
    keys = [k for k in methods if k not in failed]
    if "normal" not in keys:
        raise SystemExit(f"normal failed: {failed['normal']}")
    per_round: dict[str, list[dict]] = {k: [] for k in keys}
    for r in range(args.rounds):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for k in order:
            if k in failed:
                continue
            try:
                per_round[k].append(run_once(methods[k], config, data, clock))
            except Exception as exc:  # noqa: BLE001
                failed[k] = f"{type(exc).__name__}: {exc}"
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    keys = [k for k in keys if k not in failed]

    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    if args.model == "paper":
        spec, image = ((64, 64), 64) if args.small else ((257, 188), 224)
        what = (f"paper model (ResNet-18 x 2, concat), width {config.width}, audio 1 x {spec[0]} x {spec[1]}, "
                f"visual 1 x 3 x {image} x {image}")
    else:
        what = "vector model (MLP encoders, hidden 64, out 64; inputs 64 and 32), concat"
    print(f"device: {where}; {what}; batch {args.batch_size}; {args.rounds} rounds of a {args.epochs}-epoch run "
          f"x {args.steps} steps (+ 1 validation batch per epoch); {args.clock} clock")
    print("step: one Trainer._train_step, median over the run's steps; epochs: its cheapest and dearest epoch "
          "(median step per epoch); run: the whole Trainer.fit. Ratios to Normal in the same round: median "
          "(min–max) over rounds.")
    print()
    print("| method | ms / step | step × Normal | step × Normal, cheapest–dearest epoch | ms / run | run × Normal "
          "| per-epoch work declared |")
    print("|---|---|---|---|---|---|---|")
    ref = per_round["normal"]
    for k in keys:
        rows = per_round[k]
        step = ratios([x["step"] for x in rows], [x["step"] for x in ref])
        run = ratios([x["run"] for x in rows], [x["run"] for x in ref])
        by_epoch = [statistics.median(x["epochs"][e] / n["epochs"][e] for x, n in zip(rows, ref))
                    for e in sorted(ref[0]["epochs"])]
        span = "—" if k == "normal" else f"{min(by_epoch):.2f}–{max(by_epoch):.2f}"
        ms_step = 1e3 * statistics.median(x["step"] for x in rows)
        ms_run = 1e3 * statistics.median(x["run"] for x in rows)
        print(f"| {k} | {ms_step:.1f} | {fmt(*step, normal=k == 'normal')} | {span} | {ms_run:,.0f} | "
              f"{fmt(*run, normal=k == 'normal')} | {rows[0]['work']} |")
    for k, why in failed.items():
        print(f"| {k} | failed: {why} | | | | | |")
    if {"mmpareto", REFERENCE} <= set(keys):
        med, lo, hi = ratios([x["step"] for x in per_round["mmpareto"]], [x["step"] for x in per_round[REFERENCE]])
        print(f"\nmmpareto / {REFERENCE} (step): {med:.2f} ({lo:.2f}–{hi:.2f}); goal <= 0.8: "
              f"{'met' if med <= 0.8 else 'MISS'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
