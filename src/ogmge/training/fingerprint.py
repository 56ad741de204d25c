"""A fingerprint of a run's data, recorded in its checkpoints and checked on resume and eval.

* bring-your-own data: SHA-256 of the full content (the ``.npz`` file; for a directory, its
  manifest and the files the manifest names -- relative path and bytes, absolute path for
  files elsewhere -- so a README or a run directory beside the data changes nothing; a
  fingerprint recorded by the earlier rule, which hashed every file of the directory, is
  checked against that rule);
* a prepared paper-dataset cache: SHA-256 of its index -- ``manifest.json``, the
  split files in ``splits/`` and the sorted clip names in ``clips/`` (not the clips'
  bytes, which would mean reading tens of gigabytes); an extracted layout: the split
  file given and the sorted names at the top of ``data_root``;
* the built-in data: their identity (generator version, regime, seed, knobs; ``builtin_identity``).

``{"kind": ..., "sha256": ..., "source": ...}``; ``kind`` is ``byo``, ``paper-cache``,
``paper-layout``, ``builtin`` or ``custom`` (data passed to ``train`` directly: not checked).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .config import PAPER_DATASETS, TrainConfig

#: The flag (``ogmge train --resume`` / ``ogmge eval``) and keyword that accept other data.
OVERRIDE_FLAG = "--allow-data-change"
_CHUNK = 1 << 20


def _hash_file(h, path: Path) -> None:
    with open(path, "rb") as fh:
        while block := fh.read(_CHUNK):
            h.update(block)


def _manifest_files(root: Path) -> tuple[Path | None, list[Path]]:
    """The manifest a bring-your-own directory is read from (the first of ``MANIFEST_NAMES``)
    and the existing files it names, inside the directory or elsewhere (sorted)."""
    import yaml

    from ogmge.data.byo import MANIFEST_NAMES

    manifest_path = next((root / m for m in MANIFEST_NAMES if (root / m).is_file()), None)
    if manifest_path is None:
        return None, []
    try:
        manifest = yaml.safe_load(manifest_path.read_text())  # JSON is YAML
    except (yaml.YAMLError, UnicodeDecodeError):
        return manifest_path, []
    found: set[Path] = set()

    def walk(value):
        if isinstance(value, str):
            try:
                file = (root / value).resolve()
            except (OSError, ValueError):
                return
            if file.is_file():
                found.add(file)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(manifest)
    return manifest_path, sorted(found)


def _hash_byo_dir(h, path: Path) -> None:
    """The manifest and the files it names: relative path (absolute outside ``path``) and bytes."""
    manifest, named = _manifest_files(path)
    inside = root = path.resolve()
    for file in ([manifest] if manifest is not None else []) + [f for f in named if root in f.parents]:
        file = file.resolve()
        h.update(str(file.relative_to(inside)).encode() + b"\0")
        _hash_file(h, file)
    for file in (f for f in named if root not in f.parents):  # a manifest may name files elsewhere
        h.update(str(file).encode() + b"\0")
        _hash_file(h, file)


def _legacy_byo_dir_sha(path: Path) -> str:
    """The fingerprint runs recorded before it hashed only the files the data use: every file
    of the directory, then the files the manifest names outside it."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(file.relative_to(path)).encode() + b"\0")
        _hash_file(h, file)
    root = path.resolve()
    for file in (f for f in _manifest_files(path)[1] if root not in f.parents):
        h.update(str(file).encode() + b"\0")
        _hash_file(h, file)
    return h.hexdigest()


