"""Under DDP every rank computes the same coefficients and draws the same noise
(real torch.distributed with the gloo backend, two processes)."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ogmge import OGMGE


def _data():
    g = torch.Generator().manual_seed(0)
    logits = {"audio": torch.randn(8, 4, generator=g) * 3, "visual": torch.randn(8, 4, generator=g)}
    y = torch.randint(0, 4, (8,), generator=g)
    grads = {n: torch.randn(3, 2, 2, 2, generator=g) for n in ("audio", "visual")}
    return logits, y, grads


def _worker(rank, world, init_file, out_dir):
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        logits, y, grads = _data()
        part = slice(rank * 4, rank * 4 + 4)  # each rank sees half the batch
        enc = {n: [nn.Parameter(torch.zeros(3, 2, 2, 2))] for n in grads}
        for n in grads:
            enc[n][0].grad = grads[n].clone()  # DDP has already averaged the gradients
        mod = OGMGE(enc, mode="OGM_GE", seed=5)
        stats = mod.step(modality_logits={n: t[part] for n, t in logits.items()}, labels=y[part], epoch=0)
        torch.save(
            {"k": {n: float(v) for n, v in stats.coefficients.items()},
             "grads": {n: enc[n][0].grad for n in enc}},
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        dist.destroy_process_group()


def test_ranks_agree_and_match_the_full_batch(tmp_path):
    init_file = tmp_path / "init"
    mp.spawn(_worker, args=(2, str(init_file), str(tmp_path)), nprocs=2, join=True)
    r0 = torch.load(tmp_path / "rank0.pt")
    r1 = torch.load(tmp_path / "rank1.pt")
    assert r0["k"] == r1["k"]
    for n in r0["grads"]:
        assert torch.equal(r0["grads"][n], r1["grads"][n])
    # the all-reduced scores equal the scores of the whole batch in one process
    logits, y, grads = _data()
    enc = {n: [nn.Parameter(torch.zeros(3, 2, 2, 2))] for n in grads}
    for n in grads:
        enc[n][0].grad = grads[n].clone()
    stats = OGMGE(enc, mode="OGM_GE", seed=5).step(modality_logits=logits, labels=y, epoch=0)
    for n, k in r0["k"].items():
        assert abs(k - float(stats.coefficients[n])) < 1e-6
    assert min(r0["k"].values()) < 1
