"""Bird-sound regions of a recording's mask, found frame block by frame block: the
selections of a Raven table (:mod:`utils.data.selection_table`).

A frame holds bird sound when its mask keeps at least one bin above 0 Hz. Runs of such
frames at most :data:`MERGE_GAP_SECONDS` apart form one region, kept when it lasts at
least :data:`MIN_SECONDS`. A region spans from its first frame's start to its last
frame's end, and from the lowest to the highest kept bin (its edges, in Hz); its score
is the mean probability of the pixels it keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from utils.audio.conventions import HOP_LENGTH, N_FFT, WINDOW_LENGTH
from utils.data.selection_table import Selection

MERGE_GAP_SECONDS = 0.1
MIN_SECONDS = 0.02


@dataclass
class _Open:
    first: int  # first and last frame with bird sound
    last: int
    low: int  # lowest and highest kept bin
    high: int
    probability_sum: float
    pixels: int


class RegionTracker:
    """Regions of one channel's mask, fed in consecutive frame blocks (:meth:`add`),
    closed by :meth:`finish`. Memory does not grow with the recording's length beyond
    the list of regions."""

    def __init__(self, sr: int, channel: int = 1) -> None:
        self.sr, self.channel = sr, channel
        self.selections: list[Selection] = []
        self._gap_frames = int(round(MERGE_GAP_SECONDS * sr / HOP_LENGTH))
        self._open: _Open | None = None
        self._next = 0

    def add(self, first_frame: int, half_mask: np.ndarray, half_probability: np.ndarray) -> None:
        """The mask (bool) and probabilities of bins 0 ... 512 (rows) over frames
        ``first_frame ...`` (columns); blocks must follow each other."""
        if first_frame != self._next:
            raise ValueError(f"frames from {self._next} expected, got {first_frame}")
        self._next += half_mask.shape[1]
        kept = half_mask[1:]  # bin 0 is no sound
        counts = np.count_nonzero(kept, axis=0)
        columns = np.flatnonzero(counts)
        if columns.size == 0:
            return
        # Lowest and highest kept bins from the frames' rows (contiguous, bool: argmax stops
        # at the first True), the highest from the rows reversed.
        by_frame = cv2.transpose(kept.view(np.uint8))
        if columns.size < by_frame.shape[0]:
            by_frame = by_frame[columns]
        lows = np.argmax(by_frame.view(bool), axis=1) + 1
        highs = kept.shape[0] - np.argmax(cv2.flip(by_frame, 1).view(bool), axis=1)
        sums = (half_probability[1:] * kept).sum(axis=0)[columns]
        frames = first_frame + columns
        # Runs of frames less than the gap apart.
        starts = np.concatenate([[0], np.flatnonzero(np.diff(frames) > self._gap_frames) + 1])
        for run_low, run_high, run_sum, run_pixels, first, last in zip(
            np.minimum.reduceat(lows, starts),
            np.maximum.reduceat(highs, starts),
            np.add.reduceat(sums, starts),
            np.add.reduceat(counts[columns], starts),
            frames[starts],
            frames[np.concatenate([starts[1:] - 1, [len(frames) - 1]])],
            strict=True,
        ):
            region = self._open
            if region is not None and first - region.last <= self._gap_frames:
                region.last = int(last)
                region.low = min(region.low, int(run_low))
                region.high = max(region.high, int(run_high))
                region.probability_sum += float(run_sum)
                region.pixels += int(run_pixels)
            else:
                self._close()
                self._open = _Open(int(first), int(last), int(run_low), int(run_high),
                                   float(run_sum), int(run_pixels))  # fmt: skip

    def finish(self) -> list[Selection]:
        """Close the last region; the regions found, in time order."""
        self._close()
        return self.selections

    def _close(self) -> None:
        region, self._open = self._open, None
        if region is None:
            return
        begin = region.first * HOP_LENGTH / self.sr
        end = (region.last * HOP_LENGTH + WINDOW_LENGTH) / self.sr
        if end - begin < MIN_SECONDS:
            return
        hertz_per_bin = self.sr / N_FFT
        self.selections.append(
            Selection(
                begin_s=begin,
                end_s=end,
                low_hz=(region.low - 0.5) * hertz_per_bin,
                high_hz=min(region.high + 0.5, N_FFT // 2) * hertz_per_bin,
                channel=self.channel,
                score=region.probability_sum / region.pixels,
            )
        )
