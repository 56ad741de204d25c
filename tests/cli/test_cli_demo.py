"""``ogmge demo`` (``ogmge compare`` with a fixed subset) on a tiny configuration."""

from __future__ import annotations

import json

import yaml

from ogmge.interfaces.cli import main
from ogmge.training import TrainConfig, load_run
from support.cli_tiny import TINY


def test_demo_prints_table_verdict_and_writes_plot(tmp_path, capsys):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    out = tmp_path / "demo"
    args = ["demo", "--config", str(cfg), "--out", str(out), "--jobs", "1", "--seeds", "0", "--no-progress"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "methods normal, ogm_ge, multitask+stacked and each modality alone, seeds [0]" in text
    for label in ("normal", "ogm_ge", "multitask+stacked", "audio alone", "visual alone"):
        assert f"\n{label}" in text
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary["methods"]) == ["normal", "ogm_ge", "multitask+stacked"] and list(summary["unimodal"]) == ["audio", "visual"]
    assert f"verdict: {summary['verdict']}" in text
    assert f"plot:    {out / 'comparison.png'}" in text and (out / "comparison.png").is_file()
    for sub in ("normal/seed-0", "ogm_ge/seed-0"):
        run = load_run(out / sub)  # validation per epoch, test once at the end
        assert run.metrics and all("val/acc" in m and not any(k.startswith("test/") for k in m)
                                   for m in run.metrics)
        assert run.results["test"]["acc"] is not None
    normal = TrainConfig.load(out / "normal/seed-0/config.yaml")
    ogmge = TrainConfig.load(out / "ogm_ge/seed-0/config.yaml")
    assert set(normal.differences(ogmge)) == {"method", "modulation"}
    # a rerun keeps the finished runs; --overwrite starts again; retired flags say so
    assert main(args + ["--budget", "10"]) == 0
    text = capsys.readouterr().out
    assert "5 finished, 0 to resume, 0 to train" in text and "--budget is retired" in text
    assert main(args + ["--overwrite"]) == 0
    assert "0 finished, 0 to resume, 5 to train" in capsys.readouterr().out
    assert main(args + ["--no-unimodal"]) == 2
    assert "--no-unimodal is retired" in capsys.readouterr().err
