"""Bring-your-own data that used to be widened, split inside a group, fingerprinted by unrelated
files or crash deep in a model: labels not 0..C-1, two groups, a README beside the data, a
sequence of length 0."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ogmge.data.byo import ArrayDataset, load_byo, save_byo
from ogmge.training import TrainConfig, build_datasets
from ogmge.training.fingerprint import check_same_data, data_fingerprint
from support.reliability_helpers import cli, tiny_npz, tiny_values

TRAIN = ("--epochs", "1", "--device", "cpu", "--no-progress", "--set", "model_options={hidden: 4, out_dim: 8}")


def _mk(path, n, values):
    """The issue's ``mk``: labels ``values[arange(n) % k]``, audio carries the class, visual is noise."""
    rng = np.random.default_rng(0)
    k = len(values)
    y = np.arange(n) % k
    a = rng.standard_normal((n, 8)).astype("f4")
    a[np.arange(n), y] += 2
    np.savez(path, labels=np.asarray(values)[y], audio=a, visual=rng.standard_normal((n, 8)).astype("f4"))
    return path


@pytest.mark.parametrize("values", [[3, 7, 100], [0, 1, 10**9]])
def test_labels_not_0_to_c_minus_1_are_renumbered_with_the_values_as_class_names(tmp_path, values):
    path = _mk(tmp_path / "nc.npz", 30, values)
    ds = load_byo(path)
    assert ds.num_classes == 3 and ds.class_names == [str(v) for v in values]
    assert ds.label_values == values
    raw = np.load(path)["labels"]
    assert [values[t] for t in ds.targets] == raw.tolist()  # class i is label values[i]
    part = ds.subset([0, 4, 8]).select_modalities(["audio"])
    assert part.label_values == values and part.num_classes == 3


def test_training_on_renumbered_labels_says_so_and_saves_the_mapping(tmp_path, capsys):
    path = _mk(tmp_path / "nc.npz", 60, [3, 7, 100])
    run = tmp_path / "run"
    assert cli("train", "--data", path, *TRAIN, "--out", run) == 0
    err = capsys.readouterr().err
    assert "labels {3, 7, 100} are not 0..C-1: renumbered to classes 0..2 (3->0, 7->1, 100->2)" in err
    results = json.loads((run / "results.json").read_text())
    assert results["class_names"] == ["3", "7", "100"]
    from ogmge.training import load_checkpoint

    assert load_checkpoint(run / "best.pt").class_names == ["3", "7", "100"]


def test_array_dataset_refuses_to_widen_gapped_labels():
    import torch

    with pytest.raises(ValueError, match=r"labels take the values \{0, 1, 1000000000\}, not 0..C-1"):
        ArrayDataset({"a": torch.zeros(3, 2)}, [0, 1, 10**9], kinds={"a": "vector"})
    ok = ArrayDataset({"a": torch.zeros(3, 2)}, [0, 2, 2], kinds={"a": "vector"}, num_classes=3)
    assert ok.num_classes == 3


def test_class_names_given_keep_labels_as_indices(tmp_path):
    path = tiny_npz(tmp_path / "d.npz", n=12, labels=np.arange(12) % 2 * 2, class_names=["a", "b", "c"])
    ds = load_byo(path)  # class 1 has no sample; the names say there are three
    assert ds.num_classes == 3 and ds.label_values is None and sorted(set(ds.targets)) == [0, 2]


