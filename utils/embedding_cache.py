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

import hashlib
import json
import zlib
from pathlib import Path

import torch
from torch import nn

from utils.files import atomic_path, write_text

CACHE_VERSION = 1


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
        return self.folder / f"{Path(name).stem}.pt"

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
