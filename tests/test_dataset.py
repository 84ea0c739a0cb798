"""utils.data.scan, preprocess, tiling and dataset: pairing and checking a split,
preprocessing, box prompts."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from utils.data import augment
from utils.data.bsd_layout import IMAGES_DIR, MASKS_DIR
from utils.data.dataset import BSDSegmentation, collate_skipping_none
from utils.data.image_io import read_gray_png, write_png
from utils.data.preprocess import (
    area_resize,
    box_prompt,
    preprocess_image,
    preprocess_mask,
    scaled_box_shift,
)
from utils.data.scan import scan_split
from utils.data.tiling import tile_starts


def _write_pair(root, name, width=300, mask_box=(400, 600, 50, 120), mask_width=None):
    image = np.random.default_rng(len(name)).integers(0, 255, (1024, width), dtype=np.uint8)
    mask = np.zeros((1024, mask_width or width), dtype=bool)
    r0, r1, c0, c1 = mask_box
    mask[r0:r1, c0:c1] = True
    write_png(root / IMAGES_DIR / name, image)
    write_png(root / MASKS_DIR / name, mask)


@pytest.fixture()
def split(tmp_path):
    (tmp_path / IMAGES_DIR).mkdir()
    (tmp_path / MASKS_DIR).mkdir()
    for name in ("a.png", "b.png", "c.png"):
        _write_pair(tmp_path, name)
    return tmp_path


def test_scan_pairs_by_name_and_reports_every_problem(split):
    _write_pair(split, "odd.png", mask_width=299)  # size mismatch
    (split / IMAGES_DIR / "lonely.png").write_bytes((split / IMAGES_DIR / "a.png").read_bytes())
    (split / MASKS_DIR / "orphan.png").write_bytes((split / MASKS_DIR / "a.png").read_bytes())
    (split / IMAGES_DIR / "junk.png").write_bytes(b"not a png")
    (split / MASKS_DIR / "junk.png").write_bytes(b"not a png")
    scan = scan_split(split)
    assert scan.names == ["a.png", "b.png", "c.png"]
    assert scan.problems == {
        "images without a mask": ["lonely.png"],
        "masks without an image": ["orphan.png"],
        "unreadable PNGs": ["junk.png"],
        "image/mask size mismatches": ["odd.png"],
    }
    assert scan.skipped == 4
    assert "1 masks without an image: orphan.png" in scan.report()


def test_scan_refuses_a_folder_without_pairs(tmp_path):
    with pytest.raises(ValueError, match="no Images/ folder"):
        scan_split(tmp_path)
    (tmp_path / IMAGES_DIR).mkdir()
    with pytest.raises(ValueError, match="no usable image/mask pair"):
        scan_split(tmp_path)


@pytest.mark.parametrize(
    "shape, view",
    [
        ((1024, 3032), np.s_[:, :]),  # a BSD image to 256: rows summed in groups of 4
        ((1024, 5000), np.s_[:, 700:3700]),  # a time tile (a strided view)
        ((768, 1000), np.s_[:, :]),  # groups of 3 rows
        ((1024, 2048), np.s_[511:, 100:1124]),  # a half-spectrum tile: 513 rows, one resize
        ((1024, 200), np.s_[:, :]),  # fewer columns than the model's input: one resize
    ],
)
def test_area_resize_is_opencvs_area_resize(shape, view):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)[view]
    expected = cv2.resize(np.ascontiguousarray(image), (256, 256), interpolation=cv2.INTER_AREA)
    got = area_resize(image, 256)
    assert got.shape == (256, 256) and got.dtype == np.uint8
    differ = got != expected  # only where the mean is within rounding error of a half
    assert np.abs(got.astype(int) - expected).max() <= 1 and differ.mean() < 1e-3


def test_area_resize_of_whole_blocks_is_their_rounded_mean():
    image = np.random.default_rng(0).integers(0, 256, (1024, 1024), dtype=np.uint8)
    means = image.reshape(256, 4, 256, 4).mean(axis=(1, 3))  # exact 4 x 4 block means
    assert np.abs(area_resize(image, 256) - means).max() <= 0.5


def test_preprocessing_shapes_ranges_and_reference_path():
    image = np.tile(np.arange(256, dtype=np.uint8), (1024, 12))[:, :3000]
    fast = preprocess_image(image, 256)
    assert fast.shape == (3, 256, 256) and fast.dtype == np.float32
    assert 0.0 <= fast.min() and fast.max() <= 1.0
    np.testing.assert_array_equal(fast[0], fast[2])
    ref = preprocess_image(image, 512, reference=True)
    assert ref.shape == (3, 512, 512)
    assert ref.min() == pytest.approx(0.0) and ref.max() == pytest.approx(1.0)  # min-max scaled
    mask = np.zeros((1024, 3000), dtype=np.uint8)
    mask[512:, :1500] = 255
    small = preprocess_mask(mask, 256)
    assert small.dtype == bool and small[200:, :100].all() and not small[:100].any()


def test_reference_path_equals_the_references_own_pil_and_scikit_image_calls(tmp_path):
    from PIL import Image
    from skimage.transform import resize

    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (1024, 700), dtype=np.uint8)
    mask = np.zeros((1024, 700), dtype=np.uint8)
    mask[300:420, 90:333] = 255
    write_png(tmp_path / "image.png", image)
    write_png(tmp_path / "mask.png", mask)
    # The reference's loader: PIL nearest to 256, an RGB copy, scikit-image to the input size.
    small = np.array(Image.open(tmp_path / "image.png").resize((256, 256), Image.NEAREST))
    rgb = np.repeat(small[..., None], 3, axis=-1)
    large = resize(
        rgb, (512, 512), order=3, preserve_range=True, mode="constant", anti_aliasing=True
    )
    expected = (large - large.min()) / np.clip(large.max() - large.min(), 1e-8, None)
    got = preprocess_image(read_gray_png(tmp_path / "image.png"), 512, reference=True)
    np.testing.assert_allclose(got, expected.transpose(2, 0, 1), atol=1e-6)
    mask_small = np.array(Image.open(tmp_path / "mask.png").resize((256, 256), Image.NEAREST))
    expected_mask = resize(
        mask_small, (512, 512), order=0, preserve_range=True, mode="constant", anti_aliasing=False
    )
    expected_mask = np.uint8(expected_mask)
    expected_mask = (expected_mask - expected_mask.min()) / np.clip(
        expected_mask.max() - expected_mask.min(), 1e-8, None
    )
    got_mask = preprocess_mask(read_gray_png(tmp_path / "mask.png"), 512, reference=True)
    np.testing.assert_array_equal(got_mask, expected_mask > 0)
    assert got_mask.any() and not got_mask.all()
    # The reference's min-max scaling empties a mask that is foreground everywhere.
    assert not preprocess_mask(np.full((1024, 700), 255, np.uint8), 512, reference=True).any()


def test_box_prompt_jitters_outwards_within_the_image():
    mask = np.zeros((256, 256), dtype=bool)
    mask[100:150, 40:90] = True
    exact = box_prompt(mask, None, 5)
    np.testing.assert_array_equal(exact, [40, 100, 89, 149])
    rng = np.random.default_rng(0)
    for _ in range(50):
        x0, y0, x1, y1 = box_prompt(mask, rng, 5)
        assert 35 <= x0 <= 40 and 95 <= y0 <= 100 and 89 <= x1 <= 94 and 149 <= y1 <= 154
    np.testing.assert_array_equal(box_prompt(np.zeros((256, 256), bool), rng, 5), [0, 0, 256, 256])
    assert scaled_box_shift(20, 1024) == 20 and scaled_box_shift(20, 256) == 5


def test_dataset_items_and_prompt_modes(split):
    dataset = BSDSegmentation(split, 256, prompt="train", full_box_prob=0.0, seed=1)
    item = dataset[0]
    assert item["image"].shape == (3, 256, 256) and item["mask"].shape == (1, 256, 256)
    assert set(torch.unique(item["mask"]).tolist()) == {0.0, 1.0}
    x0, y0, x1, y1 = item["box"].tolist()
    assert x1 - x0 < 256 and y1 - y0 < 256  # a ground-truth box, not the whole image
    assert dataset[0]["box"].tolist() == item["box"].tolist()  # same epoch, same jitter
    always_full = BSDSegmentation(split, 256, prompt="train", full_box_prob=1.0)
    assert always_full[0]["box"].tolist() == [0, 0, 256, 256]
    assert BSDSegmentation(split, 256, prompt="full")[1]["box"].tolist() == [0, 0, 256, 256]
    no_images = BSDSegmentation(split, 256, load_images=False)
    assert "image" not in no_images[0]
    with pytest.raises(ValueError, match="unknown prompt"):
        BSDSegmentation(split, 256, prompt="points")


def test_box_jitter_changes_with_epoch_but_not_with_rank_or_order(split):
    dataset = BSDSegmentation(split, 1024, prompt="gt_box", seed=3)
    first = [dataset[i]["box"].tolist() for i in (2, 0, 1)]
    again = [dataset[i]["box"].tolist() for i in (2, 0, 1)]
    assert first == again
    dataset.set_epoch(5)
    assert [dataset[i]["box"].tolist() for i in (2, 0, 1)] != first


def test_undecodable_item_is_skipped_with_a_warning_and_counted(split):
    dataset = BSDSegmentation(split, 256)
    png = (split / IMAGES_DIR / "b.png").read_bytes()
    (split / IMAGES_DIR / "b.png").write_bytes(png[: len(png) // 3])  # truncated after the scan
    with pytest.warns(UserWarning, match="b.png"):
        batch = collate_skipping_none([dataset[i] for i in range(3)])
    assert batch["skipped"] == 1
    assert batch["image"].shape[0] == 2 and batch["name"] == ["a.png", "c.png"]


def test_keep_in_memory_serves_later_epochs_without_reading_files(split):
    dataset = BSDSegmentation(split, 256, keep_in_memory=True, prompt="gt_box")
    first = dataset[0]
    (split / IMAGES_DIR / "a.png").unlink()
    (split / MASKS_DIR / "a.png").unlink()
    dataset.set_epoch(1)
    again = dataset[0]
    assert torch.equal(again["image"], first["image"]) and torch.equal(again["mask"], first["mask"])
    with pytest.warns(UserWarning, match="a.png"):
        assert BSDSegmentation(split, 256, scan=dataset.scan)[0] is None


def test_tile_starts_cover_the_image_with_the_last_tile_at_the_end():
    assert tile_starts(3000, 1024) == [0, 1024, 1976]
    assert tile_starts(2048, 1024) == [0, 1024]
    assert tile_starts(1000, 1024) == [0]
    assert tile_starts(3000, None) == [0]


def test_tiled_dataset_has_one_item_per_time_tile(split):
    dataset = BSDSegmentation(split, 256, tile_width=128, prompt="full")
    assert len(dataset) == 3 * 3  # three images of 300 frames: tiles at 0, 128, 172
    assert [dataset.item_key(i) for i in range(3)] == ["a@0", "a@128", "a@172"]
    item = dataset[2]
    assert item["name"] == "a.png" and item["key"] == "a@172"
    full = read_gray_png(split / IMAGES_DIR / "a.png")
    expected = preprocess_image(full[:, 172:300], 256)
    np.testing.assert_array_equal(item["image"].numpy(), expected)
    # The mask's box (cols 50-120 of the image) lies in the first tile only.
    assert BSDSegmentation(split, 256, tile_width=128, prompt="gt_box")[2]["mask"].sum() == 0


def test_an_image_narrower_than_a_tile_is_padded_with_silence_not_stretched(split):
    dataset = BSDSegmentation(split, 256, tile_width=400, prompt="gt_box")
    assert len(dataset) == 3  # three images of 300 frames, one tile each
    image, mask = (
        read_gray_png(split / IMAGES_DIR / "a.png"),
        read_gray_png(split / MASKS_DIR / "a.png"),
    )
    padded_image, padded_mask = np.zeros((1024, 400), np.uint8), np.zeros((1024, 400), np.uint8)
    padded_image[:, :300], padded_mask[:, :300] = image, mask
    item = dataset[0]
    assert item["valid_columns"] == round(300 * 256 / 400)  # the padding is not scored
    assert BSDSegmentation(split, 256, tile_width=128)[0]["valid_columns"] == 256
    np.testing.assert_array_equal(item["image"].numpy()[0], preprocess_image(padded_image, 256)[0])
    np.testing.assert_array_equal(item["mask"].numpy()[0], preprocess_mask(padded_mask, 256))


def test_time_flip_reverses_image_and_mask_over_the_valid_columns_only(split):
    """A flipped item is the plain item reversed in time; a padded tile keeps its padding
    on the right, and its box prompt follows the flipped mask."""
    common = {"tile_width": 400, "prompt": "train", "full_box_prob": 0.0, "seed": 4}
    plain = BSDSegmentation(split, 256, **common)[0]
    flipped = BSDSegmentation(split, 256, time_flip_prob=1.0, **common)[0]
    width = plain["valid_columns"]
    assert 0 < width < 256 and flipped["valid_columns"] == width
    for key in ("image", "mask"):
        expected = plain[key].numpy().copy()
        expected[..., :width] = expected[..., :width][..., ::-1]
        np.testing.assert_array_equal(flipped[key].numpy(), expected)
    columns = np.flatnonzero(flipped["mask"].numpy()[0].any(axis=0))
    x0, _, x1, _ = flipped["box"].tolist()
    assert x0 <= columns.min() and columns.max() < x1  # the box encloses the flipped call
    plain_columns = np.flatnonzero(plain["mask"].numpy()[0].any(axis=0))
    np.testing.assert_array_equal(columns, np.sort(width - 1 - plain_columns))


def test_time_flip_is_seeded_per_item_and_leaves_the_box_jitter_alone(split):
    """About half the items flip at 0.5, the same ones for the same epoch and different
    ones for another; a probability of 0 changes nothing."""
    common = {"tile_width": 128, "prompt": "train", "seed": 2}
    plain = BSDSegmentation(split, 256, **common)
    half = BSDSegmentation(split, 256, time_flip_prob=0.5, **common)
    never = BSDSegmentation(split, 256, time_flip_prob=0.0, **common)

    def flipped(dataset):
        return [not torch.equal(dataset[i]["image"], plain[i]["image"]) for i in range(len(plain))]

    first = flipped(half)
    assert 0 < sum(first) < len(plain) and flipped(half) == first
    for i in [i for i, was_flipped in enumerate(first) if not was_flipped]:
        assert half[i]["box"].tolist() == plain[i]["box"].tolist()  # the same jitter
    assert not any(flipped(never))
    for dataset in (plain, half):
        dataset.set_epoch(1)
    assert flipped(half) != first
    with pytest.raises(ValueError, match="augmentations need"):
        BSDSegmentation(split, 256, prompt="gt_box", time_flip_prob=0.5)
    with pytest.raises(ValueError, match="augmentations need"):
        BSDSegmentation(split, 256, load_images=False, spectral_gain_db=6.0)


def test_spectral_gain_scales_each_row_smoothly_and_leaves_the_mask_alone(split):
    """Each frequency row is scaled by one gain within the bound (clipped to [0, 1]), the
    gains vary smoothly across rows, and the mask is the plain item's."""
    common = {"prompt": "train", "seed": 5}
    plain = BSDSegmentation(split, 256, half_spectrum=True, **common)[1]
    gained = BSDSegmentation(split, 256, half_spectrum=True, spectral_gain_db=6.0, **common)[1]
    assert torch.equal(gained["mask"], plain["mask"])
    before, after = plain["image"].numpy()[0], gained["image"].numpy()[0]
    unclipped = (before > 0.01) & (after < 1)
    ratio = np.where(unclipped, after / np.maximum(before, 1e-6), np.nan)
    row_gain = np.nanmedian(ratio, axis=1)
    assert np.all(np.nanmax(np.abs(ratio - row_gain[:, None]), axis=1) < 0.02)  # one gain a row
    assert np.all(np.abs(20 * np.log10(row_gain)) <= 6.0 + 0.1)
    assert np.nanmax(np.abs(np.diff(20 * np.log10(row_gain)))) < 0.5  # smooth across rows
    assert np.nanstd(20 * np.log10(row_gain)) > 0.3  # not flat
    curve = np.random.default_rng(0)
    mirrored = augment.spectral_gain(np.full((9, 4), 0.5, np.float32), curve, 6.0, mirrored=True)
    np.testing.assert_allclose(mirrored, mirrored[::-1])


