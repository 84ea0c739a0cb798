"""bench.bench_gpu runs its configurations (checked on the CPU with the small model)."""

from __future__ import annotations

import pytest
import torch

from bench.bench_gpu import DECODER_ONLY, ENCODER_AND_DECODER, main


@pytest.mark.parametrize("amp", ["none", "bf16"])
def test_gpu_bench_times_every_configuration(amp, capsys):
    figures = main(["--device", "cpu", "--model_type", "vit_tiny", "--amp", amp,
                    "--batch_sizes", "1", "2", "--steps", "1", "--repeats", "2",
                    "--encoder_batch", "2", "--inference_seconds", "3"])  # fmt: skip
    configs = [(row["parts"], row["batch"]) for row in figures["training"]]
    assert configs == [(DECODER_ONLY, 1), (DECODER_ONLY, 2),
                       (ENCODER_AND_DECODER, 1), (ENCODER_AND_DECODER, 2)]  # fmt: skip
    decoder_only, both = figures["training"][0], figures["training"][2]
    assert both["trained_parameters"] > decoder_only["trained_parameters"] > 0
    for row in figures["training"]:
        assert len(row["step_s"]) == 2 and all(s > 0 for s in row["step_s"])
        assert row["peak_mib"] > 0
    assert len(figures["encoder_images_per_s"]) == 2
    assert all(rate > 0 for rate in figures["encoder_images_per_s"])
    printed = capsys.readouterr().out
    assert "decoder only, cached, batch 2" in printed and "encoder + decoder, batch 1" in printed
    assert f"amp {amp}" in printed and "images/s" in printed
    for key in ("inference_audio_per_s", "inference_audio_per_s_in_turn"):
        assert len(figures[key]) == 2 and all(rate > 0 for rate in figures[key])
    assert "model on a background thread" in printed and "model in turn" in printed


def test_gpu_bench_says_when_there_is_no_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is visible: the bench would run on it")
    with pytest.raises(SystemExit) as exit_info:
        main(["--device", "cuda"])
    assert exit_info.value.code == 2
    assert "no CUDA device is visible" in capsys.readouterr().err


def test_gpu_bench_times_whole_epochs_of_the_engine(capsys):
    figures = main(["--device", "cpu", "--model_type", "vit_tiny", "--amp", "none",
                    "--batch_sizes", "2", "--steps", "2", "--repeats", "1",
                    "--encoder_batch", "1", "--engine", "--inference_seconds", "2"])  # fmt: skip
    engine = figures["engine"]
    assert [(row["parts"], row["tf32"]) for row in engine] == [
        (DECODER_ONLY, False), (DECODER_ONLY, True),
        (ENCODER_AND_DECODER, False), (ENCODER_AND_DECODER, True),
    ]  # fmt: skip
    assert all(len(row["step_s"]) == 1 and row["step_s"][0] > 0 for row in engine)
    assert "train_one_epoch, decoder only, batch 2, TF32 on" in capsys.readouterr().out
