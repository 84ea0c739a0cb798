"""Segmentation and audio metrics.

Masks: foreground-only scores per image (what a user of one recording cares
about), and the ViTVS/BudSAM "two-class" scores (mean over background and
foreground, pooled over a batch) that the published tables use.

Audio: the dataset's own "SDR", which compares the output with the NOISY input
(``bsd_sdr``), and the usual SDR and SI-SDR against a clean reference.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def _as_batch(mask: Any) -> Any:
    """Binary masks as a boolean ``(B, H*W)`` batch (numpy array or torch tensor)."""
    mask = mask > 0
    if mask.ndim == 2:
        mask = mask[None]
    return mask.reshape(mask.shape[0], -1)


def _to_numpy(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=np.float64)


def confusion_counts(pred: Any, target: Any) -> dict[str, np.ndarray]:
    """Per-image pixel counts of a binary prediction against a binary target.

    Args:
        pred, target: masks of shape ``(H, W)`` or ``(B, H, W)``, numpy or torch;
            a pixel is foreground where its value is > 0.

    Returns:
        ``{"tp", "fp", "fn", "tn"}``, each a float64 array of shape ``(B,)``.
    """
    if tuple(pred.shape) != tuple(target.shape):
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}"
        )
    pred, target = _as_batch(pred), _as_batch(target)
    counts = {
        "tp": (pred & target).sum(1),
        "fp": (pred & ~target).sum(1),
        "fn": (~pred & target).sum(1),
        "tn": (~pred & ~target).sum(1),
    }
    return {name: _to_numpy(value) for name, value in counts.items()}


def _ratio(numerator: np.ndarray, denominator: np.ndarray, if_empty: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, with ``if_empty`` where the denominator is 0."""
    safe = np.where(denominator > 0, denominator, 1.0)
    return np.where(denominator > 0, numerator / safe, if_empty)


