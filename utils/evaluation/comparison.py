"""The methods that ``budsam_eval.py`` compares, and the comparison table and chart.

Every method turns a list of :class:`utils.data.inputs.View` into one ``(mask, denoised,
gains)`` triple per view: its binary mask, its audio, and the gain it gave each STFT bin
where it works by masking the spectrogram (for the residual noise); any may be None
where the method cannot make it (no audio, no ground truth, not a mask). All are then
scored by the same code (:mod:`utils.scoring.reports`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display on training machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from utils.audio import bsd, conventions  # noqa: E402
from utils.audio import io as audio_io  # noqa: E402
from utils.common.files import atomic_path  # noqa: E402
from utils.data.image_io import read_mask_png  # noqa: E402
from utils.data.inputs import View  # noqa: E402
from utils.evaluation import baselines  # noqa: E402
from utils.inference.segmenter import Segmenter, denoise  # noqa: E402

Output = tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]
NO_OUTPUT: Output = (None, None, None)


class Method:
    """A named way to denoise views; :meth:`run` gives ``(mask, denoised, gains)`` per view."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.notes: list[str] = []  # why some views got no output

    def run(self, views: list[View]) -> list[Output]:
        raise NotImplementedError


class ModelMethod(Method):
    """A BudSAM model under one prompt, its masks rendered into audio as the segmenter's
    ``rendering`` says."""

    def __init__(self, label: str, segmenter: Segmenter) -> None:
        super().__init__(label)
        self.segmenter = segmenter

    def run(self, views: list[View]) -> list[Output]:
        usable = []
        for view in views:
            reason = self.segmenter.cannot_segment(view)
            if reason:
                self.notes.append(reason)
            else:
                usable.append(view)
        maps = dict(
            zip((v.name for v in usable), self.segmenter.probabilities(usable), strict=True)
        )
        return [
            self.segmenter.render(view, maps[view.name]) if view.name in maps else NO_OUTPUT
            for view in views
        ]


class MaskMethod(Method):
    """A mask from each view (None: no output for it), turned into audio by the dataset's
    image2audio. Energy threshold, oracle, identity and masks from a folder."""

    def __init__(self, label: str, make_mask: Callable[[View], np.ndarray | None]) -> None:
        super().__init__(label)
        self.make_mask = make_mask

    def run(self, views: list[View]) -> list[Output]:
        outputs = []
        for view in views:
            try:
                mask = self.make_mask(view)
            except ValueError as err:
                self.notes.append(str(err))
                mask = None
            if mask is None:
                outputs.append(NO_OUTPUT)
                continue
            gains = bsd.mask_for_spectrum(mask, view.image.shape).astype(np.float32)
            outputs.append((mask, denoise(view, mask), gains))
        return outputs


class IdentityMethod(Method):
    """No denoising: the input returned as it is (all-ones mask)."""

    def run(self, views: list[View]) -> list[Output]:
        return [
            (
                np.ones(v.image.shape, bool),
                None if v.audio is None else v.audio.copy(),
                np.ones(v.image.shape, np.float32),
            )
            for v in views
        ]


class NoisereduceMethod(Method):
    """noisereduce's spectral gating on the audio; its mask is the bins it kept."""

    def __init__(self, stationary: bool) -> None:
        super().__init__(f"noisereduce ({'stationary' if stationary else 'non-stationary'})")
        self.stationary = stationary

    def run(self, views: list[View]) -> list[Output]:
        outputs: list[Output] = []
        for view in views:
            if view.audio is None:
                self.notes.append(f"{view.name}: no audio for noisereduce")
                outputs.append(NO_OUTPUT)
                continue
            try:
                denoised = baselines.noisereduce_audio(view.audio, view.sr, self.stationary)
            except ValueError as err:
                self.notes.append(f"{view.name}: {err}")
                outputs.append(NO_OUTPUT)
                continue
            outputs.append((baselines.kept_bins_mask(view.audio, denoised), denoised, None))
        return outputs


