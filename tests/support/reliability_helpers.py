"""Tiny bring-your-own data, configs, and kill -9 machinery for the reliability tests.

Kill points are events counted in a forked child process that trains: an
optimiser step, ``torch.save`` (killed before it or half way through writing),
``os.fsync``, ``os.replace`` (before or after the rename). The child kills itself
with SIGKILL at the chosen event, so nothing in Python gets to clean up.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import torch

from ogmge.data.byo import save_byo
from ogmge.interfaces.cli import main
from ogmge.training import TrainConfig, load_checkpoint_file, train
from ogmge.training.logs import read_jsonl

TIMING = ("train/seconds", "train/samples_per_s")


def tiny_npz(path, *, n=48, classes=3, dim=4, seed=0, labels=None, modalities=("a", "b"), **kw) -> Path:
    """``n`` samples of vector modalities; ``a`` carries the label clearly, the others faintly."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes if labels is None else np.asarray(labels)
    centers = rng.normal(size=(max(classes, int(labels.max()) + 1), dim))
    arrays = {m: (centers[labels] * (2.0 if i == 0 else 0.5) + rng.normal(size=(n, dim))).astype(np.float32)
              for i, m in enumerate(modalities)}
    return save_byo(path, arrays, labels, **kw)


def tiny_values(data, out, **changes) -> dict:
    values = dict(
        dataset="byo", data=str(data), model_options={"hidden": 4, "out_dim": 8}, fusion="concat",
        modulation="OGM_GE", alpha=0.5, epochs=3, batch_size=8, lr=0.1, lr_step=2, seed=3,
        device="cpu", progress=False, val_fraction=0.25, out=None if out is None else str(out),
    )
    values.update(changes)
    return values


def cli(*args: str) -> int:
    return main([str(a) for a in args])


# ----------------------------------------------------------------- comparing runs
def snapshot(run_dir) -> dict:
    """Everything a finished run leaves that must not depend on interruptions."""
    run_dir = Path(run_dir)
    out = {}
    for name in ("last.pt", "best.pt"):
        ck = load_checkpoint_file(run_dir / name)
        out[name] = (ck["epoch"], ck["best"]["epoch"], ck["model"], ck["optimizer"]["state"])
    out["metrics"] = [{k: v for k, v in r.items() if k not in TIMING} for r in read_jsonl(run_dir / "metrics.jsonl")]
    out["trace"] = read_jsonl(run_dir / "trace.jsonl")
    out["results"] = json.loads((run_dir / "results.json").read_text())
    return out


def assert_same_run(a: dict, b: dict) -> None:
    for name in ("last.pt", "best.pt"):
        ea, ba, wa, oa = a[name]
        eb, bb, wb, ob = b[name]
        assert (ea, ba) == (eb, bb), name
        assert wa.keys() == wb.keys()
        for k in wa:
            if torch.is_tensor(wa[k]):
                assert torch.equal(wa[k], wb[k]), (name, k)
            else:
                assert repr(wa[k]) == repr(wb[k]), (name, k)
        for i in oa:
            for k in oa[i]:
                assert torch.equal(oa[i][k], ob[i][k]), (name, "optimizer", i, k)
    assert a["metrics"] == b["metrics"]
    assert len(a["trace"]) == len(b["trace"]) and a["trace"] == b["trace"]
    assert a["results"] == b["results"]


# ------------------------------------------------------------------ kill points
class Killer:
    """Counts events and SIGKILLs this process at event number ``at`` (1-based)."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.count = 0
        self.events: list[str] = []

    def hit(self, name: str) -> bool:
        self.count += 1
        self.events.append(name)
        return self.at is not None and self.count == self.at

    def die(self) -> None:
        os.kill(os.getpid(), signal.SIGKILL)


def install_kill_hooks(killer: Killer) -> None:
    """Wrap the checkpoint path and the optimiser step with kill points (in a child process)."""
    real_save, real_replace, real_fsync = torch.save, os.replace, os.fsync
    # every optimiser a run may build (``optimizer: auto`` is Adam for generic encoders)
    real_steps = {cls: cls.step for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)}

    def save(obj, f, *args, **kwargs):
        if killer.hit("before torch.save"):
            killer.die()
        if killer.hit("mid torch.save") and hasattr(f, "write"):
            import io

            buf = io.BytesIO()
            real_save(obj, buf, *args, **kwargs)
            data = buf.getvalue()
            f.write(data[: len(data) // 2])
            f.flush()
            killer.die()
        return real_save(obj, f, *args, **kwargs)

    def replace(src, dst, *args, **kwargs):
        if killer.hit(f"before replace {Path(dst).name}"):
            killer.die()
        result = real_replace(src, dst, *args, **kwargs)
        if killer.hit(f"after replace {Path(dst).name}"):
            killer.die()
        return result

    def fsync(fd):
        if killer.hit("before fsync"):
            killer.die()
        return real_fsync(fd)

    def make_step(real_step):
        def step(self, *args, **kwargs):
            if killer.hit("optimizer step"):
                killer.die()
            return real_step(self, *args, **kwargs)

        return step

    torch.save = save
    os.replace = replace
    os.fsync = fsync
    for cls, real_step in real_steps.items():
        cls.step = make_step(real_step)


def run_in_child(values: dict, *, kill_at=None, **train_kwargs) -> tuple[bool, list[str]]:
    """Train in a forked child with kill hooks; ``(was_killed, events seen)``.

    ``kill_at`` is an event number, or a function ``events -> bool`` evaluated after
    each event (kill when it returns True).
    """
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read_fd)
        code = 0
        try:
            torch.set_num_threads(1)
            killer = Killer(kill_at if isinstance(kill_at, int) else None)
            if callable(kill_at):
                base_hit = killer.hit

                def hit(name):
                    base_hit(name)
                    return kill_at(killer.events)

                killer.hit = hit
            install_kill_hooks(killer)
            try:
                train(TrainConfig.from_dict(values), **train_kwargs)
            except BaseException:
                code = 3
            os.write(write_fd, "\n".join(killer.events).encode())
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    while True:
        block = os.read(read_fd, 65536)
        if not block:
            break
        chunks.append(block)
    os.close(read_fd)
    _, status = os.waitpid(pid, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if not killed:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed: status {status}"
    events = b"".join(chunks).decode().split("\n") if chunks else []
    return killed, events
