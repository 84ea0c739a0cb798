"""Bad input to budsam_infer.py and budsam_eval.py: a one-line error naming the file and
the problem, or a counted skip (or a warning) while the run goes on; never a traceback,
and nothing already written is touched.

The bad split and the bad recordings folder are each run once per script (module
fixtures); the tests then check one case each against those runs.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import soundfile as sf
import torch

import budsam_eval
import budsam_infer
from utils.audio import bsd, conventions
from utils.audio import io as audio_io
from utils.common.checkpoint_io import save_checkpoint
from utils.data.image_io import read_gray_png, read_mask_png, write_png
from utils.data.inputs import discover, load_views
from utils.inference.segmenter import load_model
from utils.model.sam import build_sam
from utils.scoring import reports

SR = 8000
N_SAMPLES = 4000  # 61 STFT frames: one model tile per view
SCRIPTS = {"infer": budsam_infer.main, "eval": budsam_eval.main}


def _signal(seed: int, n_samples: int = N_SAMPLES, channels: int = 1) -> np.ndarray:
    """A noisy tone, ``(n_samples,)`` or ``(n_samples, channels)`` as soundfile writes it."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_samples) / SR
    y = 0.3 * np.sin(2 * np.pi * 1500 * t)[:, None] + 0.05 * rng.standard_normal((n_samples, 4))
    return y[:, 0] if channels == 1 else y[:, :channels]


def _cli(script: str, *argv: str) -> int:
    """Run a script's ``main`` in-process on the CPU; argparse errors return their code."""
    try:
        return SCRIPTS[script]([*argv, "--device", "cpu", "--threads", "1"])
    except SystemExit as exit_:
        return exit_.code


