"""What differs between the paper datasets (:class:`PaperSpec`) and their extracted layout's names."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FRAMES_DIR = "Image-01-FPS"


@dataclass(frozen=True)
class PaperSpec:
    """What differs between the paper datasets."""

    name: str
    audio_dir: str                      # extracted layout: <root>/<audio_dir>/<clip>.wav
    video_dir: str                      # raw videos: <root>/<video_dir>/<clip><video_ext>
    video_ext: str
    split_files: dict[str, str]         # default file name per official split
    audio_feature: Callable             # (waveform float32, rate) -> cached audio array (torch)
    cached_audio: str                   # "spectrogram" or "waveform"
    audio_shape: tuple[int, ...]        # per-sample spectrogram shape (1, F, T) given to the model
    num_frames: int
    expected_rate: int | None = None    # required WAV sample rate (CREMA-D: 16 kHz)
