"""``ogmge train --data FILE.npz``: bring-your-own data with a variable-length modality."""

from __future__ import annotations

import numpy as np

from ogmge.data.byo import save_byo
from ogmge.interfaces.cli import main
from ogmge.training import load_checkpoint, load_run, predict


def test_train_and_eval_on_byo_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n = 40
    labels = np.arange(n) % 2
    vec = rng.normal(size=(n, 5)).astype(np.float32) + labels[:, None]
    seqs = [rng.normal(size=(int(rng.integers(3, 7)), 4)).astype(np.float32) for _ in range(n)]
    groups = [f"s{i % 8}" for i in range(n)]
    path = save_byo(tmp_path / "mine.npz", {"tab": vec, "seq": seqs}, labels,
                    kinds={"tab": "vector", "seq": "sequence"}, groups=groups)
    run = tmp_path / "run"
    assert main(["train", "--data", str(path), "--epochs", "1", "--batch-size", "8", "--lr", "0.01",
                 "--set", "model_options={hidden: 8, out_dim: 8}", "--device", "cpu", "--no-progress",
                 "--out", str(run)]) == 0
    r = load_run(run)
    assert r.config.dataset == "byo" and r.config.data == str(path)
    assert r.results["test"]["n"] == 10  # two of eight 5-sample groups held out for test (seeded)
    assert set(r.trace()[0]) >= {"coeff/tab", "coeff/seq"}
    ck = load_checkpoint(run / "best.pt")
    from ogmge.data.byo import load_byo

    ds = load_byo(path)
    from ogmge.data.collate import collate_samples

    batch = collate_samples([ds[i] for i in range(4)])
    out = predict(ck, batch["inputs"], lengths=batch["lengths"])
    assert out["probs"].shape == (4, 2) and set(out["modality_pred"]) == {"tab", "seq"}
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run)]) == 0
    assert "on test (10 samples)" in capsys.readouterr().out