def _read_csv(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


def _one_line_error(capsys) -> str:
    """The run's stderr, checked to be one error line (argparse's usage line aside)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------- a bad BSD split

# Images that cannot be used: written by a function of (image path, good PNG bytes), and
# the problem their skip reason must name.
BAD_IMAGES = {
    "truncated": (lambda path, png: path.write_bytes(png[: len(png) // 2]), "truncated PNG"),
    "empty": (lambda path, png: path.write_bytes(b""), "empty file (0 bytes)"),
    "text": (lambda path, png: path.write_text("not an image\n"), "not a PNG file"),
    "rgb": (
        lambda path, png: cv2.imwrite(str(path), np.dstack([_image(1), _image(2), _image(3)])),
        "found colour channels that differ",
    ),
    "deep": (
        lambda path, png: cv2.imwrite(str(path), _image(4).astype(np.uint16) * 257),
        "expected an 8-bit image, found a 16-bit one",
    ),
}
# Raw recordings that do not give the image its audio: (writer of the path, problem named).
BAD_RAW = {
    "raw_garbage": (lambda path: path.write_bytes(b"RIFF\x00\x00WAVEnonsense"), "cannot decode"),
    "raw_empty": (lambda path: sf.write(path, np.zeros(0), SR), "holds no samples"),
    "raw_nan": (
        lambda path: sf.write(path, np.where(_signal(5) > 0.3, np.nan, _signal(5)), SR, "FLOAT"),
        "NaN or infinite",
    ),
    "raw_inf": (
        lambda path: sf.write(path, np.where(_signal(6) > 0.3, np.inf, _signal(6)), SR, "FLOAT"),
        "NaN or infinite",
    ),
    "raw_short": (lambda path: sf.write(path, _signal(7, 100), SR), "do not match the 61 frames"),
    "raw_long": (
        lambda path: sf.write(path, _signal(8, N_SAMPLES + 20_000), SR),
        "do not match the 61 frames",
    ),
}


def _image(seed: int) -> np.ndarray:
    return bsd.spectrogram_to_image(bsd.stft(_signal(seed)))


def _add_view(split: Path, name: str, seed: int, mask: np.ndarray | None = None) -> np.ndarray:
    """A good image, its raw recording and (unless ``mask`` is None) its mask."""
    y = _signal(seed)
    image = bsd.spectrogram_to_image(bsd.stft(y))
    write_png(split / "Images" / f"{name}.png", image)
    sf.write(split / "Raw_audios" / f"{name}.wav", y, SR, subtype="PCM_16")
    if mask is not None:
        cv2.imwrite(str(split / "Masks" / f"{name}.png"), mask)
    return image


@pytest.fixture(scope="module")
def bad_split(tmp_path_factory) -> Path:
    """A BSD split with one good view and one of every bad case."""
    split = tmp_path_factory.mktemp("bad_split") / "Test"
    for folder in ("Images", "Masks", "Raw_audios"):
        (split / folder).mkdir(parents=True)
    shape = (conventions.N_FFT, conventions.num_frames(N_SAMPLES))
    blob = np.zeros(shape, np.uint8)
    blob[400:620, 10:40] = 255
    good = _add_view(split, "good", 0, blob)
    good_png = (split / "Images" / "good.png").read_bytes()
    for name, (write, _) in BAD_IMAGES.items():
        write(split / "Images" / f"{name}.png", good_png)
        cv2.imwrite(str(split / "Masks" / f"{name}.png"), blob)
    for seed, (name, (write, _)) in enumerate(BAD_IMAGES.items(), start=40):
        _add_view(split, f"mask_{name}", seed, blob)
        write(split / "Masks" / f"mask_{name}.png", good_png)  # a good image, a bad mask
    _add_view(split, "wrong_size_mask", 9, blob[:, :30])
    _add_view(split, "unmasked", 10)
    cv2.imwrite(str(split / "Masks" / "orphan.png"), blob)
    odd = blob.copy()
    odd[700:710, :] = 1
    odd[720:730, :] = 128
    _add_view(split, "odd_mask", 11, odd)
    _add_view(split, "empty_mask", 12, np.zeros(shape, np.uint8))
    _add_view(split, "full_mask", 13, np.full(shape, 255, np.uint8))
    for seed, (name, (write, _)) in enumerate(BAD_RAW.items(), start=20):
        _add_view(split, name, seed, blob)
        write(split / "Raw_audios" / f"{name}.wav")
    _add_view(split, "raw_silent", 30, blob)
    sf.write(split / "Raw_audios" / "raw_silent.wav", np.zeros(N_SAMPLES), SR)
    assert good.shape == shape
    return split


@pytest.fixture(scope="module")
def split_runs(bad_split, tiny_checkpoint, tmp_path_factory) -> dict[str, dict]:
    """Each script run once on the bad split: its return code, summary and rows."""
    runs = {}
    for script, extra in (("infer", ()), ("eval", ("--methods", "budsam,energy,identity,oracle"))):
        out = tmp_path_factory.mktemp(f"{script}_split")
        code = _cli(script, "-i", str(bad_split), "-o", str(out),
                    "-checkpoint", str(tiny_checkpoint), "--overwrite", *extra)  # fmt: skip
        rows = _read_csv(out / ("metrics.csv" if script == "infer" else "per_view.csv"))
        summary = json.loads((out / "summary.json").read_text())
        runs[script] = {"code": code, "out": out, "summary": summary, "rows": rows}
    return runs


@pytest.mark.parametrize("case", sorted(BAD_IMAGES))
def test_an_unusable_png_names_its_problem(bad_split, case):
    with pytest.raises(ValueError) as err:
        read_gray_png(bad_split / "Images" / f"{case}.png")
    message = str(err.value)
    assert message.startswith(f"{bad_split / 'Images' / case}.png: ")
    assert BAD_IMAGES[case][1] in message and "\n" not in message


@pytest.mark.parametrize("script", SCRIPTS)
def test_unusable_images_and_masks_are_skipped_and_counted_and_the_run_goes_on(split_runs, script):
    run = split_runs[script]
    assert run["code"] == 0
    reasons = run["summary"]["skipped_reasons"]
    expected = {f"{case}.png": problem for case, (_, problem) in BAD_IMAGES.items()}
    expected.update({f"mask_{case}.png": problem for case, (_, problem) in BAD_IMAGES.items()})
    expected["wrong_size_mask.png"] = "mask is 30x1024, its image 61x1024"
    assert run["summary"]["skipped"] == len(reasons) == len(expected)
    for name, problem in expected.items():
        assert sum(f"/{name}: " in r and problem in r for r in reasons) == 1, (name, reasons)
    scored = {row["name"] for row in run["rows"]}
    assert not scored & {Path(name).stem for name in expected}
    assert {"good", "unmasked", "odd_mask", "empty_mask", "raw_silent"} <= scored


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_image_without_mask_and_a_mask_without_image_are_reported(split_runs, script):
    run = split_runs[script]
    warnings = run["summary"]["warnings"]
    assert any("1 masks without an image" in w and "orphan.png" in w for w in warnings)
    assert any("no mask for 1 images" in w and "unmasked.png" in w for w in warnings)
    assert not any("orphan" in r for r in run["summary"]["skipped_reasons"])
    unmasked = [row for row in run["rows"] if row["name"] == "unmasked"]
    assert unmasked and all(row["fg_iou"] == "" for row in unmasked)  # no truth to score


def test_a_mask_with_values_other_than_0_and_255_reads_nonzero_as_foreground(bad_split, split_runs):
    source = next(s for s in discover(bad_split).sources if s.name == "odd_mask")
    (view,) = load_views(source)
    gray = read_gray_png(bad_split / "Masks" / "odd_mask.png")
    np.testing.assert_array_equal(view.mask, gray > 0)
    (warning,) = view.warnings
    assert warning.startswith(str(bad_split / "Masks" / "odd_mask.png"))
    assert "values other than 0 and 255 (1220 pixels, e.g. 1, 128)" in warning
    for run in split_runs.values():
        assert warning in run["summary"]["warnings"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_all_empty_and_all_full_masks_are_scored_without_nan(split_runs, script):
    rows = [r for r in split_runs[script]["rows"] if r["name"] in ("empty_mask", "full_mask")]
    assert len(rows) == (2 if script == "infer" else 2 * 5)  # eval: 2 BudSAM, energy, id, oracle
    for row in rows:
        for column in ("fg_iou", "fg_dice", "fg_f1", "paper_iou", "bsd_sdr"):
            assert row[column] != "" and not math.isnan(float(row[column])), (row, column)
    if script == "eval":
        by_method = {(r["method"].split(" ")[0], r["name"]): r for r in rows}
        oracle, identity = (
            by_method[("oracle", "empty_mask")],
            by_method[("identity", "empty_mask")],
        )
        assert float(oracle["fg_iou"]) == 1.0  # both empty: perfect agreement
        assert float(oracle["bsd_sdr"]) == 0.0  # silence out: ||y|| / ||0 - y|| = 1
        assert float(identity["fg_iou"]) == 0.0 and float(identity["paper_iou"]) == 0.0
        full = by_method[("identity", "full_mask")]
        assert float(full["fg_iou"]) == 1.0 and float(full["paper_iou"]) == 0.5  # papers' quirk


@pytest.mark.parametrize("case", sorted(BAD_RAW))
def test_an_unusable_raw_recording_leaves_the_image_segmented_without_audio(
    bad_split, split_runs, case
):
    problem = BAD_RAW[case][1]
    for script, run in split_runs.items():
        warnings = [w for w in run["summary"]["warnings"] if f"{case}.wav" in w]
        assert len(warnings) == 1 and problem in warnings[0], (script, warnings)
        assert warnings[0].endswith(f"{case} is segmented without audio")
        rows = [row for row in run["rows"] if row["name"] == case]
        assert rows and all(row["fg_iou"] != "" and row["bsd_sdr"] == "" for row in rows)
    out = split_runs["infer"]["out"]
    assert (out / "masks" / f"{case}.png").is_file()
    assert not (out / "denoised" / f"{case}.wav").exists()


def test_a_silent_raw_recording_is_denoised_with_a_warning(split_runs):
    for run in split_runs.values():
        (warning,) = [w for w in run["summary"]["warnings"] if "raw_silent.wav" in w]
        assert "silent (all zeros)" in warning
    y, sr = audio_io.load_audio(split_runs["infer"]["out"] / "denoised" / "raw_silent.wav")
    assert (
        sr == SR and len(y) == conventions.num_samples(61) and not y.any()
    )  # what the image shows


def test_recordings_beside_spectrograms_that_no_image_uses_are_reported(tmp_path):
    for name in ("XC1_left", "XC1_right", "XC2"):
        write_png(tmp_path / f"{name}.png", _image(0))
    for name in ("XC1.wav", "XC2.flac", "lonely.wav"):
        sf.write(tmp_path / name, _signal(0), SR)
    found = discover(tmp_path)
    assert found.layout == "spectrogram folder" and len(found.sources) == 3
    assert found.problems == [
        f"{tmp_path}: 1 recordings without a spectrogram of their name are not denoised "
        "(the folder is read as spectrograms): ['lonely.wav']"
    ]


# ----------------------------------------------------------------------------- bad recordings

PCM_AND_FLOAT = ("PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE")
BAD_RECORDINGS = {
    "garbage.wav": (lambda path: path.write_bytes(b"\x00\x01 not audio" * 40), "cannot decode"),
    "empty.wav": (lambda path: sf.write(path, np.zeros(0), SR), "holds no samples"),
    "short.wav": (
        lambda path: sf.write(path, _signal(1, 127), SR),
        "127 samples is shorter than one STFT window (128)",
    ),
    "nan.wav": (
        lambda path: sf.write(path, np.where(_signal(2) > 0, np.nan, 0.1), SR, "FLOAT"),
        "NaN or infinite",
    ),
    "inf.wav": (
        lambda path: sf.write(path, np.where(_signal(3) > 0, -np.inf, 0.1), SR, "FLOAT"),
        "NaN or infinite",
    ),
}


@pytest.fixture(scope="module")
def bad_recordings(tmp_path_factory) -> Path:
    """Recordings of every bit depth and 1, 2 and 4 channels, a silent one, bad ones, and
    two files of the same name."""
    folder = tmp_path_factory.mktemp("recordings")
    for seed, subtype in enumerate(PCM_AND_FLOAT):
        sf.write(folder / f"{subtype.lower()}.wav", _signal(seed), SR, subtype=subtype)
    sf.write(folder / "stereo.wav", _signal(10, channels=2), SR, subtype="PCM_16")
    sf.write(folder / "quad.wav", _signal(11, channels=4), SR, subtype="PCM_24")
    sf.write(folder / "silent.wav", np.zeros(N_SAMPLES), SR)
    sf.write(folder / "twin.flac", _signal(12), SR)
    sf.write(folder / "twin.wav", _signal(13), SR)
    for name, (write, _) in BAD_RECORDINGS.items():
        write(folder / name)
    return folder


@pytest.fixture(scope="module")
def recording_runs(bad_recordings, tiny_checkpoint, tmp_path_factory) -> dict[str, dict]:
    runs = {}
    for script in SCRIPTS:
        out = tmp_path_factory.mktemp(f"{script}_recordings")
        # The data set's binary rendering, so the denoised files can be checked against
        # mask_to_audio of the written masks.
        binary = ("--render", "binary", "--floor_db=-inf", "--margin_hz", "0", "--margin_ms", "0")
        binary = binary if script == "infer" else ()
        code = _cli(script, "-i", str(bad_recordings), "-o", str(out), "--overwrite",
                    "-checkpoint", str(tiny_checkpoint), *binary)  # fmt: skip
        summary = json.loads((out / "summary.json").read_text())
        runs[script] = {"code": code, "out": out, "summary": summary}
    return runs


@pytest.mark.parametrize("script", SCRIPTS)
def test_unusable_recordings_are_skipped_and_counted(recording_runs, script):
    run = recording_runs[script]
    assert run["code"] == 0
    reasons = run["summary"]["skipped_reasons"]
    assert run["summary"]["skipped"] == len(reasons) == len(BAD_RECORDINGS)
    for name, (_, problem) in BAD_RECORDINGS.items():
        assert sum(f"/{name}: " in r and problem in r for r in reasons) == 1, (name, reasons)
    (twin,) = [w for w in run["summary"]["warnings"] if "twin" in w]
    assert twin.endswith("twin.wav: not read, twin.flac has the same name and its outputs "
                         "would be overwritten")  # fmt: skip
    assert any("silent.wav" in w and "silent (all zeros)" in w for w in run["summary"]["warnings"])


@pytest.mark.parametrize("subtype", PCM_AND_FLOAT)
def test_every_pcm_depth_and_float_wav_is_denoised(bad_recordings, recording_runs, subtype):
    name = subtype.lower()
    out = recording_runs["infer"]["out"]
    y, sr = audio_io.load_audio(out / "denoised" / f"{name}.wav")
    mask = read_mask_png(out / "masks" / f"{name}.png")
    assert sr == SR and mask.shape == (conventions.N_FFT, conventions.num_frames(N_SAMPLES))
    raw, _ = audio_io.load_audio(bad_recordings / f"{name}.wav")
    np.testing.assert_allclose(y, bsd.mask_to_audio(raw, mask), atol=1 / 32768)


@pytest.mark.parametrize(
    "name, channels, masks",
    [
        ("pcm_16", 1, ["pcm_16"]),
        ("stereo", 2, ["stereo_left", "stereo_right"]),
        ("quad", 4, ["quad_ch1", "quad_ch2", "quad_ch3", "quad_ch4"]),
    ],
)
def test_each_channel_is_segmented_and_the_denoised_file_keeps_them_all(
    recording_runs, name, channels, masks
):
    out = recording_runs["infer"]["out"]
    y, sr = sf.read(out / "denoised" / f"{name}.wav", always_2d=True)
    assert y.shape == (N_SAMPLES, channels) and sr == SR
    assert sorted(p.stem for p in (out / "masks").glob(f"{name}*.png")) == masks
    eval_rows = _read_csv(recording_runs["eval"]["out"] / "per_view.csv")
    assert set(masks) <= {row["name"] for row in eval_rows}


def test_mp3_data_behind_a_wav_name_decodes(bsd_sample, tiny_checkpoint, tmp_path):
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    (recordings / "XC41136.wav").symlink_to(bsd_sample / "XC41136.wav")  # not copied
    assert audio_io.sniff_audio_format(recordings / "XC41136.wav") == "MP3"
    out = tmp_path / "out"
    assert _cli("infer", "-i", str(recordings), "-o", str(out),
                "-checkpoint", str(tiny_checkpoint)) == 0  # fmt: skip
    y, sr = sf.read(out / "denoised" / "XC41136.wav")
    assert sr == 48000 and len(y) == 195_840  # libsndfile's decode length
    assert read_gray_png(out / "masks" / "XC41136.png").shape == (
        1024,
        conventions.num_frames(195_840),
    )
    assert _cli("eval", "-i", str(recordings), "-o", str(tmp_path / "eval"),
                "--methods", "identity") == 0  # fmt: skip
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["skipped"] == 0


# ----------------------------------------------------------------------------- checkpoints


def _truncated(path: Path, source: Path) -> None:
    path.write_bytes(source.read_bytes()[:5000])


CHECKPOINT_ERRORS = {
    "missing": (lambda path, source: None, (), "checkpoint not found"),
    "truncated": (_truncated, (), "cannot read checkpoint"),
    "text": (lambda path, source: path.write_text("hello\n"), (), "cannot read checkpoint"),
    "recorded_type_differs": (
        lambda path, source: shutil.copy(source, path),
        ("-model_type", "vit_tiny_p16x8"),
        "is a vit_tiny model, but -model_type vit_tiny_p16x8 was given",
    ),
    "official_of_another_type": (
        lambda path, source: torch.save(build_sam("vit_tiny").state_dict(), path),
        ("-model_type", "vit_tiny_p16x8"),
        "not a vit_tiny_p16x8 SAM checkpoint",
    ),
}


@pytest.mark.parametrize("case", sorted(CHECKPOINT_ERRORS))
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_bad_checkpoint_is_one_error_line_and_touches_nothing(
    script, case, tiny_checkpoint, bad_recordings, tmp_path, capsys
):
    write, extra, problem = CHECKPOINT_ERRORS[case]
    checkpoint = tmp_path / "model.pth"
    write(checkpoint, tiny_checkpoint)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier work")
    assert _cli(script, "-i", str(bad_recordings / "pcm_16.wav"), "-o", str(out),
                "-checkpoint", str(checkpoint), *extra) == 2  # fmt: skip
    line = _one_line_error(capsys)
    assert line.startswith(f"error: {checkpoint}: ") and problem in line
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier work"


@pytest.mark.parametrize("layout", ["budsam_type_given", "budsam_ddp", "official_ddp"])
def test_checkpoint_layouts_all_load(tiny_checkpoint, tmp_path, layout):
    """BudSAM where an official file is expected (-model_type given), and DDP ``module.``
    prefixes in either layout (official files with -model_type: tests/test_infer.py)."""
    state = build_sam("vit_tiny", checkpoint=tiny_checkpoint).state_dict()
    ddp = {f"module.{key}": value for key, value in state.items()}
    args = {"model_type": "vit_tiny", "tile_width": 256, "half_spectrum": True}
    path = tmp_path / "model.pth"
    if layout == "official_ddp":
        torch.save(ddp, path)
    else:
        save_checkpoint({"model": ddp if layout == "budsam_ddp" else state, "args": args}, path)
    model, settings = load_model(str(path), None if layout == "budsam_ddp" else "vit_tiny")
    loaded = model.state_dict()  # BudSAM's keys are the Sam's
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[key], value) for key, value in state.items())
    assert settings.model_type == "vit_tiny"
    assert settings.half_spectrum == (layout != "official_ddp")


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "case, problem",
    [
        ("empty_folder", "found no BSD split (Images/), spectrogram PNGs or recordings"),
        ("empty_images", "Images: holds no PNG images"),
    ],
)
def test_an_input_with_nothing_to_denoise_is_one_error_line(
    script, case, problem, tiny_checkpoint, tmp_path, capsys
):
    folder = tmp_path / "input"
    (folder / "Images" if case == "empty_images" else folder).mkdir(parents=True)
    (folder / "notes.txt").write_text("no audio here")
    out = tmp_path / "out"
    assert _cli(script, "-i", str(folder), "-o", str(out),
                "-checkpoint", str(tiny_checkpoint)) == 2  # fmt: skip
    line = _one_line_error(capsys)
    assert line.startswith(f"error: {folder}") and problem in line
    assert not out.exists()


@pytest.mark.parametrize(
    "script, argv, problem",
    [
        ("infer", ("--batch_size", "0"), "argument --batch_size: must be at least 1, got 0"),
        ("eval", ("--batch_size", "0"), "argument --batch_size: must be at least 1, got 0"),
        ("eval", ("--chunk", "0"), "argument --chunk: must be at least 1, got 0"),
        ("infer", ("--tile_width", "-5"), "argument --tile_width: must be at least 1, got -5"),
        ("infer", ("-model_type", "vit_x"), "-model_type/--model_type: invalid choice: 'vit_x'"),
        ("eval", ("-model_type", "vit_x"), "-model_type/--model_type: invalid choice: 'vit_x'"),
    ],
)
def test_a_bad_argument_is_refused_before_any_work(
    script, argv, problem, tiny_checkpoint, bad_recordings, tmp_path, capsys
):
    out = tmp_path / "out"
    assert _cli(script, "-i", str(bad_recordings), "-o", str(out),
                "-checkpoint", str(tiny_checkpoint), *argv) == 2  # fmt: skip
    assert problem in _one_line_error(capsys)
    assert not out.exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_an_output_folder_that_is_not_writable_is_refused(
    script, bad_recordings, tiny_checkpoint, tmp_path, capsys, monkeypatch
):
    """Checked up front with ``os.access`` (faked here, so the test also runs as root)."""
    out = tmp_path / "out"
    locked = out / "masks" if script == "infer" else out
    real_access = os.access
    monkeypatch.setattr(
        reports.os, "access", lambda path, mode: Path(path) != locked and real_access(path, mode)
    )
    assert _cli(script, "-i", str(bad_recordings / "pcm_16.wav"), "-o", str(out),
                "-checkpoint", str(tiny_checkpoint)) == 2  # fmt: skip
    assert _one_line_error(capsys) == f"error: {locked}: the output folder is not writable"
    assert not any(p.is_file() for p in out.rglob("*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a 0o500 folder all the same")
@pytest.mark.parametrize("script", SCRIPTS)
def test_a_read_only_output_folder_is_refused(
    script, bad_recordings, tiny_checkpoint, tmp_path, capsys
):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert _cli(script, "-i", str(bad_recordings / "pcm_16.wav"), "-o", str(out),
                    "-checkpoint", str(tiny_checkpoint)) == 2  # fmt: skip
    finally:
        out.chmod(0o700)
    line = _one_line_error(capsys)
    assert line.startswith(f"error: {out}") and ("not writable" in line or "cannot create" in line)
    assert not any(out.iterdir())
