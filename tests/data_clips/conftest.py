"""Generated clip folders shared by the ``prepare clips`` tests (written once per session)."""

from __future__ import annotations

import csv

import pytest

from support.clips_rawdata import GOOD, GROUPS, write_clip


@pytest.fixture(scope="session")
def clip_folder(tmp_path_factory):
    """``raw/<class>/...`` with the GOOD clips, files to ignore, and ``raw/list.csv`` listing the
    same clips (``path,label,group``)."""
    root = tmp_path_factory.mktemp("clips_raw")
    for rel, kw in GOOD.items():
        write_clip(root / rel, **kw)
    (root / ".DS_Store").write_bytes(b"\0")
    (root / "notes.txt").write_text("not a clip\n")
    (root / ".git").mkdir()
    (root / "cat" / ".hidden.mp4").write_bytes(b"x")
    (root / "cat" / ".cache").mkdir()
    write_clip(root / "cat" / ".cache" / "old.mp4", seconds=1.0, seed=9)
    (root / "dog" / "readme.txt").write_text("labels\n")
    with open(root / "list.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "group"])
        for rel in GOOD:
            w.writerow([rel, rel.split("/")[0], GROUPS[rel]])
    return root
