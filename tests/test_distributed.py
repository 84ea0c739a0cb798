"""Real two-process DDP on the CPU (gloo): sync, accumulation, buckets, exact evaluation."""

from __future__ import annotations

import json
import socket

import pytest
import torch
import torch.multiprocessing as mp

from tests import ddp_checks
from utils.common.distributed import DistContext, shard_indices
from utils.train.validation import evaluate


def _free_init_method() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


def test_shards_cover_every_item_exactly_once():
    for n, world in ((5, 2), (7, 3), (1, 4), (0, 2)):
        shards = [shard_indices(n, rank, world) for rank in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(n))


@pytest.mark.parametrize("ema_decay", [0.0, 0.9], ids=["weights", "ema"])
def test_ddp_ranks_stay_identical_and_accumulation_equals_a_larger_batch(tmp_path, ema_decay):
    """Also for the weight EMA, which is updated once per optimizer step. (With
    ``--dice batch`` the Dice term is pooled per micro-batch, so accumulation is not
    the larger batch's Dice: see the README, "Differences from the original code".)"""
    for mode in ("acc", "plain"):
        args = (2, str(tmp_path), _free_init_method(), mode, ema_decay)
        mp.spawn(ddp_checks.run_steps, args=args, nprocs=2)
    params = {
        (mode, rank): torch.load(tmp_path / f"{mode}_rank{rank}.pt")
        for mode in ("acc", "plain")
        for rank in (0, 1)
    }
    # Every rank holds the same weights after the optimizer steps.
    assert torch.equal(params[("acc", 0)], params[("acc", 1)])
    assert torch.equal(params[("plain", 0)], params[("plain", 1)])
    # Batch 1 x 2 accumulated micro-steps == batch 2 in one step (4 items -> 2 steps each).
    initial = torch.cat([p.flatten() for p in ddp_checks.make_single_model().parameters()])
    if ema_decay:  # the EMA covers the trained parameters only
        model = ddp_checks.make_single_model()
        initial = torch.cat([p.flatten() for p in model.parameters() if p.requires_grad])
    moved = (params[("plain", 0)] - initial).abs().max()
    assert moved > 1e-4  # the training actually changed the weights
    assert torch.allclose(params[("acc", 0)], params[("plain", 0)], atol=1e-5, rtol=1e-4)
    for mode in ("acc", "plain"):
        info = json.loads((tmp_path / f"{mode}_rank0.json").read_text())
        assert info["steps"] == 2
        assert info["bucket_bytes_cap"] == 3 * 1024 * 1024  # --bucket_cap_mb reached DDP


def test_distributed_evaluation_counts_an_odd_split_once(tmp_path):
    mp.spawn(ddp_checks.run_eval, args=(2, str(tmp_path), _free_init_method(), 5), nprocs=2)
    rank0 = json.loads((tmp_path / "eval_rank0.json").read_text())
    rank1 = json.loads((tmp_path / "eval_rank1.json").read_text())
    assert rank0 == rank1  # both ranks hold the reduced totals
    assert rank0["n_images"] == 5  # not 6, as a padding DistributedSampler would give
    for batch_size in (2, 3, 5):
        alone = evaluate(
            ddp_checks.make_single_model(), ddp_checks.fake_items(5, seed=7),
            DistContext(0, 1, 0, torch.device("cpu")), batch_size=batch_size, amp="none",
            embedder=None,
        )  # fmt: skip
        assert alone["n_images"] == 5
        # The papers' two-class scores too: fixed groups of items, whatever the batching.
        for key in ("loss", "fg_iou", "fg_dice", "paper_iou", "paper_dice"):
            assert abs(alone[key] - rank0[key]) < 1e-6, (key, batch_size)


def test_each_local_rank_gets_its_gpu_or_the_only_visible_one():
    from utils.common.distributed import cuda_index

    assert [cuda_index(rank, 4) for rank in range(4)] == [0, 1, 2, 3]
    assert cuda_index(3, 1) == 0  # SLURM: one visible GPU per task, whatever the local rank
    with pytest.raises(ValueError, match="local rank 2 needs a GPU of its own but 2 are visible"):
        cuda_index(2, 2)


def test_evaluation_decoded_by_loader_workers_gives_the_same_scores():
    ctx = DistContext(0, 1, 0, torch.device("cpu"))
    scores = [
        evaluate(
            ddp_checks.make_single_model(),
            ddp_checks.fake_items(5, seed=7),
            ctx,
            batch_size=2,
            amp="none",
            embedder=None,
            num_workers=workers,
        )  # fmt: skip
        for workers in (0, 2)
    ]
    assert scores[0] == scores[1] and scores[0]["n_images"] == 5


def test_the_silence_padding_a_narrow_image_is_not_scored():
    from utils.train.validation import item_counts

    pred, truth = torch.zeros(2, 4, 8, dtype=torch.bool), torch.zeros(2, 4, 8, dtype=torch.bool)
    pred[:, :, 6:] = True  # the model marks the padding of the first item
    truth[1, :, 6:] = True
    counts = item_counts(pred, truth, torch.tensor([6, 8]))
    assert counts["fp"].tolist() == [0, 0] and counts["tp"].tolist() == [0, 8]
    assert counts["tn"].tolist() == [24, 24]  # 4 x 6 valid pixels; 4 x 6 outside the mark
