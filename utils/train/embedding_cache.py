"""On-disk cache of image embeddings for training the decoder on a frozen encoder.

When the image encoder is not trained, its output for an image never changes, so
it is computed once and kept under the run's work dir, in a folder keyed by what
determines it: model type, a fingerprint of the encoder's weights, the input size
and the preprocessing. Any change gives another folder (recomputed); a file that
is corrupt or truncated fails its checksum and is recomputed.

Disk use is one float16 embedding per image: ``C x S/16 x S/16 x 2`` bytes, i.e.
2 MiB per image for vit_b/l/h (256 x 64 x 64; 20 GiB for the 10,000 BSD training
images) and 64 KiB for vit_tiny (128 x 16 x 16).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from utils.common import distributed
from utils.common.amp import autocast
from utils.common.files import atomic_path, write_text
from utils.common.progress import Progress
from utils.data.dataset import BSDSegmentation
from utils.model.budsam import BudSAM
from utils.model.factory import encoder_trained

CACHE_VERSION = 2  # 2: images narrower than a tile padded, not stretched


def module_fingerprint(module: nn.Module) -> str:
    """A SHA-1 of a module's parameter and buffer values (names, shapes, bytes)."""
    digest = hashlib.sha1()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class EmbeddingCache:
    """Embeddings stored one file per image under ``root/<key hash>/``."""

    def __init__(self, root: str | Path, key: dict) -> None:
        key = {**key, "version": CACHE_VERSION}
        key_hash = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
        self.folder = Path(root) / key_hash
        self.folder.mkdir(parents=True, exist_ok=True)
        key_file = self.folder / "key.json"
        if not key_file.is_file():
            write_text(key_file, json.dumps(key, indent=2, sort_keys=True))
        self.key = key

    def path(self, name: str) -> Path:
        """The file of item key ``name`` (a file-name-safe key: dots are kept, so
        ``rec.2021`` and ``rec.2022`` are two files)."""
        return self.folder / f"{name}.pt"

    def load(self, name: str) -> torch.Tensor | None:
        """The stored embedding ``(C, h, w)`` float32, or None if missing or damaged."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
            embedding = record["embedding"]
            if zlib.crc32(embedding.view(torch.uint8).numpy().tobytes()) != record["crc32"]:
                return None
        except Exception:  # truncated or garbled file: treat as absent and recompute
            return None
        return embedding.float()

    def save(self, name: str, embedding: torch.Tensor) -> None:
        """Store one embedding ``(C, h, w)`` as float16 with a checksum (atomic rename)."""
        half = embedding.detach().to("cpu", torch.float16).contiguous()
        record = {"embedding": half, "crc32": zlib.crc32(half.view(torch.uint8).numpy().tobytes())}
        with atomic_path(self.path(name)) as tmp:  # ranks may write the same item at once
            torch.save(record, tmp)

    def missing(self, names: list[str]) -> list[str]:
        """Names without a valid stored embedding (each file is read and checked)."""
        return [name for name in names if self.load(name) is None]


class Embedder:
    """Image embeddings for a batch: from the cache, or by running the frozen encoder.

    A cached file that is missing or damaged (deleted or corrupted mid-run) is
    recomputed from its image and stored again.
    """

    def __init__(self, model: nn.Module, cache: EmbeddingCache, dataset: BSDSegmentation) -> None:
        self.model, self.cache, self.dataset = model, cache, dataset

    @torch.no_grad()
    def encode(self, indices: list[int], device: torch.device, amp: str) -> torch.Tensor:
        """Run the encoder on the dataset items ``indices``: ``(N, C, h, w)`` float32."""
        images = np.stack([self.dataset.image_input(i) for i in indices])
        with autocast(device, amp):
            embeddings = self.model.encode(torch.from_numpy(images).to(device))
        return embeddings.float()

    def __call__(self, indices: list[int], device: torch.device, amp: str) -> torch.Tensor:
        keys = [self.dataset.item_key(i) for i in indices]
        loaded = [self.cache.load(key) for key in keys]
        missing = [i for i, emb in enumerate(loaded) if emb is None]
        if missing:
            fresh = self.encode([indices[i] for i in missing], device, amp).cpu()
            for i, embedding in zip(missing, fresh, strict=True):
                self.cache.save(keys[i], embedding)
                loaded[i] = embedding
        return torch.stack(loaded).to(device)

    def fill(self, ctx: distributed.DistContext, batch_size: int, amp: str, show: bool) -> int:
        """Compute every embedding missing from the cache, shared across ranks; returns count.

        An item whose image cannot be read is warned about and marked unusable in the
        dataset on every rank, so that training skips (and counts) it.
        """
        distributed.barrier()  # every rank lists the same files
        absent = [
            i for i in range(len(self.dataset))
            if not self.cache.path(self.dataset.item_key(i)).is_file()
        ]  # fmt: skip
        mine = [absent[i] for i in distributed.shard_indices(len(absent), ctx.rank, ctx.world_size)]
        progress = Progress(math.ceil(len(mine) / batch_size), "cache", show and bool(mine))
        unreadable: set[int] = set()
        for start in range(0, len(mine), batch_size):
            chunk = mine[start : start + batch_size]
            try:
                embeddings = self.encode(chunk, ctx.device, amp)
            except ValueError:  # an image that cannot be read: find it, encode the rest
                chunk = [i for i in chunk if self._readable(i, unreadable)]
                embeddings = self.encode(chunk, ctx.device, amp) if chunk else []
            for index, embedding in zip(chunk, embeddings, strict=True):
                self.cache.save(self.dataset.item_key(index), embedding)
            progress.update()
        progress.close()
        self.dataset.unusable |= distributed.gather_union(unreadable)
        return len(absent)

    def _readable(self, index: int, unreadable: set[int]) -> bool:
        """Whether the item's image reads; if not, warn and add it to ``unreadable``."""
        try:
            self.dataset.image_input(index)
        except ValueError as err:
            warnings.warn(f"skipped: {err}", stacklevel=2)
            unreadable.add(index)
            return False
        return True


def build_embedders(
    model: BudSAM, datasets: dict, ctx: distributed.DistContext, args: argparse.Namespace
) -> dict[str, Embedder | None]:
    """Cached-embedding sources per split when the encoder is frozen; None otherwise."""
    if encoder_trained(args.model_type, args.train_parts):
        return dict.fromkeys(datasets)
    key = {
        "model_type": args.model_type,
        "encoder": module_fingerprint(model.image_encoder),
        "input_size": args.input_size,
        "preprocess": "reference-skimage" if args.ref_preprocess else "area",
        "pixel_norm": args.pixel_norm,
        "tile_width": args.tile_width,
        "half_spectrum": args.half_spectrum,
        "amp": args.amp,  # embeddings computed under bf16/fp16 differ from fp32 ones
    }
    embedders = {}
    for split, dataset in datasets.items():
        # One cache per data folder: file names repeat across splits and data sets.
        data = {"images": str(Path(dataset.root).resolve())}
        cache = EmbeddingCache(Path(args.work_dir) / "embedding_cache", {**key, **data})
        embedders[split] = Embedder(model, cache, dataset)
        added = embedders[split].fill(ctx, args.eval_batch_size, args.amp, ctx.is_main)
        dataset.embeddings = cache  # the loader's workers read them ahead of each step
        reused = len(dataset) - added
        ctx.log(f"embedding cache {cache.folder}: {split}: {added} computed, {reused} reused")
    return embedders
