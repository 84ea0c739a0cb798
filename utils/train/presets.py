"""The training presets: named sets of defaults for budsam_train_multi.py (any flag given
overrides them)."""

from __future__ import annotations

QUICK_START = {
    "tr_path": "data/synthetic",
    "model_type": "vit_tiny_p16x8",
    "device": "cpu",
    "world_size": 2,
    "train_parts": "image_encoder,mask_decoder",
    "num_epochs": 7,
    "batch_size": 4,
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "weight_decay": 1e-4,
    "num_workers": 0,
    "keep_in_memory": True,
    "tile_width": 1024,
    "half_spectrum": True,
    "mask_resize": "area",
    "dice": "batch",
    "ema_decay": 0.99,
    "spectral_gain_db": 6.0,  # +0.8 and +1.6 dB on *_train with two seeds, BirdNET unchanged
    "val_metric": "whole_fg_iou",
    "synthetic": {"train": 240, "valid": 40, "test": 100, "seed": 0},
    "recording_time_flip": True,  # +0.26 dB, +0.007 BirdNET on *_train; twice the model's work
}
PRESETS = {
    "cpu_demo": QUICK_START,
    # The quick start cut for speed on long recordings: a cheaper model on tiles twice as
    # wide (half as many per hour of audio), trained for more epochs in about the same time;
    # its checkpoint says to run it on recordings with tiles that do not overlap and
    # the gated rendering at half its work (chosen on the *_train mixtures, BENCHMARKS.md).
    "cpu_fast": {
        **QUICK_START,
        "model_type": "vit_tiny_fast",
        "tile_width": 2048,
        "num_epochs": 20,
        "spectral_gain_db": 0.0,  # its recipe as measured (not with the augmentation)
        "recording_overlap": 0.0,
        "recording_time_flip": False,
        "recording_render": "gated,floor=-20,margin=200:30,far=-50,alpha=2,gamma=0.5,hops=2",
    },  # fmt: skip
    # The trained baselines at the quick start's budget (about the same minutes on 2 cores,
    # on the same data and recipe): fewer optimizer steps per epoch, as their steps cost more.
    **{
        f"{model_type}_demo": {
            **{key: value for key, value in QUICK_START.items() if key != "train_parts"},
            "model_type": model_type,
            "spectral_gain_db": 0.0,  # their recipe as measured (not with the augmentation)
            **budget,
        }
        for model_type, budget in (
            ("custom_cnn", {"input_size": 256, "num_epochs": 4, "max_steps_per_epoch": 40}),
            ("unet", {"num_epochs": 3, "max_steps_per_epoch": 30}),
            ("deeplabv3", {"num_epochs": 2, "max_steps_per_epoch": 17}),
        )
    },
    # Checks an install in under 2 minutes; budsam_train_multi.py then checks the run.
    "smoke": {
        "tr_path": "data/synthetic_smoke",
        "task_name": "smoke",
        "model_type": "vit_tiny",
        "device": "cpu",
        "world_size": 2,
        "train_parts": "image_encoder,mask_decoder",
        "num_epochs": 1,
        "batch_size": 2,
        "lr": 1e-3,
        "num_workers": 0,
        "keep_in_memory": True,
        "tile_width": 1024,
        "half_spectrum": True,
        "synthetic": {"train": 6, "valid": 2, "test": 2, "seed": 0},
    },
}
