"""Split files in the official formats, the validation carve, the speaker-independent split."""

from __future__ import annotations

from collections import Counter

import pytest

from ogmge.data.errors import DataError
from ogmge.data.paper import ave, cremad, kinetics_sounds, vggsound
from ogmge.data.paper.readers import select_frames
from ogmge.data.paper.splits import Record, carve_validation
from support.paper_rawdata import REFERENCE

needs_reference = pytest.mark.skipif(
    not (REFERENCE / "cremad" / "train.csv").is_file(), reason=f"official split files not found in {REFERENCE}"
)


@needs_reference
def test_reference_cremad_counts_and_classes():
    train = cremad.parse_split(REFERENCE / "cremad" / "train.csv").records
    test = cremad.parse_split(REFERENCE / "cremad" / "test.csv").records
    assert (len(train), len(test)) == (6698, 744)
    assert set(Counter(r.label for r in train)) == set(range(6))
    assert not {r.clip for r in train} & {r.clip for r in test}
    assert len({r.group for r in train}) == 91 and {r.group for r in test} <= {r.group for r in train}
    first = train[0]
    assert first == Record("1088_IOM_NEU_XX", 0, "1088")  # CRLF stripped, NEU -> 0


@needs_reference
def test_reference_kinetics_counts_and_ids():
    ks = REFERENCE / "kinetics_sounds"
    train = kinetics_sounds.parse_split(ks / "my_train.txt").records
    test = kinetics_sounds.parse_split(ks / "my_test.txt").records
    assert (len(train), len(test)) == (14799, 2597)
    assert {r.label for r in train} == set(range(31))
    assert train[0].clip == "--4-0ihtnBU_000058_000068" and test[0].clip == "-3Mwkq-7TV4_2"
    assert all("\r" not in r.clip for r in train + test)


@needs_reference
def test_reference_speaker_independent_split_is_actor_disjoint_and_seeded():
    pool = (cremad.parse_split(REFERENCE / "cremad" / "train.csv").records
            + cremad.parse_split(REFERENCE / "cremad" / "test.csv").records)
    tr, te = carve_validation(pool, fraction=0.1, seed=3, by_group=True)
    assert not {r.group for r in tr} & {r.group for r in te}
    assert len({r.group for r in te}) == round(0.1 * 91) and len(tr) + len(te) == 7442
    assert carve_validation(pool, fraction=0.1, seed=3, by_group=True) == (tr, te)
    assert carve_validation(pool, fraction=0.1, seed=4, by_group=True) != (tr, te)


def test_carve_validation_stratified_seeded_and_zero():
    records = [Record(f"c{i}", i % 3) for i in range(90)] + [Record(f"d{i}", 3) for i in range(10)]
    train, val = carve_validation(records, fraction=0.1, seed=0)
    assert Counter(r.label for r in val) == {0: 3, 1: 3, 2: 3, 3: 1}
    assert sorted(train + val, key=lambda r: r.clip) == sorted(records, key=lambda r: r.clip)
    assert carve_validation(records, fraction=0.1, seed=0) == (train, val)
    assert carve_validation(records, fraction=0.1, seed=1)[1] != val
    assert carve_validation(records, fraction=0, seed=0) == (records, [])
    with pytest.raises(ValueError, match="val_fraction"):
        carve_validation(records, fraction=1.5, seed=0)


def test_select_frames_train_random_and_used_eval_evenly_spaced():
    import torch

    assert select_frames(10, 3, train=False) == [1, 5, 8]
    assert select_frames(3, 1, train=False) == [1]
    draws = {tuple(select_frames(10, 3, train=True, generator=torch.Generator().manual_seed(s))) for s in range(20)}
    assert len(draws) > 5 and all(len(set(d)) == 3 and list(d) == sorted(d) for d in draws)
    assert select_frames(2, 3, train=True, generator=torch.Generator().manual_seed(0)) != []


def test_split_files_crlf_and_bad_rows(tmp_path):
    f = tmp_path / "t.csv"
    f.write_bytes(b"\xef\xbb\xbf1001_DFA_ANG_XX,ANG\r\n\r\n1002_DFA_HAP_XX,HAP\r\n")
    assert [r.label for r in cremad.parse_split(f).records] == [5, 1]
    f.write_text("1001_DFA_ANG_XX\n")
    with pytest.raises(ValueError, match=r"t.csv:1"):
        cremad.parse_split(f)
    k = tmp_path / "k.txt"
    k.write_text("a-b_c_1,10,31\r\n")
    with pytest.raises(DataError, match="k.txt:1"):
        kinetics_sounds.parse_split(k)
    assert kinetics_sounds.parse_split(k, on_error="skip").skipped[0][0].startswith(str(k))


def test_vggsound_csv_quoted_label_and_ave_header(tmp_path):
    v = tmp_path / "vggsound.csv"
    v.write_text('a-_1,30,"male speech, man speaking",train\nb,5,dog barking,test\nc,7,male speech, man speaking,train\n')
    assert vggsound.class_names_of(v) == ["dog barking", "male speech, man speaking"]
    tr = vggsound.parse_split(v, "train").records
    assert [(r.clip, r.label) for r in tr] == [("a-_1_000030", 1), ("c_000007", 1)]
    v.write_text("a,1,x,validation\n")
    with pytest.raises(ValueError, match="vggsound.csv:1"):
        vggsound.read_csv(v)
    a = tmp_path / "Annotations.txt"
    a.write_text("Category&VideoID&Quality&StartTime&EndTime\r\nDog&x-1&good&0&10\r\nCat&y_2&good&0&10\r\n")
    assert ave.class_names_of(a) == ["Cat", "Dog"]
    s = tmp_path / "testSet.txt"
    s.write_text("Bird&z&good&0&10\n")
    with pytest.raises(DataError, match="Bird"):
        ave.parse_split(s, class_names=["Cat", "Dog"])
