"""utils.inference.predict and utils.data.tiling: full-size probability maps from tiles."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from utils.data.preprocess import preprocess_image
from utils.data.tiling import (
    box_region,
    mirrored_tile_starts,
    overlapping_tile_starts,
    tile_box,
    tile_starts,
    tile_weights,
)
from utils.inference.predict import predict_probabilities, tile_contrast
from utils.model.budsam import BudSAM
from utils.model.sam import build_sam


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


def test_time_flip_averages_the_map_with_the_time_reversed_images_map():
    """Each tile's map with time_flip is the mean of the map and of the time-reversed
    image's map reversed back; a box prompt is mirrored with its tile."""
    model = _model()
    image = np.random.default_rng(5).integers(0, 255, (1024, 256), dtype=np.uint8)
    (plain,) = predict_probabilities(model, [image])
    (of_reversed,) = predict_probabilities(model, [np.ascontiguousarray(image[:, ::-1])])
    (flipped,) = predict_probabilities(model, [image], time_flip=True)
    np.testing.assert_allclose(flipped, 0.5 * (plain + of_reversed[:, ::-1]), atol=1e-5)
    assert not np.allclose(flipped, plain, atol=1e-3)  # the random model is not symmetric
    box = np.array([40, 300, 100, 700], np.float32)  # columns 40-99 and their mirror 156-215
    (boxed,) = predict_probabilities(model, [image], boxes=[box], time_flip=True)
    (boxed_plain,) = predict_probabilities(model, [image], boxes=[box])
    mirror = np.array([256 - 100, 300, 256 - 40, 700], np.float32)
    (boxed_reversed,) = predict_probabilities(
        model, [np.ascontiguousarray(image[:, ::-1])], boxes=[mirror]
    )
    np.testing.assert_allclose(boxed, 0.5 * (boxed_plain + boxed_reversed[:, ::-1]), atol=1e-5)
    assert not boxed[:, :40].any() and boxed[300:700, 40:100].any()


def test_time_flipped_maps_of_a_reversed_image_are_the_reversed_maps():
    """With tiles, time flip adds the reversed image's tiles (the mirrored grid): the maps
    of an image and of its time reversal are then each other's reversal."""
    model = _model()
    image = np.random.default_rng(6).integers(0, 255, (1024, 600), dtype=np.uint8)
    reversed_image = np.ascontiguousarray(image[:, ::-1])
    options = dict(tile_width=256, overlap=0.25, time_flip=True)
    (flipped,) = predict_probabilities(model, [image], **options)
    (of_reversed,) = predict_probabilities(model, [reversed_image], **options)
    np.testing.assert_allclose(flipped, of_reversed[:, ::-1], atol=1e-5)
    (plain,) = predict_probabilities(model, [image], tile_width=256, overlap=0.25)
    assert not np.allclose(flipped, plain, atol=1e-3)
    assert mirrored_tile_starts([0, 192, 344], 600, 256) == [0, 152, 344]
    assert mirrored_tile_starts([0], 200, 256) == [0]


def test_half_spectrum_prediction_is_mirror_symmetric_and_full_sized():
    model = _model()
    image = np.random.default_rng(2).integers(0, 255, (1024, 300), dtype=np.uint8)
    (prob,) = predict_probabilities(model, [image], half_spectrum=True)
    assert prob.shape == (1024, 300)
    np.testing.assert_array_equal(prob[:511], prob[512:1023][::-1])
    (from_half,) = predict_probabilities(model, [image[511:]])  # the half the model saw
    np.testing.assert_allclose(prob[511:], from_half, atol=1e-5)


def test_overlapping_tiles_cover_the_image_and_share_the_requested_fraction():
    starts = overlapping_tile_starts(3000, 1024, 0.25)
    assert starts[0] == 0 and starts[-1] == 3000 - 1024
    assert set(np.diff(starts[:-1])) == {768}
    assert overlapping_tile_starts(3000, 1024, 0.0) == tile_starts(3000, 1024)
    assert overlapping_tile_starts(500, 1024, 0.5) == [0]
    weights = tile_weights(7)
    np.testing.assert_array_equal(weights, [1, 2, 3, 4, 3, 2, 1])


def test_overlapping_tiles_blend_to_a_smooth_full_size_map():
    model = _model()
    image = np.random.default_rng(3).integers(0, 255, (1024, 700), dtype=np.uint8)
    (prob,) = predict_probabilities(model, [image], tile_width=256, overlap=0.5)
    assert prob.shape == (1024, 700) and np.all((prob >= 0) & (prob <= 1))
    # Tiles start at 0, 128, 256, ...: columns 0-127 come from the first tile alone.
    (first,) = predict_probabilities(model, [image[:, :256]])
    np.testing.assert_allclose(prob[:, :128], first[:, :128], atol=1e-5)
    assert not np.allclose(prob[:, 128:256], first[:, 128:256])  # blended with the next tile
    # Columns 128-255 are the weighted mean of the first two tiles' full-size maps.
    (second,) = predict_probabilities(model, [image[:, 128:384]])
    w_first, w_second = tile_weights(256)[128:], tile_weights(256)[:128]
    blended = (first[:, 128:] * w_first + second[:, :128] * w_second) / (w_first + w_second)
    np.testing.assert_allclose(prob[:, 128:256], blended, atol=1e-5)


