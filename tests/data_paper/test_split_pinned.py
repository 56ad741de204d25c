"""Today's validation splits of the paper datasets, pinned.

The indices below were produced by the split code as it stood before the split
implementations were merged into :mod:`ogmge.data.splitting` (generated once, then
frozen as literals). A resumed CREMA-D or AVE run rebuilds its split from the seed:
if these change, resumed runs would silently switch splits.
"""

from __future__ import annotations

import numpy as np
import pytest

from ogmge.data.paper.splits import ParsedSplit, Record, carve_validation, choose_split


def cremad_like(n=400, seed=11):
    rng = np.random.default_rng(seed)
    labels = rng.choice(6, size=n, p=[.1, .2, .15, .2, .2, .15])
    actors = rng.integers(1001, 1001 + 23, size=n)
    return [Record(f"{a}_X{i:04d}", int(y), str(a)) for i, (y, a) in enumerate(zip(labels, actors))]


def ave_like(n=300, seed=5):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 28, size=n)
    return [Record(f"v{i:04d}", int(y)) for i, y in enumerate(labels)]


def positions(records, part):
    pos = {r.clip: i for i, r in enumerate(records)}
    return [pos[r.clip] for r in part]


#: (what, seed) -> indices of the held-out part, recorded before the merge
PINNED = {
    ('cremad_strat', 0): [0, 1, 13, 18, 20, 46, 53, 58, 62, 65, 67, 70, 75, 104, 116, 117, 128, 138, 148, 154, 160, 162, 172, 185, 199, 237, 242, 262, 264, 272, 285, 290, 316, 323, 337, 342, 347, 348, 379, 391],
    ('cremad_group', 0): [5, 17, 19, 20, 21, 47, 56, 69, 85, 132, 133, 142, 143, 153, 168, 173, 181, 212, 220, 232, 236, 246, 261, 282, 299, 308, 309, 311, 312, 324, 337, 348, 352],
    ('cremad_si_test', 0): [5, 17, 19, 20, 21, 47, 56, 69, 85, 132, 133, 142, 143, 153, 168, 173, 181, 212, 220, 232, 236, 246, 261, 282, 299, 308, 309, 311, 312, 324, 337, 348, 352],
    ('ave_strat', 0): [13, 45, 62, 67, 107, 108, 110, 113, 115, 133, 153, 156, 162, 174, 186, 187, 202, 212, 225, 236, 242, 248, 257, 260, 262, 263, 264, 268, 269, 274],
    ('cremad_strat', 3): [1, 38, 40, 47, 55, 82, 104, 118, 147, 155, 160, 165, 166, 169, 177, 180, 205, 216, 218, 242, 243, 245, 254, 259, 266, 269, 270, 276, 300, 305, 308, 311, 319, 322, 338, 341, 366, 389, 390, 392],
    ('cremad_group', 3): [25, 49, 55, 102, 124, 128, 150, 152, 155, 158, 178, 214, 227, 248, 273, 280, 314, 333, 339, 370, 381, 384],
    ('cremad_si_test', 3): [25, 49, 55, 102, 124, 128, 150, 152, 155, 158, 178, 214, 227, 248, 273, 280, 314, 333, 339, 370, 381, 384],
    ('ave_strat', 3): [9, 13, 28, 33, 35, 78, 91, 108, 113, 116, 125, 134, 136, 144, 149, 153, 158, 178, 196, 200, 204, 220, 226, 227, 233, 248, 259, 278, 293, 298],
    ('cremad_strat', 12345): [3, 21, 22, 27, 44, 54, 57, 59, 75, 89, 93, 97, 121, 123, 124, 138, 156, 167, 171, 175, 176, 196, 198, 210, 214, 220, 223, 225, 250, 295, 308, 309, 317, 330, 332, 357, 362, 365, 383, 389],
    ('cremad_group', 12345): [12, 13, 17, 40, 47, 56, 85, 96, 99, 101, 122, 173, 181, 185, 212, 220, 232, 236, 246, 261, 263, 284, 311, 324, 326, 337, 338, 352, 363, 364, 376, 393],
    ('cremad_si_test', 12345): [12, 13, 17, 40, 47, 56, 85, 96, 99, 101, 122, 173, 181, 185, 212, 220, 232, 236, 246, 261, 263, 284, 311, 324, 326, 337, 338, 352, 363, 364, 376, 393],
    ('ave_strat', 12345): [40, 43, 46, 47, 49, 60, 74, 80, 106, 109, 119, 156, 177, 179, 180, 184, 188, 205, 211, 217, 237, 245, 248, 253, 254, 260, 264, 266, 295, 297],
    ('cremad_strat_f25', 7): [7, 17, 24, 30, 40, 42, 48, 52, 55, 58, 63, 74, 77, 78, 81, 89, 91, 93, 95, 97, 100, 101, 102, 105, 108, 117, 120, 121, 122, 124, 127, 132, 133, 134, 136, 147, 151, 154, 161, 163, 169, 174, 177, 179, 186, 192, 197, 206, 207, 209, 212, 214, 216, 222, 223, 224, 226, 228, 231, 232, 234, 241, 243, 244, 251, 252, 254, 266, 268, 271, 272, 273, 280, 285, 292, 294, 295, 298, 300, 302, 311, 320, 325, 327, 329, 336, 339, 340, 351, 362, 365, 367, 372, 381, 386, 387, 389, 392, 396, 399],
}


@pytest.mark.parametrize(("what", "seed"), sorted(PINNED))
def test_paper_splits_unchanged(what, seed):
    rc, ra = cremad_like(), ave_like()
    if what == "cremad_strat":
        train, held = carve_validation(rc, fraction=0.1, seed=seed)
    elif what == "cremad_strat_f25":
        train, held = carve_validation(rc, fraction=0.25, seed=seed)
    elif what == "cremad_group":
        train, held = carve_validation(rc, fraction=0.1, seed=seed, by_group=True)
    elif what == "cremad_si_test":
        # CREMA-D speaker-independent test split (cremad.load, speaker_independent=True)
        train, held = carve_validation(rc, fraction=0.1, seed=seed, by_group=True, field="test_fraction")
    else:
        train, held = carve_validation(ra, fraction=0.1, seed=seed)
    records = ra if what.startswith("ave") else rc
    assert positions(records, held) == PINNED[what, seed]
    assert positions(records, train) == sorted(set(range(len(records))) - set(PINNED[what, seed]))


def test_cremad_val_through_choose_split_unchanged():
    rc = cremad_like()
    for split in ("train", "val"):
        parsed = choose_split(split, lambda: ParsedSplit(list(rc)), lambda: ParsedSplit([]),
                              val_fraction=0.1, seed=3)
        want = PINNED["cremad_strat", 3]
        if split == "train":
            want = sorted(set(range(len(rc))) - set(want))
        assert positions(rc, parsed.records) == want


def test_ave_val_is_its_official_list():
    ra = ave_like()
    val = [Record("w1", 2), Record("w2", 5)]
    parsed = choose_split("val", lambda: ParsedSplit(ra), lambda: ParsedSplit([]),
                          val_fraction=0.1, seed=0, val_records=lambda: ParsedSplit(val))
    assert parsed.records == val
    parsed = choose_split("train", lambda: ParsedSplit(ra), lambda: ParsedSplit([]),
                          val_fraction=0.1, seed=0, val_records=lambda: ParsedSplit(val))
    assert parsed.records == ra
