"""budsam_eval.py and the scoring it shares with budsam_infer.py."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import budsam_eval
from utils.audio import io as audio_io
from utils.data.inputs import View, discover, load_views
from utils.evaluation import comparison
from utils.scoring import metrics, reports


def _run(*argv: str) -> int:
    return budsam_eval.main([*argv, "--device", "cpu", "--threads", "1"])


def _table(out: Path) -> dict[str, dict]:
    with open(out / "comparison.csv") as handle:
        return {row["method"]: row for row in csv.DictReader(handle)}


def test_comparison_table_covers_every_method_and_writes_csv_markdown_and_chart(
    tiny_test_split, tiny_checkpoint, tmp_path, capsys
):
    out = tmp_path / "eval"
    assert _run("-i", str(tiny_test_split.parent), "-checkpoint", str(tiny_checkpoint),
                "-o", str(out)) == 0  # fmt: skip
    table = _table(out)
    labels = list(table)
    assert len(labels) == 7
    assert [label for label in labels if label.startswith("BudSAM")] == [
        f"BudSAM {tiny_checkpoint.parent.name}/budsam_model_best, ground-truth box "
        "(paper protocol)",
        f"BudSAM {tiny_checkpoint.parent.name}/budsam_model_best, full box (no ground truth)",
    ]
    oracle, identity = table["oracle (ground-truth mask)"], table["identity (no denoising)"]
    assert float(oracle["fg_iou"]) == 1.0 and float(oracle["paper_iou"]) == 1.0
    assert identity["bsd_sdr"] == "inf"  # returning the input unchanged: BSD-SDR's blind spot
    assert float(identity["si_sdr_imp"]) == pytest.approx(0.0, abs=1e-9)
    assert float(oracle["si_sdr"]) > float(identity["si_sdr"])
    for label in ("noisereduce (stationary)", "noisereduce (non-stationary)", "energy threshold"):
        assert 0.0 <= float(table[label]["fg_iou"]) <= 1.0
        assert float(table[label]["audio_per_compute_second"]) > 0
    markdown = (out / "comparison.md").read_text()
    assert markdown.count("\n") == 2 + 7 and "| oracle (ground-truth mask) | 1.000 |" in markdown
    assert (out / "comparison.png").stat().st_size > 10_000
    with open(out / "per_view.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 7 * 4
    summary = json.loads((out / "summary.json").read_text())
    assert summary["files"] == 4 and summary["skipped"] == 0
    assert summary["software"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert "| method | fg IoU |" in capsys.readouterr().out


def test_oracle_denoised_audio_equals_the_datasets_denoised_audio(tiny_test_split):
    views = [v for s in discover(tiny_test_split).sources for v in load_views(s)]
    oracle = comparison.MaskMethod("oracle", comparison.oracle_mask)
    for view, (mask, denoised, _) in zip(views, oracle.run(views), strict=True):
        assert mask is view.mask
        reference, _ = audio_io.load_audio(tiny_test_split / "Denoised_audios" / f"{view.name}.wav")
        # Equal to the 16-bit file up to its rounding (the set was made from unrounded audio).
        np.testing.assert_allclose(denoised, reference[: len(denoised)], atol=3 / 32768)
        assert not reference[len(denoised) :].any()


def test_masks_and_audio_from_other_methods_are_scored(tiny_test_split, tmp_path):
    out = tmp_path / "eval"
    assert _run("-i", str(tiny_test_split), "-o", str(out), "--methods", "oracle",
                "--pred_masks", str(tiny_test_split / "Masks"),
                "--pred_audio", str(tiny_test_split / "Denoised_audios")) == 0  # fmt: skip
    table = _table(out)
    from_masks = table[f"masks from {tiny_test_split / 'Masks'}"]
    from_audio = table[f"audio from {tiny_test_split / 'Denoised_audios'}"]
    oracle = table["oracle (ground-truth mask)"]
    assert float(from_masks["fg_iou"]) == 1.0
    assert from_audio["fg_iou"] == ""  # audio alone has no mask to score
    assert float(from_audio["si_sdr"]) == pytest.approx(float(oracle["si_sdr"]), abs=0.05)


def test_a_corrupt_file_is_skipped_and_counted(tiny_test_split, tmp_path, capsys):
    split = tmp_path / "split"
    shutil.copytree(tiny_test_split, split)
    (split / "Images" / "zero.png").write_bytes(b"")
    shutil.copy(split / "Masks" / "syn_test_00001.png", split / "Masks" / "zero.png")
    out = tmp_path / "eval"
    assert _run("-i", str(split), "-o", str(out), "--methods", "energy,oracle") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["skipped"] == 1 and "zero.png" in summary["skipped_reasons"][0]
    assert summary["methods"]["energy threshold"]["n_views"] == 4
    assert "1 files skipped" in capsys.readouterr().out


def test_an_earlier_comparison_is_never_replaced_without_overwrite(
    tiny_test_split, tmp_path, capsys
):
    out = tmp_path / "eval"
    args = ("-i", str(tiny_test_split), "-o", str(out), "--methods", "identity", "--limit", "1")
    assert _run(*args) == 0
    before = (out / "comparison.csv").read_bytes()
    assert _run(*args) == 2
    assert "already holds a comparison" in capsys.readouterr().err
    assert (out / "comparison.csv").read_bytes() == before
    assert _run(*args, "--overwrite") == 0


def test_audio_scores_report_input_output_and_improvement():
    rng = np.random.default_rng(0)
    clean = rng.standard_normal(4000)
    raw = clean + 0.5 * rng.standard_normal(4000)
    scores = reports.audio_scores(raw, clean + 0.1 * (raw - clean), clean)
    assert scores["input_si_sdr"] == pytest.approx(metrics.si_sdr(clean, raw))
    assert scores["si_sdr_imp"] == pytest.approx(scores["si_sdr"] - scores["input_si_sdr"])
    assert scores["si_sdr_imp"] > 10
    assert scores["bsd_sdr"] == pytest.approx(metrics.bsd_sdr(raw, clean + 0.1 * (raw - clean)))
    silent = reports.audio_scores(raw, raw, np.zeros(4000))
    assert set(silent) == {"bsd_sdr"}  # SDR against a silent reference is undefined


def test_pooled_two_class_scores_match_the_batch_metric():
    rng = np.random.default_rng(1)
    truths = [rng.random((8, 10)) > 0.7 for _ in range(6)]
    preds = [t ^ (rng.random(t.shape) > 0.9) for t in truths]
    rows = []
    for pred, truth in zip(preds, truths, strict=True):
        view = View("v", np.zeros(truth.shape, np.uint8), mask=truth)
        rows.append(reports.view_row(view, pred, None))
    pooled = reports.pooled_two_class(rows)
    batches = [(0, 4), (4, 6)]  # metrics.PAPER_GROUP_SIZE = 4
    expected = np.mean(
        [metrics.two_class_scores(np.stack(preds[a:b]), np.stack(truths[a:b]))["iou"]
         for a, b in batches]
    )  # fmt: skip
    assert pooled["iou"] == pytest.approx(expected)
    # An image that could not be scored shifts no other image into another group.
    rows[1] = reports.view_row(View("unreadable", np.zeros((8, 10), np.uint8)), None, None)
    groups = [[0, 2, 3], [4, 5]]
    expected = np.mean(
        [metrics.two_class_scores(np.stack([preds[i] for i in g]),
                                  np.stack([truths[i] for i in g]))["iou"] for g in groups]
    )  # fmt: skip
    assert reports.pooled_two_class(rows)["iou"] == pytest.approx(expected)
    view = View("v", np.zeros((8, 10), np.uint8), mask=truths[1])
    rows[1] = reports.view_row(view, preds[1], None)
    summary = reports.summarize(rows, compute_seconds=2.0)
    assert summary["paper_iou"] == pooled["iou"] and math.isnan(summary["si_sdr"])
    assert summary["fg_iou"] == pytest.approx(np.mean([r["fg_iou"] for r in rows]))


def test_published_sample_through_the_bsd_layout(bsd_sample, tmp_path):
    """The real sample (MP3 behind .wav, decoder offset) laid out as a BSD split: the
    oracle reproduces the published denoised audio and scores IoU 1."""
    split = tmp_path / "Test"
    for folder, source in (
        ("Images", "XC41136.png"),
        ("Masks", "XC41136_mask.png"),
        ("Raw_audios", "XC41136.wav"),
        ("Denoised_audios", "XC41136_denoised.wav"),
    ):
        (split / folder).mkdir(parents=True)
        name = "XC41136" + Path(source).suffix
        (split / folder / name).symlink_to(bsd_sample / source)
    (view,) = load_views(discover(tmp_path).sources[0])
    assert view.reference_kind == "denoised" and len(view.audio) == 194_112
    ((mask, denoised, _),) = comparison.MaskMethod("oracle", comparison.oracle_mask).run([view])
    assert reports.mask_scores(mask, view.mask)["fg_iou"] == 1.0
    snr = metrics.sdr(view.reference, denoised)
    assert snr >= 40.0
