"""``ogmge train`` stopped by a full disk or Ctrl-C: one clear line naming the path and how to
resume, no traceback, and the checkpoint of the last finished epoch intact."""

from __future__ import annotations

import errno

import torch

from ogmge import io_utils
from ogmge.training import load_checkpoint_file
from support.reliability_helpers import cli, tiny_npz

TRAIN = ("--epochs", "3", "--device", "cpu", "--no-progress", "--val-fraction", "0.25",
         "--set", "model_options={hidden: 4, out_dim: 8}")


def test_disk_full_while_writing_a_checkpoint_names_the_path_and_keeps_the_last_one(tmp_path, capsys, monkeypatch):
    data, run = tiny_npz(tmp_path / "d.npz"), tmp_path / "run"
    real_open = open
    writes = {"last": 0}

    class Full:
        """A file that takes 100 bytes, then answers ENOSPC (what a full disk does)."""

        def __init__(self, fh):
            self.fh, self.n = fh, 0

        def write(self, data):
            self.n += len(data)
            if self.n > 100:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.fh.write(data)

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def open_(path, mode="r", *args, **kwargs):
        fh = real_open(path, mode, *args, **kwargs)
        if ".last.pt" in str(path) and "w" in mode:
            writes["last"] += 1
            if writes["last"] == 2:  # the second epoch's last.pt
                return Full(fh)
        return fh

    monkeypatch.setattr(io_utils, "open", open_, raising=False)
    assert cli("train", "--data", data, *TRAIN, "--out", run) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected pos" not in err
    assert f"cannot write {run / 'last.pt'}: No space left on device" in err
    assert f"intact ({run / 'last.pt'}, epoch 1); continue with: ogmge train --resume {run}" in err
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 0
    assert not list(run.glob(".*tmp-*"))
    monkeypatch.undo()
    assert cli("train", "--resume", run, "--no-progress") == 0
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 2


def test_ctrl_c_in_train_says_how_to_resume_and_exits_130(tmp_path, capsys, monkeypatch):
    data, run = tiny_npz(tmp_path / "d.npz"), tmp_path / "run"
    steps = {"n": 0}
    for cls in (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW):
        real = cls.step

        def step(self, *args, _real=real, **kwargs):
            if (run / "last.pt").is_file():  # in the second epoch
                steps["n"] += 1
                if steps["n"] == 1:
                    raise KeyboardInterrupt
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "step", step)
    assert cli("train", "--data", data, *TRAIN, "--out", run) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    line = [x for x in err.splitlines() if x.startswith("ogmge train: interrupted")]
    assert line == [f"ogmge train: interrupted; the checkpoint of the last finished epoch is intact "
                    f"({run / 'last.pt'}, epoch 1); continue with: ogmge train --resume {run}"]
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 0
    monkeypatch.undo()
    assert cli("train", "--resume", run, "--no-progress") == 0
    assert load_checkpoint_file(run / "last.pt")["epoch"] == 2
