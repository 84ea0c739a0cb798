"""utils.scoring.metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from utils.scoring import metrics

PRED = np.array([[1, 1, 0, 0], [0, 0, 0, 0]], dtype=bool)
TRUTH = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], dtype=bool)
# tp = 1, fp = 1, fn = 1, tn = 5 over the 8 pixels.


def test_confusion_counts_per_image():
    counts = metrics.confusion_counts(np.stack([PRED, TRUTH]), np.stack([TRUTH, TRUTH]))
    np.testing.assert_array_equal(counts["tp"], [1, 2])
    np.testing.assert_array_equal(counts["fp"], [1, 0])
    np.testing.assert_array_equal(counts["fn"], [1, 0])
    np.testing.assert_array_equal(counts["tn"], [5, 6])


def test_foreground_scores_by_hand():
    scores = metrics.foreground_scores(PRED, TRUTH)
    assert scores["iou"][0] == pytest.approx(1 / 3)
    assert scores["dice"][0] == pytest.approx(0.5)
    assert scores["precision"][0] == pytest.approx(0.5)
    assert scores["recall"][0] == pytest.approx(0.5)
    assert scores["f1"][0] == pytest.approx(0.5)


def test_foreground_scores_with_unequal_precision_and_recall():
    pred = np.array([[1, 1, 1, 1, 0]])
    truth = np.array([[1, 0, 0, 0, 0]])  # tp 1, fp 3, fn 0
    scores = metrics.foreground_scores(pred, truth)
    assert scores["precision"][0] == pytest.approx(0.25)
    assert scores["recall"][0] == pytest.approx(1.0)
    assert scores["f1"][0] == pytest.approx(0.4) == scores["dice"][0]
    assert scores["iou"][0] == pytest.approx(0.25)


@pytest.mark.parametrize(
    "pred, truth, expected",
    [
        (np.zeros((2, 2)), np.zeros((2, 2)), 1.0),  # both empty: perfect agreement
        (np.zeros((2, 2)), np.eye(2), 0.0),  # missed everything
        (np.eye(2), np.zeros((2, 2)), 0.0),  # predicted sound where there is none
    ],
)
def test_empty_masks_have_defined_scores(pred, truth, expected):
    scores = metrics.foreground_scores(pred, truth)
    for name in ("iou", "dice", "precision", "recall", "f1"):
        assert scores[name][0] == expected, name


def test_scores_are_vectorised_over_a_batch_and_accept_torch():
    pred = np.stack([PRED, TRUTH, np.zeros_like(PRED)])
    truth = np.stack([TRUTH, TRUTH, np.zeros_like(TRUTH)])
    from_numpy = metrics.foreground_scores(pred, truth)
    from_torch = metrics.foreground_scores(torch.from_numpy(pred), torch.from_numpy(truth))
    np.testing.assert_allclose(from_numpy["iou"], [1 / 3, 1.0, 1.0])
    for name in from_numpy:
        np.testing.assert_allclose(from_numpy[name], from_torch[name])


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        metrics.confusion_counts(np.zeros((2, 3)), np.zeros((3, 2)))


def test_two_class_scores_pool_the_batch_by_hand():
    pred = np.stack([PRED, PRED])
    truth = np.stack([TRUTH, TRUTH])  # tp 2, fp 2, fn 2, tn 10
    scores = metrics.two_class_scores(pred, truth)
    foreground_iou, background_iou = 2 / 6, 10 / 14
    foreground_dice, background_dice = 4 / 8, 20 / 24
    assert scores["iou"] == pytest.approx((foreground_iou + background_iou) / 2)
    assert scores["dice"] == pytest.approx((foreground_dice + background_dice) / 2)
    assert scores["f1"] == scores["dice"]


def test_two_class_scores_keep_the_reference_quirk_for_an_absent_class():
    empty = np.zeros((1, 3, 3), dtype=bool)
    # Background is perfect (IoU 1); foreground is absent from both and scores 0, as
    # the reference's I / (U + 1e-8) does, so the mean is 0.5 rather than 1.
    assert metrics.two_class_scores(empty, empty)["iou"] == pytest.approx(0.5)


def test_bsd_sdr_is_natural_log_ratio_of_norms_against_the_noisy_input():
    raw = np.array([3.0, 4.0])  # ||y|| = 5
    denoised = np.array([3.0, 0.0])  # ||x - y|| = 4
    assert metrics.bsd_sdr(raw, denoised) == pytest.approx(10 * math.log(5 / 4))
    # A shorter output is zero-padded to the raw length: x = [3, 0] again.
    assert metrics.bsd_sdr(raw, np.array([3.0])) == pytest.approx(10 * math.log(5 / 4))
    assert metrics.bsd_sdr(raw, raw) == math.inf  # the identity "wins": never report it alone


def test_bsd_sdr_batch():
    raw = np.array([[3.0, 4.0], [1.0, 0.0]])
    denoised = np.array([[3.0, 0.0], [0.0, 0.0]])
    np.testing.assert_allclose(metrics.bsd_sdr(raw, denoised), [10 * math.log(1.25), 0.0])


def test_sdr_by_hand():
    assert metrics.sdr(np.array([1.0, 0.0]), np.array([1.0, 0.1])) == pytest.approx(20.0)
    assert metrics.sdr(np.array([2.0, 0.0]), np.array([1.0, 0.0])) == pytest.approx(
        10 * math.log10(4 / 1)
    )
    assert metrics.sdr(np.ones(4), np.ones(4)) == math.inf


def test_si_sdr_by_hand_and_scale_invariance():
    s = np.array([1.0, -1.0, 1.0, -1.0])
    error = np.array([1.0, 1.0, -1.0, -1.0])  # zero mean, orthogonal to s
    # alpha = <2s + e, s> / ||s||^2 = 2; target energy 16, residual energy 4.
    assert metrics.si_sdr(s, 2 * s + error) == pytest.approx(10 * math.log10(16 / 4))
    assert metrics.si_sdr(s, 0.1 * s + 0.05 * error) == pytest.approx(10 * math.log10(16 / 4))
    assert metrics.si_sdr(s, 3 * s) == math.inf
    # The mean is removed first: an offset does not count as distortion.
    assert metrics.si_sdr(s, s + 5.0) == math.inf


def test_si_sdr_of_a_silent_or_orthogonal_estimate_is_the_floor_and_of_silence_undefined():
    s = np.array([1.0, -1.0, 1.0, -1.0])
    orthogonal = np.array([1.0, 1.0, -1.0, -1.0])
    scores = metrics.si_sdr(np.stack([s, s, s]), np.stack([np.zeros(4), orthogonal, 0.5 * s]))
    assert scores[0] == scores[1] == metrics.SI_SDR_FLOOR_DB == -80.0
    assert scores[2] == math.inf
    assert math.isnan(metrics.si_sdr(np.zeros(4), s))  # no reference signal: undefined


def test_audio_metrics_vectorised_and_checked():
    s = np.random.default_rng(0).standard_normal((3, 100))
    estimate = s + 0.1
    batch = metrics.sdr(s, estimate)
    assert batch.shape == (3,)
    np.testing.assert_allclose(batch, [metrics.sdr(s[i], estimate[i]) for i in range(3)])
    with pytest.raises(ValueError, match="shape"):
        metrics.si_sdr(np.zeros(4), np.zeros(5))


def test_two_class_scores_pool_images_of_different_sizes_through_counts():
    small_pred, small_truth = PRED[:1, :2], TRUTH[:1, :2]  # tp 1, fp 1
    pooled = metrics.two_class_scores_from_counts(
        {
            k: np.concatenate([a[k], b[k]])
            for (a, b) in [
                (
                    metrics.confusion_counts(PRED, TRUTH),
                    metrics.confusion_counts(small_pred, small_truth),
                )
            ]
            for k in a
        }
    )
    # tp 2, fp 2, fn 1, tn 5: foreground 2/5, background 5/8.
    assert pooled["iou"] == pytest.approx((2 / 5 + 5 / 8) / 2)
    same_size = metrics.two_class_scores(np.stack([PRED, PRED]), np.stack([TRUTH, TRUTH]))
    counts = metrics.confusion_counts(np.stack([PRED, PRED]), np.stack([TRUTH, TRUTH]))
    assert metrics.two_class_scores_from_counts(counts) == same_size
