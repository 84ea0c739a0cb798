"""Scoring denoised views: one row of metrics per spectrogram, and a summary per method.

Rows hold, where the references exist: the foreground scores of the predicted mask
and its confusion counts (so the papers' two-class scores can be pooled later);
the dataset's ``bsd_sdr`` of the denoised audio against the raw input; and, in the
asteroid style, ``sdr`` and ``si_sdr`` against the clean reference with the
input's own score (``input_*``) and the improvement (``*_imp``). A missing value
is NaN, written as an empty CSV cell and as ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from utils.audio.render import apply_gains
from utils.common.files import write_rows_csv, write_text  # noqa: F401 - used by the scripts
from utils.data.inputs import View
from utils.scoring import metrics

COUNT_COLUMNS = ("tp", "fp", "fn", "tn")
MASK_COLUMNS = ("fg_iou", "fg_dice", "fg_f1", "paper_iou") + COUNT_COLUMNS
AUDIO_COLUMNS = (
    "bsd_sdr",
    "input_sdr",
    "sdr",
    "sdr_imp",
    "input_si_sdr",
    "si_sdr",
    "si_sdr_imp",
    "residual_noise_db",
    "birdnet",
)


ROW_COLUMNS = ("name", "audio_seconds", "reference") + MASK_COLUMNS + AUDIO_COLUMNS
MEAN_COLUMNS = ("fg_iou", "fg_dice", "fg_f1") + AUDIO_COLUMNS


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Foreground IoU/Dice/F1, the per-image two-class IoU and the confusion counts."""
    counts = metrics.confusion_counts(pred, truth)
    scores = metrics.scores_from_counts(counts)
    return {
        "fg_iou": float(scores["iou"][0]),
        "fg_dice": float(scores["dice"][0]),
        "fg_f1": float(scores["f1"][0]),
        "paper_iou": metrics.two_class_scores_from_counts(counts)["iou"],
        **{name: float(value[0]) for name, value in counts.items()},
    }


def audio_scores(
    raw: np.ndarray, denoised: np.ndarray, reference: np.ndarray | None
) -> dict[str, float]:
    """``bsd_sdr`` against the raw input, and SDR / SI-SDR against ``reference`` with the
    input's score and the improvement. The reference-based scores are NaN without a
    reference or when it is silent (they are undefined there)."""
    scores = {"bsd_sdr": float(metrics.bsd_sdr(raw, denoised))}
    if reference is None or not np.any(reference):
        return scores
    for name, measure in (("sdr", metrics.sdr), ("si_sdr", metrics.si_sdr)):
        before, after = float(measure(reference, raw)), float(measure(reference, denoised))
        scores.update({f"input_{name}": before, name: after, f"{name}_imp": after - before})
    return scores


def residual_noise_db(view: View, gains: np.ndarray) -> float:
    """How much of the view's noise (raw minus the clean reference) a method's per-bin
    ``gains`` let through: ``10 log10`` of its energy after over before, in dB (0: all of
    it). NaN without a clean reference or without noise."""
    if view.audio is None or view.reference is None:
        return math.nan
    noise = view.audio - view.reference
    energy = float(np.sum(noise**2))
    if energy <= 0.0:
        return math.nan
    passed = float(np.sum(apply_gains(noise, gains) ** 2))
    return 10.0 * math.log10(max(passed, 1e-30) / energy)


def view_row(
    view: View,
    pred_mask: np.ndarray | None,
    denoised: np.ndarray | None,
    gains: np.ndarray | None = None,
) -> dict:
    """One metrics row for a view and what a method made of it (mask and/or audio, and the
    gain of each STFT bin for a method that masks the spectrogram)."""
    row: dict = {name: math.nan for name in ROW_COLUMNS}
    row.update(name=view.name, audio_seconds=view.seconds, reference=view.reference_kind or "")
    if pred_mask is not None and view.mask is not None:
        row.update(mask_scores(pred_mask, view.mask))
    if denoised is not None and view.audio is not None:
        row.update(audio_scores(view.audio, denoised, view.reference))
    if gains is not None and view.reference_kind == "clean":
        row["residual_noise_db"] = residual_noise_db(view, gains)
    return row


def recording_row(name: str, seconds: float, raw_energy: float, error_energy: float) -> dict:
    """The metrics row of a recording's channel denoised without a reference: its duration
    and ``bsd_sdr`` (from the energies of the raw signal and of denoised minus raw)."""
    row: dict = {column: math.nan for column in ROW_COLUMNS}
    row.update(name=name, audio_seconds=seconds, reference="")
    row["bsd_sdr"] = metrics.bsd_sdr_from_energies(raw_energy, error_energy)
    return row


def pooled_two_class(rows: list[dict]) -> dict[str, float]:
    """The papers' two-class IoU and Dice (= their F1) over rows in the split's order: see
    :func:`utils.scoring.metrics.grouped_two_class_scores`. A row's place in the split is
    its ``index`` (its file's, so a file skipped before scoring shifts no other), else its
    position; rows without mask scores are left out. NaN without mask scores."""
    scored = [(row.get("index", i), row) for i, row in enumerate(rows) if not math.isnan(row["tp"])]
    counts = {k: np.array([row[k] for _, row in scored]) for k in COUNT_COLUMNS}
    return metrics.grouped_two_class_scores(counts, np.array([i for i, _ in scored]))


def summarize(rows: list[dict], compute_seconds: float | None = None) -> dict:
    """Means over the rows (NaNs left out; ``n_<column>`` says how many counted), the
    pooled two-class IoU and Dice, the audio duration, and seconds of audio per compute second."""
    summary: dict = {"n_views": len(rows)}
    for column in MEAN_COLUMNS:
        values = np.array([r[column] for r in rows], dtype=np.float64)
        values = values[~np.isnan(values)]
        summary[column] = float(np.mean(values)) if values.size else math.nan
        summary[f"n_{column}"] = int(values.size)
    pooled = pooled_two_class(rows)
    summary["paper_iou"], summary["paper_dice"] = pooled["iou"], pooled["dice"]
    audio_seconds = float(sum(r["audio_seconds"] for r in rows))
    summary["audio_seconds"] = audio_seconds
    if compute_seconds is not None:
        summary["compute_seconds"] = compute_seconds
        summary["audio_per_compute_second"] = (
            audio_seconds / compute_seconds if compute_seconds > 0 else math.inf
        )
    return summary


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def make_output_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) and check that files can be written in it.

    Raises:
        ValueError: naming the folder, when it cannot be created or is not writable
            (checked before any work is done, not when the first result is written).
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"{folder}: cannot create the output folder ({err})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{folder}: the output folder is not writable")
    return folder


def write_json(path: str | Path, obj: dict) -> None:
    """Write ``obj`` as indented JSON (NaN -> null, inf -> "inf"), atomically."""
    write_text(Path(path), json.dumps(_json_safe(obj), indent=2) + "\n")
