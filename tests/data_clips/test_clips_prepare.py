"""``prepare clips``: folder and CSV sources, the arrays per clip, ignored files, workers."""

from __future__ import annotations

import filecmp
import json

import numpy as np
import pytest
import torch
from PIL import Image

from ogmge.data.audio import cremad_spectrogram, pcm16_to_float
from ogmge.data.clips import (
    ClipSettings,
    clip_audio_features,
    clip_id,
    decode_clip,
    list_clips,
    prepare_clips,
    upright,
)
from ogmge.data.video import decode_video
from support.clips_rawdata import GOOD, IDS


@pytest.fixture(scope="module")
def folder_cache(clip_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("clips_folder_cache")
    report = prepare_clips(clip_folder, out, workers=2, progress=False)
    assert (report.listed, report.prepared, report.skipped) == (7, 7, [])
    return out, report


@pytest.fixture(scope="module")
def csv_cache(clip_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("clips_csv_cache")
    report = prepare_clips(clip_folder / "list.csv", out, workers=1, progress=False)
    assert (report.listed, report.prepared, report.skipped) == (7, 7, [])
    return out, report


def test_folder_listing_classes_ids_and_ignored(clip_folder, folder_cache):
    listing = list_clips(clip_folder)
    assert listing.kind == "folder" and listing.class_names == ["cat", "dog", "owl"]
    assert {e.clip: e.label for e in listing.entries} == {IDS[r]: r.split("/")[0] for r in GOOD}
    # .DS_Store, .git, cat/.hidden.mp4, cat/.cache (whole folder); dog/readme.txt; notes.txt, list.csv
    assert listing.ignored_counts == {"hidden": 4, "extension": 1, "not_in_class_folder": 2}
    _, report = folder_cache
    assert report.ignored == listing.ignored_counts and report.class_names == ["cat", "dog", "owl"]
    assert "ignored 7 file(s) (1 extension, 4 hidden, 2 not in class folder)" in report.summary()


def test_clip_ids():
    assert clip_id("ANG/take1.mp4") == "ANG__take1"
    assert clip_id("a/b/c.d.mkv") == "a__b__c.d"
    assert clip_id("./x/.y.mp4") == "x___y"
    assert clip_id("../up/z.mp4") == "up__z"


def test_folder_and_csv_give_the_same_arrays(folder_cache, csv_cache):
    (a, _), (b, _) = folder_cache, csv_cache
    clips = sorted(p.name for p in (a / "clips").iterdir())
    assert clips == sorted(IDS.values()) == sorted(p.name for p in (b / "clips").iterdir())
    for clip in clips:  # byte for byte (workers=2 for the folder, 1 for the CSV)
        for f in ("audio.npy", "frames.npy"):
            assert filecmp.cmp(a / "clips" / clip / f, b / "clips" / clip / f, shallow=False), (clip, f)
    ma, mb = (json.loads((c / "manifest.json").read_text()) for c in (a, b))
    assert ma["class_names"] == mb["class_names"] == ["cat", "dog", "owl"]
    assert (ma["has_group"], mb["has_group"]) == (False, True)
    la = (a / "splits" / "clips.csv").read_text().splitlines()
    lb = (b / "splits" / "clips.csv").read_text().splitlines()
    assert la[0] == lb[0] == "clip,label,split,group,path"
    assert sorted(r.split(",")[:2] for r in la) == sorted(r.split(",")[:2] for r in lb)


# frames kept at 1 fps: first frame at or after 0, 1, 2, ... s; shape after rotation and resize
EXPECT_FRAMES = {
    "cat__c1": (2, (256, 341)), "cat__c2": (3, (256, 358)), "cat__sub__c3": (2, (341, 256)),
    "dog__d1": (4, (256, 341)), "dog__d2": (5, (256, 341)), "owl__o1": (1, (256, 341)),
    "owl__O2": (1, (256, 341)),
}


def test_cached_arrays_shapes_levels_and_rotation(clip_folder, folder_cache):
    out, _ = folder_cache
    for rel, kw in GOOD.items():
        clip = IDS[rel]
        audio = np.load(out / "clips" / clip / "audio.npy")
        frames = np.load(out / "clips" / clip / "frames.npy")
        assert audio.dtype == np.float32 and audio.shape == (1, 257, 188) and np.isfinite(audio).all()
        n, hw = EXPECT_FRAMES[clip]
        assert frames.dtype == np.uint8 and frames.shape == (n, *hw, 3), clip
        # frame k of the output is source frame round(k * fps): grey level 20 j + 7 seed (mod 200) + 30
        fps, seed = kw["fps"], kw["seed"]
        for k in range(n):
            level = (20 * (k * fps) + 7 * seed) % 200 + 30
            h, w = frames.shape[1:3]
            centre = frames[k, h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10]
            assert abs(float(centre.mean()) - level) < 8, (clip, k)
        # the white block drawn in the top-left corner ends where the rotation metadata puts it
        corner = {0: (0, 0), 90: (1, 0), -90: (0, 1), 180: (1, 1)}[kw.get("rotation", 0)]
        h, w = frames.shape[1:3]
        tiles = {(i, j): frames[0, i * (h - 20):i * (h - 20) + 20, j * (w - 20):j * (w - 20) + 20].mean()
                 for i in (0, 1) for j in (0, 1)}
        assert max(tiles, key=tiles.get) == corner and tiles[corner] > 240, (clip, tiles)


def test_upright_turns_counter_clockwise():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = 255  # top-left
    assert upright(img, 0) is img
    assert upright(img, 90).shape == (3, 2, 3) and upright(img, 90)[2, 0, 0] == 255  # -> bottom-left
    assert upright(img, -90)[0, 1, 0] == 255  # -> top-right
    assert upright(img, 180)[1, 2, 0] == 255  # -> bottom-right
    assert upright(img, 89.6)[2, 0, 0] == 255 and upright(img, 270)[0, 1, 0] == 255


def test_audio_is_the_cremad_pipeline(clip_folder, folder_cache):
    """16-bit mono PCM track (5 s, 16 kHz): the cached spectrogram is CREMA-D's of the whole track,
    although only the first seconds + 1 s are resampled."""
    out, _ = folder_cache
    dec = decode_video(clip_folder / "dog/d2.avi", audio=True, max_frames=1)
    want = cremad_spectrogram(pcm16_to_float(dec.audio), dec.sample_rate)
    got = torch.from_numpy(np.load(out / "clips" / "dog__d2" / "audio.npy"))
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # stereo: the channels averaged (the second channel is half the first)
    assert np.isfinite(np.load(out / "clips" / "cat__sub__c3" / "audio.npy")).all()


def test_audio_features_defaults_equal_cremad_and_options_change_the_shape():
    wave = torch.sin(torch.arange(20000) / 7.0) * 0.5
    torch.testing.assert_close(clip_audio_features(wave, 16000, ClipSettings()), cremad_spectrogram(wave, 16000),
                               rtol=0, atol=0)
    s = ClipSettings(sample_rate=16000, seconds=2.0, n_fft=256, hop_length=128)
    assert s.audio_shape == (1, 129, 251) == tuple(clip_audio_features(wave, 16000, s).shape)


def test_settings_fps_and_cap(clip_folder):
    path = clip_folder / "dog/d1.mov"  # 3.2 s at 6 fps
    assert decode_clip(path, ClipSettings(fps=2)).frames.shape[0] == 7
    assert decode_clip(path, ClipSettings(fps=2, max_frames=3)).frames.shape[0] == 3
    assert decode_clip(path, ClipSettings(fps=0.5)).frames.shape[0] == 2


@pytest.mark.parametrize("field,value", [("fps", 0), ("max_frames", 0), ("sample_rate", 8.5), ("n_fft", 1),
                                         ("hop_length", True), ("seconds", -1), ("min_seconds", float("nan"))])
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        ClipSettings(**{field: value})
    with pytest.raises(ValueError, match="n_fft"):
        ClipSettings(seconds=0.01)


def test_frames_resized_like_the_paper_pipeline(clip_folder, folder_cache):
    """Shorter side 256 with PIL bilinear: a re-resize of the source frame matches."""
    out, _ = folder_cache
    dec = decode_video(clip_folder / "cat/c1.mp4", audio=False)
    src = dec.frames[0]
    want = np.asarray(Image.fromarray(src).resize((341, 256), Image.BILINEAR))
    got = np.load(out / "clips" / "cat__c1" / "frames.npy")[0]
    assert np.array_equal(got, want)
