"""The one atomic-write helper (ogmge.io_utils) and the deferred trace rows (logs.to_host)."""

from __future__ import annotations

import os

import pytest
import torch

from ogmge import io_utils
from ogmge.training.logs import Choice, to_host


def test_atomic_write_replaces_or_keeps_the_old_file(tmp_path):
    path = tmp_path / "f.txt"
    io_utils.atomic_write_text(path, "one\n")
    assert path.read_text() == "one\n"

    def half_then_fail(fh):
        fh.write(b"tw")
        raise OSError("disk full (injected)")

    with pytest.raises(OSError, match="injected"):
        io_utils.atomic_write(path, half_then_fail)
    assert path.read_text() == "one\n"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]  # no temporary file left


def test_atomic_write_fsyncs_the_file_and_its_directory(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def spy(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(io_utils.os, "fsync", spy)
    io_utils.atomic_write_text(tmp_path / "g.txt", "x")
    assert len(synced) == 2
    assert os.path.basename(synced[0]).startswith(".g.txt.tmp-")  # the data, before the rename
    assert synced[1] == os.path.realpath(tmp_path)  # the directory entry, after it


def test_trace_rows_resolve_device_values_and_choices():
    ok, bad = torch.tensor(True), torch.tensor(False)
    rows = [
        {"step": 0, "loss": torch.tensor(0.5), "modulated": ok, "skip_reason": Choice(ok, None, "non-finite")},
        {"step": 1, "loss": torch.tensor(0.25), "modulated": bad,
         "skip_reason": Choice(ok, Choice(bad, None, "non-finite gradients"), "non-finite scores")},
        {"step": 2, "loss": 1.0, "skip_reason": "mode Normal"},
    ]
    assert to_host(rows) == [
        {"step": 0, "loss": 0.5, "modulated": True, "skip_reason": None},
        {"step": 1, "loss": 0.25, "modulated": False, "skip_reason": "non-finite gradients"},
        {"step": 2, "loss": 1.0, "skip_reason": "mode Normal"},
    ]
    assert to_host([]) == []
