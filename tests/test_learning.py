"""Training learns: a tiny model overfits three images, on the CPU, in seconds."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from utils.common.distributed import DistContext
from utils.data.dataset import collate_skipping_none
from utils.model.budsam import BudSAM
from utils.model.sam import build_sam
from utils.scoring.metrics import foreground_scores
from utils.train.checkpointer import TrainState
from utils.train.engine import Trainer, model_logits, train_one_epoch

SIZE = 256
STEPS = 60


def _blob_items(n: int) -> list[dict]:
    """Images of faint noise holding one brighter elliptic blob (the "call"), its mask,
    and a whole-image box: the model must find the blob from the image alone."""
    generator = torch.Generator().manual_seed(0)
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    items = []
    for index in range(n):
        row, col = (int(v) for v in torch.randint(60, SIZE - 60, (2,), generator=generator))
        mask = ((((rows - row) / 30.0) ** 2 + ((cols - col) / 60.0) ** 2) <= 1).float()[None]
        image = torch.rand(1, SIZE, SIZE, generator=generator) * 0.3 + 0.6 * mask
        items.append({"image": image.expand(3, SIZE, SIZE).clone(), "mask": mask,
                      "box": torch.tensor([0.0, 0.0, SIZE, SIZE]), "index": index,
                      "name": f"{index}.png"})  # fmt: skip
    return items


def _mean_iou(model: BudSAM, batch: dict) -> float:
    model.eval()
    with torch.no_grad():
        logits = model_logits(model, batch, torch.device("cpu"), "none", None)
    return float(foreground_scores(logits[:, 0] > 0, batch["mask"][:, 0] >= 0.5)["iou"].mean())


def test_a_tiny_model_overfits_three_images_within_sixty_steps():
    items = _blob_items(3)
    batch = collate_skipping_none(items)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        model = BudSAM(build_sam("vit_tiny", seed=0), ("mask_decoder",))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
        cpu = DistContext(0, 1, 0, torch.device("cpu"))
        trainer = Trainer(model, optimizer, torch.amp.GradScaler("cpu", enabled=False), cpu)
        before = _mean_iou(model, batch)
        state = TrainState()
        loader = DataLoader(items * STEPS, batch_size=len(items), collate_fn=collate_skipping_none)
        result = train_one_epoch(trainer, loader, state)
        after = _mean_iou(model, batch)
    finally:
        torch.set_num_threads(threads)
    assert state.step == STEPS and result["train_loss"] < 1.0
    assert before < 0.2  # an untrained model does not find the blobs
    assert after >= 0.9, (before, after)