def test_two_groups_refuse_a_validation_split_inside_the_training_group(tmp_path, capsys):
    n = 120
    path = tiny_npz(tmp_path / "g.npz", n=n, groups=np.arange(n) // (n // 2))  # groups 0 and 1
    values = tiny_values(path, None, val_fraction=0.1)
    with pytest.raises(ValueError, match=r"validation split must take whole groups.*one group \('\d'; with two "
                                         r"groups in all, the other went to test\).*--val-fraction 0"):
        build_datasets(TrainConfig.from_dict(values))
    bundle = build_datasets(TrainConfig.from_dict({**values, "val_fraction": 0}))
    assert bundle.val is None and set(bundle.train.groups).isdisjoint(bundle.test.groups)
    assert cli("train", "--data", path, *TRAIN, "--out", tmp_path / "run") == 2
    assert "must take whole groups" in capsys.readouterr().err


def test_three_groups_give_whole_groups_to_every_split(tmp_path):
    n = 90
    path = tiny_npz(tmp_path / "g3.npz", n=n, groups=np.arange(n) // 30)
    bundle = build_datasets(TrainConfig.from_dict(tiny_values(path, None, val_fraction=0.1)))
    sets = [set(bundle.train.groups), set(bundle.val.groups), set(bundle.test.groups)]
    assert all(len(s) == 1 for s in sets) and len(set.union(*sets)) == 3


def _dir_data(tmp_path):
    rng = np.random.default_rng(1)
    d = save_byo(tmp_path / "data", {"a": rng.standard_normal((12, 3)).astype("f4")}, np.arange(12) % 2)
    return d, TrainConfig.from_dict(tiny_values(d, None))


def test_directory_fingerprint_ignores_files_beside_the_data(tmp_path):
    d, config = _dir_data(tmp_path)
    before = data_fingerprint(config)
    (d / "README.md").write_text("my notes\n")
    (d / "runs" / "r1").mkdir(parents=True)
    (d / "runs" / "r1" / "last.pt").write_bytes(b"\0" * 100)
    assert data_fingerprint(config)["sha256"] == before["sha256"]
    labels = np.load(d / "labels.npy")
    np.save(d / "labels.npy", labels[::-1].copy())
    assert data_fingerprint(config)["sha256"] != before["sha256"]


def test_a_fingerprint_of_the_earlier_rule_still_matches_the_same_directory(tmp_path):
    d, config = _dir_data(tmp_path)
    h = hashlib.sha256()  # the earlier rule: every file of the directory, relative path then bytes
    for file in sorted(p for p in d.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(d)).encode() + b"\0" + file.read_bytes())
    recorded = {"kind": "byo", "sha256": h.hexdigest(), "source": str(d)}
    check_same_data(recorded, data_fingerprint(config), what="resume", allow=False)
    (d / "labels.npy").write_bytes((d / "labels.npy").read_bytes()[:-8] + b"\1" * 8)
    with pytest.raises(ValueError, match="the data differ"):
        check_same_data(recorded, data_fingerprint(config), what="resume", allow=False)


def test_eval_and_resume_accept_a_readme_and_a_run_inside_the_data_directory(tmp_path, capsys):
    d, _ = _dir_data(tmp_path)
    run = d / "runs" / "r1"
    assert cli("train", "--data", d, *TRAIN, "--val-fraction", "0.25", "--out", run) == 0
    (d / "README.md").write_text("notes\n")
    assert cli("eval", "--checkpoint", run) == 0
    assert cli("train", "--resume", run, "--epochs", "2", "--no-progress") == 0, capsys.readouterr().err


def test_a_sequence_of_length_zero_is_refused_at_validation(tmp_path, capsys):
    n = 12
    path = tmp_path / "z.npz"
    np.savez(path, labels=np.arange(n) % 2, seq=np.zeros((n, 0, 4), "f4"), b=np.ones((n, 3), "f4"))
    with pytest.raises(ValueError, match=r"z\.npz: array 'seq' has per-sample shape \(0, 4\): an axis of size 0"):
        load_byo(path)
    assert cli("train", "--data", path, *TRAIN, "--out", tmp_path / "run") == 2
    assert "an axis of size 0" in capsys.readouterr().err


# ------------------------------------------------------------------ plot and demo outputs
@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("plot_run")
    data = tiny_npz(root / "d.npz")
    assert cli("train", "--data", data, *TRAIN, "--out", root / "run") == 0
    return root / "run"


def test_plot_out_pdf_writes_a_pdf_and_an_unknown_suffix_is_refused(one_run, tmp_path, capsys):
    assert cli("plot", one_run, "--out", tmp_path / "x.pdf") == 0
    assert (tmp_path / "x.pdf").read_bytes()[:5] == b"%PDF-"
    assert cli("plot", one_run, "--out", tmp_path / "x.svg") == 0
    assert b"<svg" in (tmp_path / "x.svg").read_bytes()[:2000]
    assert cli("plot", one_run, "--out", tmp_path / "x.png") == 0
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    capsys.readouterr()
    assert cli("plot", one_run, "--out", tmp_path / "x.docx") == 2
    assert "cannot tell the figure's format from the suffix '.docx'" in capsys.readouterr().err
    assert not (tmp_path / "x.docx").exists()


def test_plot_out_under_a_file_or_a_read_only_directory_is_a_clear_error(one_run, tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    capsys.readouterr()
    assert cli("plot", one_run, "--out", tmp_path / "f" / "p.png") == 2
    assert f"cannot write the figure to {tmp_path / 'f' / 'p.png'}" in capsys.readouterr().err
    import errno

    from matplotlib.figure import Figure

    def read_only(self, *args, **kwargs):  # what a read-only mount answers (root may write anywhere else)
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(Figure, "savefig", read_only)
    assert cli("plot", one_run, "--out", tmp_path / "ro.png") == 2
    assert f"cannot write the figure to {tmp_path / 'ro.png'}: Read-only file system" in capsys.readouterr().err


def test_demo_overwrite_never_deletes_a_comparison_it_did_not_mark(tmp_path, capsys):
    mine = tmp_path / "mycmp"
    mine.mkdir()
    (mine / "compare.yaml").write_text("methods: [normal]\n")
    (mine / "notes.md").write_text("my results\n")
    assert cli("demo", "--out", mine, "--overwrite", "--no-progress") == 2
    err = capsys.readouterr().err
    assert "did not mark as its own (no ogmge-demo.json); not deleting it" in err
    assert (mine / "notes.md").read_text() == "my results\n"


def test_demo_out_under_a_file_or_unwritable_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    for out in (tmp_path / "f", tmp_path / "f" / "demo", "/sys/ogmge-demo", "/proc/ogmge-demo"):
        capsys.readouterr()
        assert cli("demo", "--out", out, "--no-progress") == 2, out
        err = capsys.readouterr().err
        assert "Traceback" not in err and (f"--out {out}" in err), err

