"""Benchmark: decoder-only training steps with the embedding cache against recomputing
the frozen encoder every step (the reference code's way).

    python -m bench.bench_decoder_training --model_type vit_tiny --steps 20 --batch_size 4
    python -m bench.bench_decoder_training --model_type vit_b --steps 2 --batch_size 2

Both paths run the same training step of ``utils.train.engine`` (forward through
``model_logits``, Dice + BCE, backward, AdamW) on the same batches of a small
synthetic split, one process, side by side in one run. The cached path reads each
embedding from the on-disk cache (float16 files with a checksum), as training
does after its first epoch; filling the cache is not timed. ViT-B/L/H get random
weights here: the speed does not depend on them.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from segment_anything import sam_model_registry

from bench.timing import machine, print_side_by_side, time_repeats
from utils.common.memory import peak_resident_mb
from utils.data.dataset import BSDSegmentation, collate_skipping_none
from utils.data.synthetic import generate_dataset
from utils.model.budsam import BudSAM
from utils.model.sam import TINY_TYPES, build_sam, input_size
from utils.train.embedding_cache import Embedder, EmbeddingCache
from utils.train.engine import model_logits
from utils.train.losses import DiceBCELoss


def make_model(model_type: str, trainable: str = "mask_decoder") -> BudSAM:
    """A randomly initialised BudSAM in training mode with ``trainable`` parts learning."""
    sam = build_sam(model_type) if model_type in TINY_TYPES else sam_model_registry[model_type]()
    return BudSAM(sam, trainable=trainable).train()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model_type", default="vit_tiny")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per path and repeat")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    model = make_model(args.model_type)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    loss_fn = DiceBCELoss()

    with tempfile.TemporaryDirectory(prefix="bench_decoder_") as tmp:
        n_images = args.batch_size * min(args.steps, 4)
        generate_dataset(tmp, {"train": n_images, "valid": 0, "test": 0}, workers=1, progress=False)
        dataset = BSDSegmentation(Path(tmp) / "train", input_size(args.model_type),
                                  prompt="gt_box", keep_in_memory=True)  # fmt: skip
        batches = [
            collate_skipping_none([dataset[i] for i in range(s, s + args.batch_size)])
            for s in range(0, len(dataset), args.batch_size)
        ]
        embedder = Embedder(model, EmbeddingCache(Path(tmp) / "cache", {"bench": 1}), dataset)
        for batch in batches:  # fill the cache (untimed)
            embedder(batch["index"].tolist(), device, "none")

        def steps(use_cache: bool) -> None:
            for step in range(args.steps):
                batch = batches[step % len(batches)]
                logits = model_logits(model, batch, device, "none", embedder if use_cache else None)
                loss = loss_fn(logits, batch["mask"])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        cached, recomputed = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same load
            cached += time_repeats(lambda: steps(True), 1)
            recomputed += time_repeats(lambda: steps(False), 1)

    samples = args.steps * args.batch_size
    cached_rate = [samples / s for s in cached]
    recomputed_rate = [samples / s for s in recomputed]
    print(f"machine: {machine()}, torch threads {torch.get_num_threads()}")
    print(f"{args.model_type}, batch {args.batch_size}, {args.steps} steps per path, "
          f"{args.repeats} repeats")  # fmt: skip
    print_side_by_side(
        "samples/s", ("cached embeddings", cached_rate), ("encoder every step", recomputed_rate)
    )
    print(f"peak memory {peak_resident_mb():.0f} MiB")


if __name__ == "__main__":
    main()
