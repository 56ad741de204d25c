"""DDP on CPU (gloo, two processes): replicas stay identical with OGM-GE; only rank 0 writes."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from support.training_standins import tiny_bundle, tiny_config, tiny_model


def _worker(rank: int, world: int, port: int, tmp: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    from pathlib import Path

    from ogmge.training import train

    def save_last(event, info):  # the weights after the last epoch, on every rank
        if info["epoch"] == 1:
            state = info["trainer"].model.state_dict()
            torch.save(state, os.path.join(tmp, f"rank{rank}.pt"))

    train(tiny_config(Path(tmp), epochs=2), datasets=tiny_bundle(), model=tiny_model, callbacks=[save_last])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_two_ranks_keep_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    w0 = torch.load(tmp_path / "rank0.pt")
    w1 = torch.load(tmp_path / "rank1.pt")
    assert all(torch.equal(w0[k], w1[k]) for k in w0)
    run = tmp_path / "run"
    assert {"last.pt", "metrics.jsonl", "trace.jsonl"} <= {p.name for p in run.iterdir()}
    from ogmge.training import load_run

    rows = load_run(run).metrics
    assert [r["epoch"] for r in rows] == [0, 1]
    trace = load_run(run).trace()
    assert len(trace) == 2 * 2  # 48 samples, 2 ranks x batch 16 -> 2 steps per epoch, rank 0 only
    assert all(t["modulated"] for t in trace)
