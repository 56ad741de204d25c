"""``ogmge compare`` on a tiny bring-your-own file: table, verdict, summary files and plot."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from ogmge.data.byo import save_byo
from ogmge.interfaces.cli import main


def _npz(path):
    rng = np.random.default_rng(0)
    n = 60
    labels = np.arange(n) % 3
    split = np.array((["train"] * 6 + ["val"] * 2 + ["test"] * 2) * 6)
    return save_byo(path, {"a": rng.normal(size=(n, 6)).astype(np.float32) + labels[:, None],
                           "b": rng.normal(size=(n, 4)).astype(np.float32)}, labels,
                    kinds={"a": "vector", "b": "vector"}, split=split)


def test_compare_cli_prints_table_verdict_and_writes_outputs(tmp_path, capsys):
    data = _npz(tmp_path / "mine.npz")
    out = tmp_path / "cmp"
    flags = ["--data", str(data), "--epochs", "1", "--batch-size", "8", "--device", "cpu",
             "--set", "model_options={hidden: 4, out_dim: 8}", "--no-progress"]
    assert main(["compare", *flags, "--methods", "opm", "--seeds", "0", "--jobs", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ogmge compare: 4 runs (2 methods + 2 modalities alone, x 1 seeds [0])" in text
    for row in ("\nnormal", "\nopm", "\na alone", "\nb alone"):
        assert row in text
    summary = json.loads((out / "summary.json").read_text())
    assert f"verdict: {summary['verdict']}" in text and summary["selected"] in ("normal", "opm")
    assert f"summary: {out / 'summary.md'}, {out / 'summary.json'}" in text
    assert f"plot:    {out / 'comparison.png'}" in text
    assert Image.open(out / "comparison.png").size == (1500, 1000)
    assert summary["verdict"] in (out / "summary.md").read_text()


def test_compare_cli_refuses_per_run_flags_and_no_validation(tmp_path, capsys):
    data = _npz(tmp_path / "mine.npz")
    assert main(["compare", "--data", str(data), "--method", "ogm_ge", "--out", str(tmp_path / "x")]) == 2
    assert "--method is set per run by ogmge compare; use --methods" in capsys.readouterr().err
    assert main(["compare", "--data", str(data), "--seed", "3", "--out", str(tmp_path / "x")]) == 2
    assert "use --seeds" in capsys.readouterr().err
    assert main(["compare", "--data", str(data), "--val-fraction", "0", "--out", str(tmp_path / "x")]) == 2
    assert "val_fraction must be > 0" in capsys.readouterr().err
    assert main(["compare", "--data", str(data), "--seeds", "0,x", "--out", str(tmp_path / "x")]) == 2
    assert "--seeds must be a comma-separated list of integers" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
