"""Shared test fixtures: the published BSD sample and small synthetic data."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = REPO_ROOT.parent / "shared" / "fixtures" / "bsd_xc41136"


@pytest.fixture(scope="session")
def bsd_sample() -> Path:
    """Folder of the published XC41136 sample; skips when ../shared is not beside the repo."""
    if not (FIXTURE_DIR / "XC41136.wav").is_file():
        pytest.skip(f"published BSD sample not found at {FIXTURE_DIR} (../shared is absent)")
    return FIXTURE_DIR
