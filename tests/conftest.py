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


@pytest.fixture(scope="session")
def tiny_test_split(tmp_path_factory) -> Path:
    """A synthetic BSD test split of 4 images: a stereo pair and two mono recordings."""
    from utils.data.synthetic import generate_dataset

    root = tmp_path_factory.mktemp("tiny_split")
    generate_dataset(root, {"train": 0, "valid": 0, "test": 4}, seed=3, workers=1, progress=False)
    return root / "test"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A BudSAM checkpoint of a random vit_tiny that works on 256-frame half-spectrum tiles."""
    from utils.common.checkpoint_io import save_checkpoint
    from utils.model.sam import build_sam

    path = tmp_path_factory.mktemp("tiny_ckpt") / "budsam_model_best.pth"
    args = {"model_type": "vit_tiny", "tile_width": 256, "half_spectrum": True, "bbox_shift": 20}
    save_checkpoint({"model": build_sam("vit_tiny", seed=0).state_dict(), "args": args}, path)
    return path
