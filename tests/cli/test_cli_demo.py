"""``ogmge demo`` on a tiny configuration: table, runs and plot."""

from __future__ import annotations

import yaml
from cli_tiny import TINY

from ogmge.interfaces.cli import main
from ogmge.interfaces.plots import comparison_figure
from ogmge.training import TrainConfig, load_run


def test_demo_prints_table_and_writes_plot(tmp_path, capsys):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    out = tmp_path / "demo"
    assert main(["demo", "--config", str(cfg), "--out", str(out), "--jobs", "1"]) == 0
    text = capsys.readouterr().out
    for label in ("Normal", "OGM-GE", "audio alone", "visual alone"):
        assert f"\n{label}" in text
    assert f"plot:  {out / 'comparison.png'}" in text
    assert (out / "comparison.png").is_file()
    # the plot shows validation curves: the runs log validation per epoch, test once at the end
    assert "validation accuracy per epoch" in text
    for sub in ("normal", "ogm_ge"):
        run = load_run(out / sub)
        assert run.metrics and all("val/acc" in m and not any(k.startswith("test/") for k in m)
                                   for m in run.metrics)
        assert run.results["test"]["acc"] is not None
    fig = comparison_figure([out / "normal", out / "ogm_ge"])
    assert fig.axes[0].get_title() == "fused accuracy (validation split)"
    normal, ogmge = TrainConfig.load(out / "normal" / "config.yaml"), TrainConfig.load(out / "ogm_ge" / "config.yaml")
    assert normal.differences(ogmge) == {"modulation": ("Normal", "OGM_GE")}
    assert main(["demo", "--config", str(cfg), "--out", str(out), "--jobs", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["demo", "--config", str(cfg), "--out", str(out), "--jobs", "1", "--overwrite",
                 "--no-unimodal"]) == 0