def test_training_refuses_time_flips_it_cannot_apply(capsys):
    from utils.train.args import parse_args

    common = ["--device", "cpu", "-model_type", "vit_tiny"]
    flips = parse_args(
        [*common, "--train_parts", "image_encoder,mask_decoder", "--time_flip_prob", "0.5"]
    )
    assert flips.time_flip_prob == 0.5
    for argv, problem in (
        (["--time_flip_prob", "0.5"], "need the image encoder trained"),  # cached embeddings
        (["--spectral_gain_db", "6"], "need the image encoder trained"),
        (["--time_flip_prob", "1.5"], "within [0, 1]"),
        (["--spectral_gain_db", "-1"], ">= 0"),
    ):
        with pytest.raises(SystemExit):
            parse_args([*common, *argv])
        assert problem in capsys.readouterr().err


def test_half_spectrum_items_keep_the_rows_of_bins_0_to_512(split):
    dataset = BSDSegmentation(split, 256, half_spectrum=True, tile_width=128, prompt="full")
    full = read_gray_png(split / IMAGES_DIR / "a.png")
    expected = preprocess_image(full[511:, 128:256], 256)
    np.testing.assert_array_equal(dataset[1]["image"].numpy(), expected)


def test_area_mask_resize_keeps_each_pixels_foreground_fraction(split):
    mask = np.zeros((1024, 1024), dtype=np.uint8)
    mask[100:102, :] = 255  # a 2-row line: a quarter of each 8-row input pixel at 128
    mask[512:, 512:] = 255
    soft = preprocess_mask(mask, 128, resize="area")
    assert soft.dtype == np.float32 and 0.0 <= soft.min() and soft.max() <= 1.0
    np.testing.assert_allclose(soft[12], 0.25)  # rows 96..103
    assert soft[64:, 64:].min() == 1.0 and soft[20:60].max() == 0.0
    assert soft.sum() * 64 == pytest.approx((mask > 0).sum())  # area preserved
    nearest = preprocess_mask(mask, 128)
    assert nearest.dtype == bool and not nearest[12].any()  # the thin line is lost
    with pytest.raises(ValueError, match="unknown mask resize 'cubic'"):
        preprocess_mask(mask, 128, resize="cubic")
    dataset = BSDSegmentation(split, 256, prompt="gt_box", mask_resize="area")
    item = dataset[0]
    values = torch.unique(item["mask"])
    assert item["mask"].dtype == torch.float32 and ((values > 0) & (values < 1)).any()
    # The box covers every pixel with some foreground.
    rows, cols = torch.nonzero(item["mask"][0] > 0, as_tuple=True)
    x0, y0, x1, y1 = item["box"].tolist()
    assert x0 <= cols.min() and y0 <= rows.min() and x1 >= cols.max() and y1 >= rows.max()
    with pytest.raises(ValueError, match="unknown mask resize"):
        BSDSegmentation(split, 256, mask_resize="bilinear")
