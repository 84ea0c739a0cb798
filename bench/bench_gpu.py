"""Benchmark for a GPU: training step time and peak memory, decoder-only on cached
embeddings and encoder + decoder, at several batch sizes; encoder images per second;
inference throughput on a long recording, in seconds of audio per second.

    python -m bench.bench_gpu                     # on a CUDA machine: vit_b, bf16, batch 2 and 8
    python -m bench.bench_gpu --device cpu --model_type vit_tiny --amp none \\
        --batch_sizes 1 2 --steps 2 --repeats 1  # a check that runs anywhere

Each step is the training step of ``utils.train.engine`` (``model_logits``, Dice + BCE,
backward, AdamW) on random inputs of the model's input size with a whole-image box:
the speed depends on neither the pixels nor the weights (random here, as
``bench_decoder_training``). The decoder-only path is given its embeddings already on
the device, as they come out of the cache; reading them from disk is timed by
``bench_decoder_training``. Every timed block ends with a device synchronisation.
Peak memory is ``torch.cuda.max_memory_allocated`` for each configuration on a GPU,
the process's peak resident memory on the CPU (which only grows).

Inference runs ``budsam_infer.py``'s streaming path (:func:`denoise_recording`: reading,
STFT, the model on 1,024-frame half-spectrum tiles as the quick-start preset, rendering,
writing) on ``--inference_seconds`` of 48 kHz noise, ``--encoder_batch`` tiles per model
call; every tile is run (no quiet-tile skipping), so the figure does not depend on
the content. It is timed twice: with the model on a background thread while reading,
the STFT, rendering and writing go on (the default on a GPU), and in turn with them.

``--engine`` also times whole epochs as training runs them: ``train_one_epoch`` (one
host sync per optimizer step) over a DataLoader of CPU items in pinned memory, copied
without blocking, the decoder-only items carrying their embeddings as the cache's
loader workers deliver them; with ``--amp none`` once with TF32 off and once on.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from bench.bench_decoder_training import make_model
from bench.timing import machine, spread, time_repeats
from utils.common.amp import autocast
from utils.common.distributed import DistContext
from utils.common.memory import peak_resident_mb
from utils.data.dataset import collate_skipping_none
from utils.data.inputs import RECORDING, LoadOptions, Source
from utils.inference.segmenter import RECORDING_RENDERING, ModelSettings, Segmenter
from utils.inference.streaming import denoise_recording
from utils.model.budsam import BudSAM
from utils.model.sam import input_size
from utils.train.checkpointer import TrainState
from utils.train.engine import Trainer, model_logits, train_one_epoch
from utils.train.losses import DiceBCELoss

DECODER_ONLY = "mask_decoder"
ENCODER_AND_DECODER = "image_encoder,mask_decoder"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_type", default="vit_b")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--amp", choices=("bf16", "fp16", "none"), default="bf16")
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--encoder_batch", type=int, default=8)
    parser.add_argument("--engine", action="store_true", help="also time train_one_epoch")
    parser.add_argument("--inference_seconds", type=float, default=300.0,
                        help="seconds of the recording inference is timed on")  # fmt: skip
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device is visible here (--device cpu runs "
                     "a check on the CPU)")  # fmt: skip
    return args


def random_batch(model: BudSAM, batch_size: int, device: torch.device) -> dict:
    """Images in [0, 1], whole-image boxes and half-empty masks at the model's input size."""
    size = model.img_size
    masks = torch.zeros(batch_size, 1, size, size)
    masks[..., size // 2 :, :] = 1.0
    return {
        "image": torch.rand(batch_size, 3, size, size, device=device),
        "box": torch.tensor([[0.0, 0.0, size, size]] * batch_size),
        "mask": masks.to(device),
        "index": torch.arange(batch_size),
    }


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> float:
    """MiB: the device's peak allocation since the last reset, or the process's peak RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_resident_mb()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(args: argparse.Namespace, parts: str, batch_size: int, device) -> dict:
    """Seconds per training step (min / median / max over repeats) and peak memory."""
    model = make_model(args.model_type, parts).to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    loss_fn = DiceBCELoss()
    batch = random_batch(model, batch_size, device)
    embedder = None  # encoder + decoder: the images go through the encoder every step
    if parts == DECODER_ONLY:
        with torch.no_grad(), autocast(device, args.amp):
            held = model.encode(batch["image"]).float()
        embedder = lambda indices, device, amp: held  # noqa: E731 - what the cache returns

    def steps() -> None:
        for _ in range(args.steps):
            logits = model_logits(model, batch, device, args.amp, embedder)
            loss = loss_fn(logits.float(), batch["mask"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        synchronize(device)

    reset_peak_memory(device)
    seconds = time_repeats(steps, args.repeats, warmup=1)
    per_step = [s / args.steps for s in seconds]
    return {
        "parts": parts,
        "batch": batch_size,
        "trained_parameters": sum(p.numel() for p in trained),
        "step_s": per_step,
        "peak_mib": peak_memory(device),
    }


def time_engine_epoch(
    args: argparse.Namespace, parts: str, batch_size: int, device, tf32: bool
) -> dict:
    """Seconds per optimizer step of ``train_one_epoch`` over ``--steps`` batches of CPU
    items (pinned on a GPU), min / median / max over repeats."""
    model = make_model(args.model_type, parts).to(device)
    trained = [p for p in model.parameters() if p.requires_grad]
    batch = {k: v.cpu() for k, v in random_batch(model, 1, device).items()}
    item = {"image": batch["image"][0], "box": batch["box"][0], "mask": batch["mask"][0]}
    embedder = None
    if parts == DECODER_ONLY:
        with torch.no_grad(), autocast(device, args.amp):
            item["embedding"] = model.encode(batch["image"].to(device)).float()[0].cpu()
        del item["image"]
        embedder = lambda indices, device, amp: None  # noqa: E731 - every batch carries them
    items = [{**item, "index": i} for i in range(batch_size * args.steps)]
    loader = DataLoader(items, batch_size=batch_size, collate_fn=collate_skipping_none,
                        pin_memory=device.type == "cuda")  # fmt: skip
    ctx = DistContext(0, 1, 0, device)
    optimizer = torch.optim.AdamW(trained, lr=1e-5)
    scaler = torch.amp.GradScaler(device.type, enabled=args.amp == "fp16" and device.type == "cuda")
    trainer = Trainer(model, optimizer, scaler, ctx, amp=args.amp, embedder=embedder,
                      log_interval=10**9)  # fmt: skip
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32

    def epoch() -> None:
        train_one_epoch(trainer, loader, TrainState())
        synchronize(device)

    seconds = time_repeats(epoch, args.repeats, warmup=1)
    return {"parts": parts, "batch": batch_size, "tf32": tf32,
            "step_s": [s / args.steps for s in seconds]}  # fmt: skip


@torch.no_grad()
def encoder_images_per_second(args: argparse.Namespace, device: torch.device) -> list[float]:
    """Images per second through the image encoder alone, ``--encoder_batch`` at a time."""
    model = make_model(args.model_type, DECODER_ONLY).eval().to(device)
    images = random_batch(model, args.encoder_batch, device)["image"]

    def encode() -> None:
        for _ in range(args.steps):
            with autocast(device, args.amp):
                model.encode(images)
        synchronize(device)

    seconds = time_repeats(encode, args.repeats, warmup=1)
    return [args.steps * args.encoder_batch / s for s in seconds]


@torch.no_grad()
def inference_audio_per_second(
    args: argparse.Namespace, device: torch.device, background: bool
) -> list[float]:
    """Seconds of audio per second through the streaming inference path, per repeat, with
    the model on a ``background`` thread or in turn with the rest."""
    sr, tile_width = 48000, 1024
    model = make_model(args.model_type, DECODER_ONLY).eval().to(device)
    settings = ModelSettings(args.model_type, tile_width=tile_width, half_spectrum=True,
                             sample_rate=sr)  # fmt: skip
    segmenter = Segmenter(model, settings, device=device, amp=args.amp, overlap=0.25,
                          batch_size=args.encoder_batch, rendering=RECORDING_RENDERING,
                          background_model=background)  # fmt: skip
    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noise.wav"
        noise = np.random.default_rng(0).standard_normal(int(args.inference_seconds * sr))
        sf.write(path, 0.05 * noise, sr, subtype="PCM_16")
        for repeat in range(args.repeats + 1):  # the first is a warm-up
            out = Path(tmp) / f"out{repeat}"
            (out / "denoised").mkdir(parents=True)
            start = time.perf_counter()
            denoise_recording(Source("noise", RECORDING, path), segmenter, out,
                              LoadOptions(sr, True), chunk_seconds=10.0,
                              png_max_seconds=0.0)  # fmt: skip
            synchronize(device)
            if repeat:
                rates.append(args.inference_seconds / (time.perf_counter() - start))
    return rates


def main(argv: list[str] | None = None) -> dict:
    """Run every configuration, print a table and return the figures."""
    args = parse_args(argv)
    device = torch.device(args.device)
    print(f"machine: {machine()}; device {device}; {args.model_type} "
          f"({input_size(args.model_type)} px input), amp {args.amp}")  # fmt: skip
    rows = [
        time_training(args, parts, batch_size, device)
        for parts in (DECODER_ONLY, ENCODER_AND_DECODER)
        for batch_size in args.batch_sizes
    ]
    print(f"{args.steps} steps per repeat, {args.repeats} repeats; min / median / max")
    for row in rows:
        label = "decoder only, cached" if row["parts"] == DECODER_ONLY else "encoder + decoder"
        print(f"{label}, batch {row['batch']}: {spread(row['step_s'], 4)} s per step, "
              f"{row['batch'] / statistics.median(row['step_s']):.2f} samples/s (median), "
              f"peak memory {row['peak_mib']:.0f} MiB")  # fmt: skip
    encoder = encoder_images_per_second(args, device)
    print(f"image encoder, batch {args.encoder_batch}: {spread(encoder, 2)} images/s")
    inference = {}
    for background in (True, False):
        inference[background] = inference_audio_per_second(args, device, background)
        model_runs = "on a background thread" if background else "in turn with the rest"
        print(f"inference (streamed recording, batch {args.encoder_batch}, model {model_runs}): "
              f"{spread(inference[background], 1)} s of audio per s")  # fmt: skip
    figures = {"training": rows, "encoder_images_per_s": encoder,
               "inference_audio_per_s": inference[True],
               "inference_audio_per_s_in_turn": inference[False]}  # fmt: skip
    if args.engine:
        tf32_settings = (False, True) if args.amp == "none" else (False,)
        figures["engine"] = [
            time_engine_epoch(args, parts, batch_size, device, tf32)
            for parts in (DECODER_ONLY, ENCODER_AND_DECODER)
            for batch_size in args.batch_sizes
            for tf32 in tf32_settings
        ]
        for row in figures["engine"]:
            label = "decoder only" if row["parts"] == DECODER_ONLY else "encoder + decoder"
            tf32 = "on" if row["tf32"] else "off"
            print(f"train_one_epoch, {label}, batch {row['batch']}, TF32 {tf32}: "
                  f"{spread(row['step_s'], 4)} s per step")  # fmt: skip
    return figures


if __name__ == "__main__":
    main()