def test_a_box_prompt_zeroes_the_map_outside_it_and_skips_tiles_it_misses():
    model = _model()
    image = np.random.default_rng(4).integers(0, 255, (1024, 600), dtype=np.uint8)
    box = np.array([300, 400, 450, 700], np.float32)
    (prob,) = predict_probabilities(model, [image], boxes=[box], tile_width=256)
    inside = box_region(prob.shape, box)
    assert not prob[~inside].any() and prob[inside].any()
    assert tile_box(box, 0, (1024, 256), False, 256) is None  # the first tile misses it
    np.testing.assert_allclose(tile_box(box, 256, (1024, 256), False, 256), [44, 100, 194, 175])


def test_ground_truth_box_jitter_does_not_depend_on_batching_or_grouping():
    """Each tile's jittered box is drawn from (seed, file name, tile): the same maps whether
    files are predicted together in one batch or one by one."""
    model = _model()
    rng = np.random.default_rng(5)
    images = [rng.integers(0, 255, (1024, 600), dtype=np.uint8) for _ in range(3)]
    masks = [np.zeros((1024, 600), dtype=bool) for _ in range(3)]
    for k, mask in enumerate(masks):
        mask[300 + 40 * k : 420 + 40 * k, 100:450] = True
    common = {"tile_width": 256, "max_shift": 20, "seed": 3}
    together = predict_probabilities(
        model, images, masks, names=["a.png", "b.png", "c.png"], batch_size=8, **common
    )
    for k, name in enumerate(["a.png", "b.png", "c.png"]):
        (alone,) = predict_probabilities(
            model, [images[k]], [masks[k]], names=[name], batch_size=1, **common
        )
        np.testing.assert_allclose(alone, together[k], atol=1e-5)  # batch size: BLAS round-off
    (renamed,) = predict_probabilities(model, [images[1]], [masks[1]], names=["z.png"], **common)
    assert np.abs(renamed - together[1]).max() > 1e-3  # the name does seed the jitter


def test_a_clip_narrower_than_a_tile_is_padded_not_stretched():
    """A short clip's map is the clip's part of the map of the clip padded with silence to
    a whole tile: its frames keep a tile's time scale (they were stretched to fill it)."""
    model = _model()
    rng = np.random.default_rng(5)
    clip = rng.integers(0, 255, (1024, 300), dtype=np.uint8)
    truth = np.zeros(clip.shape, bool)
    truth[400:600, 50:250] = True
    context, context_truth = np.zeros((1024, 800), np.uint8), np.zeros((1024, 800), bool)
    context[:, :300], context_truth[:, :300] = clip, truth
    for half in (False, True):
        (short,) = predict_probabilities(model, [clip], tile_width=800, half_spectrum=half)
        (padded,) = predict_probabilities(model, [context], tile_width=800, half_spectrum=half)
        assert short.shape == clip.shape
        np.testing.assert_allclose(short, padded[:, :300], atol=1e-5)
    (short,) = predict_probabilities(model, [clip], [truth], tile_width=800, names=["a"])
    (padded,) = predict_probabilities(
        model, [context], [context_truth], tile_width=800, names=["a"]
    )
    np.testing.assert_allclose(short, padded[:, :300], atol=1e-5)


def test_quiet_tiles_skip_the_model_and_loud_ones_do_not():
    rng = np.random.default_rng(0)
    noise = rng.normal(40, 6, (1024, 512)).clip(0, 255).astype(np.uint8)
    loud = noise.copy()
    loud[600:606, 300:400] = 220  # a call: a line far above its rows' background
    assert tile_contrast(preprocess_image(noise[511:], 256)[0]) < 0.02
    assert tile_contrast(preprocess_image(loud[511:], 256)[0]) > 0.1
    image = np.concatenate([noise[:, :256], loud[:, 256:]], axis=1)  # a quiet, then a loud tile
    model = _model()
    options = dict(tile_width=256, overlap=0.0, half_spectrum=True)
    (every,) = predict_probabilities(model, [image], **options)
    (skipping,) = predict_probabilities(model, [image], skip_contrast=0.05, **options)
    assert np.all(skipping[:, :256] == 0) and np.any(every[:, :256] > 0)
    np.testing.assert_allclose(skipping[:, 256:], every[:, 256:], atol=1e-5)  # other batch
