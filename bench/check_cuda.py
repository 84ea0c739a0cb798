"""CUDA-path checks for a GPU machine: NCCL collectives and DDP, bf16 numerics of the
prompt encoder's positional encoding, and a ViT-B training step under bf16.

    python -m bench.check_cuda          # needs a CUDA device; prints one line per check

Each check prints ``ok`` or ``FAIL`` with its figures; the exit code is the number of
failed checks. NCCL runs as a one-process group (a second rank on the same GPU is
refused by NCCL), which still exercises the NCCL code paths of ``utils.common.distributed``.
"""

from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from bench.bench_gpu import random_batch
from utils.common import distributed
from utils.common.amp import autocast
from utils.model.budsam import BudSAM
from utils.model.sam import build_sam
from utils.train.engine import model_logits
from utils.train.losses import DiceBCELoss

FAILED: list[str] = []


def report(name: str, ok: bool, detail: str) -> None:
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}", flush=True)
    if not ok:
        FAILED.append(name)


def check_nccl(device: torch.device) -> None:
    """The project's collectives and a DDP step under the NCCL backend."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29611")
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=device)
    try:
        total = distributed.all_reduce_sum(torch.ones(3, device=device))
        report("nccl all_reduce_sum", total.tolist() == [1.0, 1.0, 1.0], str(total.tolist()))
        report("nccl any_rank", distributed.any_rank(True, device), "True expected")
        value = distributed.broadcast_object({"path": "x"})
        report("nccl broadcast_object", value == {"path": "x"}, str(value))
        union = distributed.gather_union({"a", "b"})
        report("nccl gather_union", union == {"a", "b"}, str(sorted(union)))
        model = BudSAM(build_sam("vit_tiny", seed=0), ("image_encoder", "mask_decoder")).to(device)
        ddp = DistributedDataParallel(
            model, device_ids=[device.index], gradient_as_bucket_view=True
        )
        batch = random_batch(model, 2, device)
        loss = DiceBCELoss()(model_logits(ddp, batch, device, "bf16", None).float(), batch["mask"])
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        finite = all(g is not None and torch.isfinite(g).all() for g in grads)
        report(
            "nccl DDP bf16 step", finite and torch.isfinite(loss).item(), f"loss {loss.item():.4f}"
        )
    finally:
        dist.destroy_process_group()


def check_positional_encoding(device: torch.device) -> None:
    """The dense positional encoding under bf16 autocast at ViT-B size: as the package
    computes it (the defect) and as BudSAM does (kept in fp32)."""
    model = BudSAM(build_sam_vit_b()).to(device)
    boxes = torch.tensor([[100.0, 200.0, 900.0, 800.0]], device=device)
    with torch.no_grad():
        reference = model.prompt_encoder.get_dense_pe().float()
        _, _, guarded_fp32 = model.prompt_embeddings(boxes)
        with autocast(device, "bf16"):
            unguarded = model.prompt_encoder.get_dense_pe().float()
            _, _, guarded = model.prompt_embeddings(boxes)
    step = (reference[..., 1:] - reference[..., :-1]).abs().mean().item()
    error = (unguarded - reference).abs().max().item()
    print(f"info dense PE computed under bf16 autocast by the package: max error {error:.4f}, "
          f"mean difference of neighbouring positions {step:.4f}", flush=True)  # fmt: skip
    kept = (guarded - guarded_fp32).abs().max().item()
    report("BudSAM's PE under bf16 autocast", kept <= 1e-3, f"max error {kept:.2e} (<= 1e-3)")


def build_sam_vit_b():
    """The ViT-B architecture with random weights (no weights can be fetched here)."""
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    return sam_model_registry["vit_b"](checkpoint=None)


def check_vit_b_bf16_step(device: torch.device) -> None:
    """One encoder + decoder training step of ViT-B at 1024 px under bf16: a finite loss and
    gradients (the logits come back in fp32: the final upsampling runs in fp32 under autocast)."""
    model = BudSAM(build_sam_vit_b(), ("image_encoder", "mask_decoder")).to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    batch = random_batch(model, 2, device)
    logits = model_logits(model, batch, device, "bf16", None)
    loss = DiceBCELoss()(logits.float(), batch["mask"])
    loss.backward()
    optimizer.step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device) / 2**30
    report(
        "vit_b bf16 train step",
        torch.isfinite(loss).item()
        and all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None),
        f"logits {logits.dtype} {tuple(logits.shape)}, loss {loss.item():.4f}, peak {peak:.1f} GiB",
    )


def main() -> int:
    if not torch.cuda.is_available():
        print("error: no CUDA device is visible here", file=sys.stderr)
        return 1
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, "
          f"NCCL {'.'.join(map(str, torch.cuda.nccl.version()))}", flush=True)  # fmt: skip
    check_nccl(device)
    check_positional_encoding(device)
    check_vit_b_bf16_step(device)
    print(f"{len(FAILED)} failed: {FAILED}" if FAILED else "all checks passed")
    return len(FAILED)


if __name__ == "__main__":
    sys.exit(main())
