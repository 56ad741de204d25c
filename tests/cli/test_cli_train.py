"""``ogmge train / eval / plot`` end to end on tiny built-in data."""

from __future__ import annotations

import argparse
import importlib
import json

import matplotlib.image
import pytest
import torch
import yaml

from ogmge.interfaces.cli import SUBCOMMANDS, build_parser, main
from ogmge.interfaces.plots import PIXELS, comparison_figure
from ogmge.training import TrainConfig, load_checkpoint_file, load_run
from support.cli_tiny import TINY


@pytest.fixture
def tiny_yaml(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY))
    return path


def _check_tensorboard(tb_dir, metrics):
    """The event files hold the same per-epoch scalars as metrics.jsonl, and the coefficient trace."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"val/acc", "step/coeff/audio", "step/coeff/visual"} <= tags
    logged = [(e.step, e.value) for e in acc.Scalars("val/acc")]
    assert logged == [(m["epoch"], pytest.approx(m["val/acc"], abs=1e-6)) for m in metrics]


def test_subcommands_listed():
    """The parser registers every listed subcommand, each with its own ``run``, and no other."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(SUBCOMMANDS)
    assert {"prepare", "train", "eval", "demo", "plot"} <= set(sub.choices)
    for name in SUBCOMMANDS:
        assert sub.choices[name].get_default("_run") is importlib.import_module(f"ogmge.interfaces.cmd_{name}").run


def test_train_eval_plot_end_to_end(tmp_path, tiny_yaml, capsys):
    run_a, run_b = tmp_path / "normal", tmp_path / "ogmge"
    assert main(["train", "--config", str(tiny_yaml), "--modulation", "Normal", "--out", str(run_a),
                 "--name", "normal"]) == 0
    assert main(["train", "--config", str(tiny_yaml), "--modulation-starts", "1", "--out", str(run_b),
                 "--name", "ogm-ge", "--tensorboard"]) == 0
    out = capsys.readouterr().out
    assert f"run directory: {run_b}" in out
    for run in (run_a, run_b):
        assert {"config.yaml", "best.pt", "last.pt", "metrics.jsonl", "trace.jsonl", "results.json"} <= {
            p.name for p in run.iterdir()}
    saved = TrainConfig.load(run_b / "config.yaml")
    assert saved.modulation_starts == 1 and saved.out == str(run_b) and saved.epochs == 2
    metrics = load_run(run_b).metrics
    _check_tensorboard(run_b / "tb", metrics)
    assert [m["epoch"] for m in metrics] == [0, 1]
    # per-epoch metrics are validation's; test is evaluated once, at the end, on best.pt (DESIGN §3)
    for row in metrics:
        assert {"val/acc", "val/macro_f1", "val/map", "val/per_class_acc", "val/modality_acc/audio",
                "val/modality_acc/visual"} <= set(row)
        assert not any(k.startswith("test/") for k in row)
    trace = load_run(run_b).trace()
    assert [t["modulated"] for t in trace] == [False] * 3 + [True] * 3  # window starts at epoch index 1
    assert trace[0]["skip_reason"] == "outside window"

    json_path = tmp_path / "eval.json"
    assert main(["eval", "--checkpoint", str(run_b / "best.pt"), "--json", str(json_path)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "audio" in printed and "visual" in printed
    evaluated = json.loads(json_path.read_text())
    results = json.loads((run_b / "results.json").read_text())
    assert evaluated["n"] == 24
    assert evaluated["acc"] == pytest.approx(results["test"]["acc"], abs=1e-12)

    png = tmp_path / "cmp.png"
    assert main(["plot", str(run_a), str(run_b), "--out", str(png)]) == 0
    image = matplotlib.image.imread(png)
    assert image.shape[:2] == (PIXELS[1], PIXELS[0]) == (1000, 1500)

    fig = comparison_figure([run_a, run_b])
    per_modality = fig.axes[1]
    labels = [line.get_label() for line in per_modality.get_lines()]
    assert sorted(labels) == sorted(f"{r}: {m}" for r in ("normal", "ogm-ge") for m in ("audio", "visual"))
    legend = [t.get_text() for t in per_modality.get_legend().get_texts()]
    assert sorted(legend) == sorted(labels)
    fused = [line.get_label() for line in fig.axes[0].get_lines()]
    assert fused == ["normal", "ogm-ge"]
    # the default curves are validation's, and the panels say so
    assert fig.axes[0].get_title() == "fused accuracy (validation split)"
    assert fig.axes[1].get_title() == "per-modality accuracy (validation split)"
    assert fig.axes[0].get_ylabel() == fig.axes[1].get_ylabel() == "validation accuracy"
    val_acc = [m["val/acc"] for m in load_run(run_a).metrics]
    assert list(fig.axes[0].get_lines()[0].get_ydata()) == val_acc
    coeff = [line.get_label() for line in fig.axes[2].get_lines()]
    assert len(coeff) == 4 and all(label.split(":")[0] in ("normal", "ogm-ge") for label in coeff)


@pytest.mark.parametrize("extra", [[], ["--opm", "--estimator", "probe"]], ids=["ogmge", "ogmge+opm+probe"])
def test_cli_resume_continues_at_epoch_three(tmp_path, tiny_yaml, capsys, extra):
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_yaml), "--out", str(run), *extra]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "4"]) == 0
    err = capsys.readouterr().err
    assert "starting at epoch 3 of 4 (index 2)" in err
    assert "epoch 1/4" not in err and "epoch 3/4" in err
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 3
    assert [m["epoch"] for m in load_run(run).metrics] == [0, 1, 2, 3]

    full = tmp_path / "full"
    assert main(["train", "--config", str(tiny_yaml), "--epochs", "4", "--out", str(full), *extra]) == 0
    a, b = load_checkpoint_file(run / "last.pt")["model"], load_checkpoint_file(full / "last.pt")["model"]
    assert a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)