def data_fingerprint(config: TrainConfig) -> dict:
    """The fingerprint of the data ``config`` names (see the module docstring)."""
    h = hashlib.sha256()
    extra: dict = {}
    if config.dataset == "byo":
        assert config.data is not None  # TrainConfig: dataset 'byo' needs data
        path = Path(config.data)
        if path.is_dir():
            _hash_byo_dir(h, path)
            extra["files"] = "used"
        elif path.is_file():
            _hash_file(h, path)
        kind, source = "byo", str(path)
    elif config.dataset in PAPER_DATASETS and config.data_root:
        root = Path(config.data_root)
        if (root / "manifest.json").is_file():
            kind = "paper-cache"
            manifest = (root / "manifest.json").read_bytes()
            h.update(manifest)
            if config.dataset == "clips":
                extra["split_over"] = _split_over(manifest)
            for file in sorted((root / "splits").glob("*")) if (root / "splits").is_dir() else []:
                h.update(file.name.encode() + b"\0")
                _hash_file(h, file)
            clips = root / "clips"
            names = sorted(p.name for p in clips.iterdir()) if clips.is_dir() else []
            h.update("\n".join(names).encode())
        else:
            kind = "paper-layout"
            if config.split_file and Path(config.split_file).is_file():
                _hash_file(h, Path(config.split_file))
            names = sorted(p.name for p in root.iterdir()) if root.is_dir() else []
            h.update("\n".join(names).encode())
        source = str(root)
    else:
        from ogmge.data.builtin import builtin_identity

        identity = builtin_identity(config.dataset_options)  # version, regime, seed, knobs
        kind = "builtin"
        source = f"built-in data version {identity['version']} (regime {identity['regime']!r})"
        h.update(json.dumps(identity, sort_keys=True, default=str).encode())
    return {"kind": kind, "sha256": h.hexdigest(), "source": source, **extra}


def _split_over(manifest: bytes) -> str:
    """Over which clips a clips cache carves its splits (``ogmge.data.clips.SPLIT_OVER_KEY``):
    ``prepared``, or ``listed`` for a cache prepared before that rule."""
    try:
        value = json.loads(manifest).get("split_over")
    except (ValueError, AttributeError):
        value = None
    return str(value) if value else "listed"


def check_same_data(recorded: dict | None, current: dict, *, what: str, allow: bool) -> None:
    """Refuse data whose fingerprint differs from the recorded one, naming both, unless ``allow``."""
    if allow or not recorded or recorded.get("kind") == "custom" or current.get("kind") == "custom":
        return
    if recorded.get("sha256") == current.get("sha256"):
        return
    if (recorded.get("kind") == "byo" and "files" not in recorded and current.get("files") == "used"
            and Path(str(current.get("source"))).is_dir()
            and recorded.get("sha256") == _legacy_byo_dir_sha(Path(str(current["source"])))):
        return  # recorded by the rule that hashed every file of the directory: the same data
    why = ""
    if current.get("split_over") == "prepared" and recorded.get("split_over", "listed") == "listed":
        why = (" The clips cache was prepared again by a newer ogmge, which carves the splits over the clips "
               "that were prepared rather than over every listed clip, so the splits may have moved.")
    raise ValueError(
        f"{what}: the data differ from the data the run was trained on -- trained on {recorded.get('source')} "
        f"(sha256 {str(recorded.get('sha256'))[:16]}...), now {current.get('source')} "
        f"(sha256 {current['sha256'][:16]}...).{why} If the change is deliberate, pass {OVERRIDE_FLAG} "
        "(Python: allow_data_change=True)"
    )


def check_same_shapes(spec: dict, bundle, *, what: str) -> None:
    """Refuse data whose modalities, feature sizes or class count differ from a checkpoint's model."""
    saved_classes = int(spec["num_classes"])
    if int(bundle.num_classes) != saved_classes:
        raise ValueError(
            f"{what}: the data have {bundle.num_classes} classes, the checkpoint's model {saved_classes}"
        )
    saved = {n: (d["kind"], tuple(d["shape"])) for n, d in spec["modalities"].items()}
    now = {n: (s.kind, tuple(s.shape)) for n, s in bundle.modalities.items()}
    if set(saved) != set(now):
        raise ValueError(f"{what}: the data have modalities {sorted(now)}, the checkpoint's model {sorted(saved)}")
    for name in saved:
        if saved[name] != now[name]:
            raise ValueError(
                f"{what}: modality {name!r} is {now[name][0]} of per-sample shape {now[name][1]} in the data, "
                f"{saved[name][0]} of shape {saved[name][1]} in the checkpoint's model"
            )
