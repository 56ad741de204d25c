"""Evaluation: fused and per-modality accuracy, macro-F1, mAP, per-class accuracy.

Per-modality numbers come from ``ModelOutput.modality_logits``, i.e. the same
estimator of per-modality logits that feeds the modulator in training.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float((pred == labels).mean()) if len(labels) else float("nan")


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> list[float | None]:
    """Recall of each class; None for a class absent from ``labels``."""
    out: list[float | None] = []
    for c in range(num_classes):
        mask = labels == c
        out.append(float((pred[mask] == c).mean()) if mask.any() else None)
    return out


def macro_f1(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> float:
    """Mean F1 over the classes present in ``labels`` or ``pred``."""
    f1s = []
    for c in range(num_classes):
        tp = int(((pred == c) & (labels == c)).sum())
        fp = int(((pred == c) & (labels != c)).sum())
        fn = int(((pred != c) & (labels == c)).sum())
        if tp + fp + fn == 0:
            continue
        f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else float("nan")


def average_precision(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the precision-recall curve, as the mean precision at each positive.

    Ties are broken by a stable descending sort, i.e. by sample order.
    """
    n_pos = int(positives.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = positives[order].astype(np.float64)
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision * hits).sum() / n_pos)


def mean_average_precision(probs: np.ndarray, labels: np.ndarray) -> float:
    """One-vs-rest AP per class (classes with positives), averaged."""
    aps = [average_precision(probs[:, c], labels == c) for c in range(probs.shape[1]) if (labels == c).any()]
    return float(np.mean(aps)) if aps else float("nan")


def classification_metrics(logits: Tensor, labels: Tensor) -> dict:
    """``acc``, ``macro_f1``, ``map`` and ``per_class_acc`` of one set of logits."""
    probs = torch.softmax(logits.double(), dim=1).numpy()
    y = labels.numpy()
    pred = probs.argmax(1)
    c = probs.shape[1]
    return {
        "acc": accuracy(pred, y),
        "macro_f1": macro_f1(pred, y, c),
        "map": mean_average_precision(probs, y),
        "per_class_acc": per_class_accuracy(pred, y, c),
    }


def to_device(batch: Mapping, device: torch.device) -> dict:
    """The batch on ``device``: ``inputs``, ``labels``, ``lengths`` and, when it has them, ``tag``
    (a re-sampled epoch's per-sample tags, ``BalancingMethod.begin_epoch``)."""
    non_blocking = device.type == "cuda"
    out = {
        "inputs": {k: v.to(device, non_blocking=non_blocking) for k, v in batch["inputs"].items()},
        "labels": batch["labels"].to(device, non_blocking=non_blocking),
        "lengths": {k: v.to(device, non_blocking=non_blocking) for k, v in (batch.get("lengths") or {}).items()},
    }
    if batch.get("tag") is not None:
        out["tag"] = batch["tag"].to(device, non_blocking=non_blocking)
    return out