def _same(x, y) -> bool:
    if isinstance(x, torch.Tensor):
        return isinstance(y, torch.Tensor) and torch.equal(x, y)
    if isinstance(x, dict):
        return isinstance(y, dict) and x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    return x == y


def test_cli_resume_errors(tmp_path, tiny_yaml, capsys):
    run = tmp_path / "run"
    assert main(["train", "--config", str(tiny_yaml), "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--alpha", "0.3", "--fusion", "sum"]) == 2
    err = capsys.readouterr().err
    assert "fusion" in err and "alpha" in err and "0.8" in err and "0.3" in err
    assert main(["train", "--config", str(tiny_yaml), "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    (run / "last.pt").unlink()
    assert main(["train", "--resume", str(run), "--epochs", "2"]) == 2
    assert "last.pt is missing" in capsys.readouterr().err


def test_bad_values_name_the_setting(tmp_path, tiny_yaml, capsys):
    assert main(["train", "--config", str(tiny_yaml), "--alpha", "-1", "--out", str(tmp_path / "r")]) == 2
    assert "alpha" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("modulation-starts: 3\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert "modulation_starts" in capsys.readouterr().err
    assert main(["train", "--config", "no_such_preset", "--out", str(tmp_path / "r")]) == 2
    assert "cremad_concat_ogmge" in capsys.readouterr().err


def test_presets_and_print_config(capsys):
    assert main(["train", "--list-presets"]) == 0
    presets = capsys.readouterr().out.split()
    assert {"cremad_concat_ogmge", "cremad_sum_ogmge", "cremad_film_ogmge", "cremad_gated_ogmge",
            "vggsound_concat_ogmge", "cremad_concat_ogmge_cpu", "demo"} <= set(presets)
    assert main(["train", "--config", "cremad_concat_ogmge", "--data-root", "/data/cremad",
                 "--out", "runs/x", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["dataset"] == "cremad" and cfg["data_root"] == "/data/cremad"
    assert (cfg["alpha"], cfg["lr"], cfg["momentum"], cfg["weight_decay"]) == (0.8, 0.001, 0.9, 0.0001)
    assert (cfg["lr_step"], cfg["lr_gamma"], cfg["batch_size"], cfg["epochs"]) == (70, 0.1, 64, 100)
    assert (cfg["modulation_starts"], cfg["modulation_ends"], cfg["fusion"]) == (0, 50, "concat")
    assert TrainConfig.load("vggsound_concat_ogmge").alpha == 0.1
    assert main(["train", "--config", "cremad_concat_ogmge", "--modulation-ends", "none", "--set",
                 "lr_step=30", "--modalities", "audio", "--print-config"]) == 0
    cfg = yaml.safe_load(capsys.readouterr().out)
    assert cfg["modulation_ends"] is None and cfg["lr_step"] == 30 and cfg["modalities"] == ["audio"]


def test_plot_splits_test_only_when_logged_or_without_validation(tmp_path, tiny_yaml, capsys):
    """Validation curves by default; test curves for a run trained with val_fraction 0 (the
    fallback, marked in the legend) or on request for runs that logged test every epoch."""
    default, every, no_val = tmp_path / "default", tmp_path / "every", tmp_path / "noval"
    assert main(["train", "--config", str(tiny_yaml), "--out", str(default)]) == 0
    assert main(["train", "--config", str(tiny_yaml), "--out", str(every), "--eval-test-every-epoch"]) == 0
    assert main(["train", "--config", str(tiny_yaml), "--out", str(no_val), "--val-fraction", "0"]) == 0
    capsys.readouterr()
    for run in (every, no_val):
        assert all("test/acc" in m for m in load_run(run).metrics)
    assert not any("val/acc" in m for m in load_run(no_val).metrics)
    # test evaluated at the end on the selected checkpoint, the same with or without per-epoch test
    r_default = json.loads((default / "results.json").read_text())
    r_every = json.loads((every / "results.json").read_text())
    assert r_default["test"]["acc"] == r_every["test"]["acc"] == r_every["test"]["acc"]
    assert r_every["test"]["acc"] == load_run(every).metrics[r_every["best_epoch"]]["test/acc"]

    fig = comparison_figure([no_val])
    assert fig.axes[0].get_title() == "fused accuracy (test split)"
    assert fig.axes[0].get_ylabel() == "test accuracy"
    mixed = comparison_figure([default, no_val])
    assert [ln.get_label() for ln in mixed.axes[0].get_lines()] == ["default", "noval [test]"]
    assert mixed.axes[0].get_title() == "fused accuracy (validation / test split)"
    test_curves = comparison_figure([every], split="test")
    assert test_curves.axes[0].get_title() == "fused accuracy (test split)"
    assert list(test_curves.axes[0].get_lines()[0].get_ydata()) == [m["test/acc"] for m in load_run(every).metrics]
    assert main(["plot", str(every), str(default), "--split", "test", "--out", str(tmp_path / "t.png")]) == 2
    err = capsys.readouterr().err
    assert str(default) in err and "eval_test_every_epoch" in err