class AudioFolderMethod(Method):
    """Denoised audio made by another method: ``DIR/NAME.wav`` (or any audio extension)
    per view; no mask."""

    def __init__(self, folder: str | Path) -> None:
        super().__init__(f"audio from {folder}")
        self.folder = Path(folder)

    def run(self, views: list[View]) -> list[Output]:
        outputs: list[Output] = []
        for view in views:
            path = audio_io.find_audio_file(self.folder, view.name)
            if path is None or view.audio is None:
                missing = "no file" if path is None else "no raw audio to compare with"
                self.notes.append(f"{self.folder / view.name}.*: {missing}")
                outputs.append(NO_OUTPUT)
                continue
            try:
                y, _ = audio_io.load_audio(path)
                outputs.append((None, conventions.fit_length(y, len(view.audio)), None))
            except ValueError as err:
                self.notes.append(str(err))
                outputs.append(NO_OUTPUT)
        return outputs


def energy_mask(view: View) -> np.ndarray:
    return baselines.energy_threshold_mask(view.image)


def oracle_mask(view: View) -> np.ndarray | None:
    return view.mask


def folder_mask(folder: str | Path) -> Callable[[View], np.ndarray | None]:
    """Masks made by another method: ``DIR/NAME.png``, resized to the spectrogram if needed
    (as the dataset's convert_predict_to_audio does)."""

    def read(view: View) -> np.ndarray:
        path = Path(folder) / f"{view.name}.png"
        return bsd.mask_for_spectrum(read_mask_png(path), view.image.shape)

    return read


TABLE_COLUMNS = (
    ("fg_iou", "fg IoU", 3),
    ("fg_dice", "fg Dice", 3),
    ("paper_iou", "2-class IoU", 3),
    ("paper_dice", "2-class F1", 3),
    ("bsd_sdr", "BSD-SDR", 2),
    ("sdr", "SDR dB", 2),
    ("si_sdr", "SI-SDR dB", 2),
    ("si_sdr_imp", "SI-SDR imp dB", 2),
    ("residual_noise_db", "residual noise dB", 1),
    ("birdnet", "BirdNET", 3),
    ("audio_per_compute_second", "audio s / s", 1),
)


def measured_columns(summaries: dict[str, dict]) -> tuple:
    """The columns of :data:`TABLE_COLUMNS` that some method has a value for (BirdNET only
    when it ran, the residual noise only with clean references)."""

    def measured(key: str) -> bool:
        values = [s.get(key) for s in summaries.values()]
        return any(v is not None and not (isinstance(v, float) and math.isnan(v)) for v in values)

    return tuple(column for column in TABLE_COLUMNS if measured(column[0]))


def _cell(value: float, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.{digits}f}"


def markdown_table(summaries: dict[str, dict]) -> str:
    """One row per method, the :func:`measured_columns`; "–" where not measured."""
    columns = measured_columns(summaries)
    header = "| method | " + " | ".join(title for _, title, _ in columns) + " |"
    lines = [header, "|---" * (len(columns) + 1) + "|"]
    for label, summary in summaries.items():
        cells = [_cell(summary.get(key, math.nan), d) for key, _, d in columns]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_rows(summaries: dict[str, dict]) -> list[dict]:
    """The table as CSV rows: ``method`` and each of the :func:`measured_columns`."""
    columns = measured_columns(summaries)
    return [
        {"method": label, **{key: s.get(key, math.nan) for key, _, _ in columns}}
        for label, s in summaries.items()
    ]


def plot_comparison(summaries: dict[str, dict], out_png: str | Path) -> Path:
    """Bar chart: mask scores (fg and 2-class IoU) and audio scores (SDR, SI-SDR, SI-SDR
    improvement) per method, side by side."""
    labels = list(summaries)
    panels = (
        (
            "mask overlap with the ground truth",
            (("fg_iou", "fg IoU"), ("paper_iou", "2-class IoU")),
        ),
        (
            "denoised audio against the clean reference (dB)",
            (("sdr", "SDR"), ("si_sdr", "SI-SDR"), ("si_sdr_imp", "SI-SDR improvement")),
        ),
    )
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.5 * len(labels) + 2.8), sharey=True)
    positions = np.arange(len(labels))
    for ax, (title, metrics) in zip(axes, panels, strict=True):
        height = 0.8 / len(metrics)
        for k, (key, name) in enumerate(metrics):
            values = [summaries[label].get(key, math.nan) for label in labels]
            values = [v if v is not None and math.isfinite(v) else 0.0 for v in values]
            ax.barh(positions + (k - (len(metrics) - 1) / 2) * height, values, height, label=name)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3)
    axes[0].set_yticks(positions, labels, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return out_png
