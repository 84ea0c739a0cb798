"""utils.predict: full-size probability maps from tiles."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from utils.dataset import preprocess_image
from utils.model import BudSAM, build_sam
from utils.predict import predict_probabilities


def _model() -> BudSAM:
    return BudSAM(build_sam("vit_tiny", seed=0)).eval()


def test_whole_image_prediction_is_the_model_output_resized_back():
    model = _model()
    image = np.random.default_rng(0).integers(0, 255, (1024, 700), dtype=np.uint8)
    (prob,) = predict_probabilities(model, [image])
    with torch.no_grad():
        logits = model(
            torch.from_numpy(preprocess_image(image, 256)[None]), torch.tensor([[0.0, 0, 256, 256]])
        )
    expected = cv2.resize(
        torch.sigmoid(logits)[0, 0].numpy(), (700, 1024), interpolation=cv2.INTER_LINEAR
    )
    assert prob.shape == (1024, 700)
    np.testing.assert_allclose(prob, expected, atol=1e-5)


def test_tiles_are_stitched_and_overlaps_averaged():
    model = _model()
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (1024, w), dtype=np.uint8) for w in (600, 200)]
    probs = predict_probabilities(model, images, tile_width=256, batch_size=3)
    assert [p.shape for p in probs] == [(1024, 600), (1024, 200)]
    # Tiles start at 0, 256 and 344: columns 0-255 come from the first tile alone.
    (first_tile,) = predict_probabilities(model, [images[0][:, :256]])
    np.testing.assert_allclose(probs[0][:, :256], first_tile, atol=1e-5)
    assert np.all((probs[0] >= 0) & (probs[0] <= 1))
    masks = [np.zeros((1024, 600), bool), np.zeros((1024, 200), bool)]
    masks[0][300:400, 20:120] = True
    with_boxes = predict_probabilities(model, images, masks, tile_width=256)
    assert not np.allclose(with_boxes[0], probs[0])  # a ground-truth box prompt changes it


def test_half_spectrum_prediction_is_mirror_symmetric_and_full_sized():
    model = _model()
    image = np.random.default_rng(2).integers(0, 255, (1024, 300), dtype=np.uint8)
    (prob,) = predict_probabilities(model, [image], half_spectrum=True)
    assert prob.shape == (1024, 300)
    np.testing.assert_array_equal(prob[:511], prob[512:1023][::-1])
    (from_half,) = predict_probabilities(model, [image[511:]])  # the half the model saw
    np.testing.assert_allclose(prob[511:], from_half, atol=1e-5)
