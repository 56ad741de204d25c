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


def _interrupt_compare(monkeypatch):
    """Ctrl-C while the runs train: after compare.yaml and the run directories exist, before any run ends."""
    from ogmge.training.compare import runner

    real = runner.execute_plan

    def interrupted(plan, todo, states, executor, **kw):
        class Stop:
            def run(self, jobs, finished):
                raise KeyboardInterrupt

        real(plan, todo, states, Stop(), **kw)

    monkeypatch.setattr(runner, "execute_plan", interrupted)


def _demo_args(tmp_path, out):
    cfg = tmp_path / "demo.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "epochs": 1}))
    return ["demo", "--config", str(cfg), "--out", str(out), "--jobs", "1", "--seeds", "0", "--no-progress"]


def test_an_interrupted_demo_is_marked_and_overwrite_starts_it_again(tmp_path, capsys, monkeypatch):
    from ogmge.interfaces.cmd_compare import INTERRUPTED
    from ogmge.interfaces.cmd_demo import MARKER
    from ogmge.training.compare.plan import CLAIMS

    assert MARKER in CLAIMS  # compare writes beside the demo's marker
    out = tmp_path / "demo"
    args = _demo_args(tmp_path, out)
    with monkeypatch.context() as m:
        _interrupt_compare(m)
        assert main(args) == INTERRUPTED
    assert "interrupted: 0 of 5 runs finished" in capsys.readouterr().err
    assert (out / MARKER).is_file() and (out / "compare.yaml").is_file() and not (out / "summary.json").exists()
    # --overwrite: the interrupted demo is the demo's own, deleted and trained again
    (out / "normal" / "stray.txt").parent.mkdir(exist_ok=True)
    (out / "normal" / "stray.txt").write_text("left by the interrupted demo\n")
    assert main(args + ["--overwrite"]) == 0
    assert "0 finished, 0 to resume, 5 to train" in capsys.readouterr().out
    assert not (out / "normal" / "stray.txt").exists() and (out / "summary.json").is_file()
    assert (out / MARKER).is_file()

def test_a_demo_killed_before_compare_wrote_anything_is_marked(tmp_path, capsys, monkeypatch):
    """Killed right after it started: the directory holds the marker alone; compare takes it as
    empty, and --overwrite deletes it."""
    from ogmge.interfaces import compare_report
    from ogmge.interfaces.cmd_demo import MARKER

    out = tmp_path / "demo"
    args = _demo_args(tmp_path, out)

    def killed(*a, **kw):
        raise SystemExit(137)

    with monkeypatch.context() as m:
        m.setattr(compare_report, "compare", killed)
        try:
            main(args)
        except SystemExit as exc:
            assert exc.code == 137
    assert [p.name for p in out.iterdir()] == [MARKER]
    assert main(args + ["--overwrite"]) == 0
    assert "0 finished, 0 to resume, 5 to train" in capsys.readouterr().out


def test_a_demo_in_a_directory_of_yours_does_not_mark_it_before_it_finishes(tmp_path, capsys, monkeypatch):
    """A demo started in a non-empty directory that is not the demo's (here: a comparison of the
    same settings, begun with ogmge compare) marks nothing when it starts, so an interrupted one
    is not deleted by --overwrite."""
    from ogmge.interfaces.cmd_compare import INTERRUPTED
    from ogmge.interfaces.cmd_demo import MARKER

    out = tmp_path / "mine"
    args = _demo_args(tmp_path, out)
    with monkeypatch.context() as m:
        _interrupt_compare(m)
        assert main(args) == INTERRUPTED
    (out / MARKER).unlink()  # as if `ogmge compare` had begun it: compare.yaml, no marker
    (out / "notes.md").write_text("my notes\n")
    with monkeypatch.context() as m:
        _interrupt_compare(m)
        assert main(args) == INTERRUPTED
    assert not (out / MARKER).exists()
    capsys.readouterr()
    assert main(args + ["--overwrite"]) == 2
    assert "did not mark as its own (no ogmge-demo.json); not deleting it" in capsys.readouterr().err
    assert (out / "notes.md").read_text() == "my notes\n"