def _wide(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64 (a float64 model is evaluated exactly); anything else -> float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.no_grad()
def collect(model: nn.Module, batches: Iterable[Mapping], device: torch.device, *, amp: bool = False,
            features: bool = False) -> dict:
    """Concatenated outputs on the CPU (float32, or float64 for a float64 model) over all batches:
    ``logits`` (the prediction),
    ``fused_logits`` (the fusion head's own; ``logits`` unless the model blends),
    ``modality_logits`` ``{m: (n, C)}``, ``head_logits`` ``{m: (n, C)}`` (empty without
    trainable heads), ``labels``; with ``features``, also ``features`` ``{m: (n, D)}`` (the
    encoders' outputs, ``ModelOutput.features``)."""
    was_training = model.training
    model.eval()
    per_mod: dict[str, list[Tensor]]
    heads: dict[str, list[Tensor]]
    fused, per_mod, heads, labels = [], {}, {}, []
    fusion_head: list[Tensor] = []  # the fusion head's own logits where ``logits`` combine more (a blend)
    feats: dict[str, list[Tensor]] = {}
    try:
        for batch in batches:
            b = to_device(batch, device)
            with torch.autocast(device.type, enabled=amp and device.type == "cuda"):
                out = model(b["inputs"], lengths=b["lengths"] or None)
            fused.append(out.logits.to(_wide(out.logits.dtype)).cpu())
            own = getattr(out, "fused_logits", None)
            if own is not None:
                fusion_head.append(own.to(_wide(own.dtype)).cpu())
            for name, lg in (out.modality_logits or {}).items():
                per_mod.setdefault(name, []).append(lg.to(_wide(lg.dtype)).cpu())
            for name, lg in (getattr(out, "head_logits", None) or {}).items():
                heads.setdefault(name, []).append(lg.to(_wide(lg.dtype)).cpu())
            if features:
                got = getattr(out, "features", None)
                if got is None:
                    raise TypeError(f"the model's output ({type(out).__name__}) has no .features")
                for name, f in got.items():
                    feats.setdefault(name, []).append(f.to(_wide(f.dtype)).cpu())
            labels.append(b["labels"].cpu())
    finally:
        model.train(was_training)
    if not labels:
        raise ValueError("cannot evaluate on an empty dataset")
    logits = torch.cat(fused)
    result = {"logits": logits, "fused_logits": torch.cat(fusion_head) if fusion_head else logits,
              "modality_logits": {n: torch.cat(v) for n, v in per_mod.items()},
              "head_logits": {n: torch.cat(v) for n, v in heads.items()}, "labels": torch.cat(labels)}
    if features:
        result["features"] = {n: torch.cat(v) for n, v in feats.items()}
    return result


@torch.no_grad()
def encoder_features(model: nn.Module, batches: Iterable[Mapping], device: torch.device
                     ) -> tuple[dict[str, Tensor], Tensor]:
    """``({modality: (n, D)}, labels)`` on ``device``: the encoders' outputs in eval mode
    (``model.encode``), the mode restored afterwards."""
    was_training = model.training
    model.eval()
    feats: dict[str, list[Tensor]] = {}
    labels = []
    try:
        for batch in batches:
            b = to_device(batch, device)
            encode: Any = model.encode
            for name, f in encode(b["inputs"], b["lengths"] or None).items():
                feats.setdefault(name, []).append(f.float())
            labels.append(b["labels"])
    finally:
        model.train(was_training)
    if not labels:
        raise ValueError("no samples to compute encoder features on")
    return {n: torch.cat(v) for n, v in feats.items()}, torch.cat(labels)


def collect_outputs(model: nn.Module, batches: Iterable[Mapping], device: torch.device, *, amp: bool = False):
    """Concatenated ``(logits, {modality: logits}, labels)`` on the CPU over all batches."""
    out = collect(model, batches, device, amp=amp)
    return out["logits"], out["modality_logits"], out["labels"]


def subset(outputs: Mapping, index: Tensor) -> dict:
    """The outputs of :func:`collect` restricted to the samples ``index``."""
    return {"logits": outputs["logits"][index], "labels": outputs["labels"][index],
            "fused_logits": outputs.get("fused_logits", outputs["logits"])[index],
            "modality_logits": {n: v[index] for n, v in outputs["modality_logits"].items()},
            "head_logits": {n: v[index] for n, v in outputs["head_logits"].items()}}


def head_losses(outputs: Mapping) -> dict[str, float]:
    """Cross-entropy per head: ``{"fused": ..., m: ...}`` (the heads G-Blending weighs)."""
    y = outputs["labels"]
    out = {"fused": float(F.cross_entropy(outputs.get("fused_logits", outputs["logits"]), y))}
    out.update({n: float(F.cross_entropy(lg, y)) for n, lg in outputs["head_logits"].items()})
    return out


def metrics_from_outputs(outputs: Mapping) -> dict:
    """The metrics of :func:`evaluate` from collected outputs."""
    logits, labels = outputs["logits"], outputs["labels"]
    out = {"loss": float(F.cross_entropy(logits, labels)), "n": int(labels.numel())}
    out.update(classification_metrics(logits, labels))
    for name, lg in outputs["modality_logits"].items():
        m = classification_metrics(lg, labels)
        out[f"modality_acc/{name}"] = m["acc"]
        out[f"modality_f1/{name}"] = m["macro_f1"]
        out[f"modality_map/{name}"] = m["map"]
    if outputs["head_logits"]:
        for name, value in head_losses(outputs).items():
            out[f"loss/{name}"] = value
        for name, lg in outputs["head_logits"].items():
            out[f"head_acc/{name}"] = classification_metrics(lg, labels)["acc"]
    return out


def evaluate(model: nn.Module, batches: Iterable[Mapping], device: torch.device, *, amp: bool = False) -> dict:
    """Metrics of the fused prediction and of every modality's logits.

    Keys: ``loss``, ``acc``, ``macro_f1``, ``map``, ``per_class_acc`` (list),
    ``modality_acc/<m>``, ``modality_f1/<m>``, ``modality_map/<m>``, ``n``; with
    trainable per-modality heads also ``loss/<head>`` (``fused`` and each modality)
    and ``head_acc/<m>``.
    """
    return metrics_from_outputs(collect(model, batches, device, amp=amp))