def scores_from_counts(counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Foreground IoU, Dice, precision, recall and F1 from :func:`confusion_counts`.

    Defined everywhere: when prediction and target are both empty every score is 1
    (perfect agreement); when only one is empty, IoU, Dice and F1 are 0, and so are
    precision (nothing predicted was right) and recall (nothing true was found).
    F1, the harmonic mean of precision and recall, equals Dice for binary masks.
    """
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    both_empty = (tp + fp + fn) == 0
    empty_value = both_empty.astype(np.float64)
    precision = _ratio(tp, tp + fp, empty_value)
    recall = _ratio(tp, tp + fn, empty_value)
    return {
        "iou": _ratio(tp, tp + fp + fn, empty_value),
        "dice": _ratio(2 * tp, 2 * tp + fp + fn, empty_value),
        "precision": precision,
        "recall": recall,
        "f1": _ratio(2 * precision * recall, precision + recall, empty_value),
    }


def foreground_scores(pred: Any, target: Any) -> dict[str, np.ndarray]:
    """Per-image foreground IoU/Dice/precision/recall/F1, each of shape ``(B,)``."""
    return scores_from_counts(confusion_counts(pred, target))


def two_class_scores(pred: Any, target: Any) -> dict[str, float]:
    """The ViTVS/BudSAM batch scores: mean over background and foreground, pooled.

    For each class the intersection and union are summed over every pixel of the
    batch; the class IoU is ``I / U`` and its Dice (= F1) ``2I / (U + I)``. As in the
    reference code (which divides by ``U + 1e-8``), a class absent from both
    prediction and target scores 0, not 1. The papers average these batch values
    over the batches of a split.
    """
    return two_class_scores_from_counts(confusion_counts(pred, target))


def two_class_scores_from_counts(counts: dict[str, np.ndarray]) -> dict[str, float]:
    """:func:`two_class_scores` from per-image :func:`confusion_counts`, pooled.

    Lets a batch of images of different sizes be pooled: concatenate their counts.
    """
    counts = {name: float(np.sum(value)) for name, value in counts.items()}
    per_class = {
        "foreground": (counts["tp"], counts["tp"] + counts["fp"] + counts["fn"]),
        "background": (counts["tn"], counts["tn"] + counts["fp"] + counts["fn"]),
    }
    ious, dices = [], []
    for intersection, union in per_class.values():
        ious.append(intersection / union if union > 0 else 0.0)
        dices.append(2 * intersection / (union + intersection) if union > 0 else 0.0)
    dice = float(np.mean(dices))
    return {"iou": float(np.mean(ious)), "dice": dice, "f1": dice}


PAPER_GROUP_SIZE = 4  # consecutive images per group over which the papers pool their scores


def grouped_two_class_scores(
    counts: dict[str, np.ndarray], positions: np.ndarray, group_size: int = PAPER_GROUP_SIZE
) -> dict[str, float]:
    """The papers' split-level two-class IoU and Dice: counts pooled per fixed group and
    the group scores averaged.

    Image ``i`` of a split (in its sorted order) belongs to group ``i // group_size``,
    whatever the batch size, the number of processes or the images that could not be
    scored, so every way of running the evaluation reports the same number.

    Args:
        counts: per-image :func:`confusion_counts` (``tp``, ``fp``, ``fn``, ``tn``) of the
            scored images.
        positions: ``(N,)`` each scored image's index in the whole split.

    Returns:
        ``{"iou", "dice"}``; NaN when no image was scored.
    """
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return {"iou": math.nan, "dice": math.nan}
    groups = positions // group_size
    scores = [
        two_class_scores_from_counts({k: np.asarray(v)[groups == g] for k, v in counts.items()})
        for g in np.unique(groups)
    ]
    return {name: float(np.mean([s[name] for s in scores])) for name in ("iou", "dice")}


SI_SDR_FLOOR_DB = -80.0  # 10 * log10(1e-8)


def _signal_batch(x: Any) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[None] if x.ndim == 1 else x


def _db(numerator: np.ndarray, denominator: np.ndarray, scale: float) -> np.ndarray:
    """``scale * log10(num / den)`` with +inf for a zero denominator."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return scale * (np.log10(numerator) - np.log10(denominator))


def _squeeze(values: np.ndarray, like: Any) -> np.ndarray | float:
    return float(values[0]) if np.ndim(like) == 1 else values


def bsd_sdr(raw: Any, denoised: Any) -> np.ndarray | float:
    """The BirdSoundsDenoising "SDR": ``10 * ln(||y|| / ||x - y||)``, natural log.

    ``y`` is the raw NOISY recording and ``x`` the denoised output, zero-padded (or
    cut) to ``len(y)``, exactly as the dataset's MATLAB code. It measures how little
    the output changed the input: returning the input unchanged scores +inf. Report
    it for comparability with the papers, never alone.

    Args:
        raw, denoised: ``(N,)`` signals, or ``(B, N)`` and ``(B, M)`` batches.
    """
    y, x = _signal_batch(raw), _signal_batch(denoised)
    x = (
        x[:, : y.shape[1]]
        if x.shape[1] >= y.shape[1]
        else np.pad(x, ((0, 0), (0, y.shape[1] - x.shape[1])))
    )
    norm_y = np.linalg.norm(y, axis=1)
    norm_err = np.linalg.norm(x - y, axis=1)
    return _squeeze(_db(norm_y, norm_err, 10.0 * np.log(10.0)), raw)


def bsd_sdr_from_energies(raw_energy: float, error_energy: float) -> float:
    """:func:`bsd_sdr` from ``||y||^2`` and ``||x - y||^2``, summed over a recording's blocks."""
    return float(_db(np.array([raw_energy]), np.array([error_energy]), 5.0 * np.log(10.0))[0])


def sdr(reference: Any, estimate: Any) -> np.ndarray | float:
    """Signal-to-distortion ratio ``10 * log10(||s||^2 / ||s - s_hat||^2)`` in dB.

    Args:
        reference, estimate: ``(N,)`` or ``(B, N)`` signals of equal length.
    """
    s, s_hat = _signal_batch(reference), _signal_batch(estimate)
    _check_same_shape(s, s_hat)
    return _squeeze(_db(np.sum(s**2, 1), np.sum((s - s_hat) ** 2, 1), 10.0), reference)


def si_sdr(reference: Any, estimate: Any) -> np.ndarray | float:
    """Scale-invariant SDR in dB (Le Roux et al., 2019), means removed first.

    The reference is scaled by ``alpha = <s_hat, s> / ||s||^2`` and the ratio of the
    scaled reference's energy to the residual's is returned. ``(N,)`` or ``(B, N)``.
    """
    s, s_hat = _signal_batch(reference), _signal_batch(estimate)
    _check_same_shape(s, s_hat)
    s = s - s.mean(axis=1, keepdims=True)
    s_hat = s_hat - s_hat.mean(axis=1, keepdims=True)
    energy = np.sum(s**2, axis=1, keepdims=True)
    alpha = np.sum(s_hat * s, axis=1, keepdims=True) / np.where(energy > 0, energy, 1.0)
    target = alpha * s
    value = _db(np.sum(target**2, 1), np.sum((s_hat - target) ** 2, 1), 10.0)
    # A silent estimate (0/0) or one orthogonal to the reference (-inf) is the worst
    # output there is: it scores the floor, as in asteroid (eps 1e-8), rather than
    # vanish from a mean. A silent reference leaves the score undefined (NaN).
    value = np.where(np.isnan(value) | (value < SI_SDR_FLOOR_DB), SI_SDR_FLOOR_DB, value)
    return _squeeze(np.where(energy[:, 0] > 0, value, np.nan), reference)


def _check_same_shape(reference: np.ndarray, estimate: np.ndarray) -> None:
    if reference.shape != estimate.shape:
        raise ValueError(f"reference shape {reference.shape} != estimate shape {estimate.shape}")
