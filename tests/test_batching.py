import numpy as np
import torch

from lmforge.runtime.collate import pad_collate
from lmforge.runtime.forward import CALL_COST_TOKENS, inference_order
from lmforge.train.batching import micro_batches, plan_epoch


def test_plan_covers_every_example_once_and_is_seeded():
    lengths = [(i * 7) % 50 + 1 for i in range(1000)]
    plan = plan_epoch(lengths, 32, seed=1, epoch=0)
    assert sorted(i for b in plan for i in b) == list(range(1000))
    assert plan == plan_epoch(lengths, 32, seed=1, epoch=0)
    assert plan != plan_epoch(lengths, 32, seed=1, epoch=1)


def test_length_grouping_cuts_padding():
    lengths = [(i * 7919) % 120 + 1 for i in range(3200)]
    def padded(plan):
        return sum(len(b) * max(lengths[i] for i in b) for b in plan)
    grouped = padded(plan_epoch(lengths, 32, seed=0, epoch=0))
    random_batches = padded([list(range(i, i + 32)) for i in range(0, 3200, 32)])
    assert grouped < 1.05 * sum(lengths)  # almost no padding at all
    assert grouped < 0.75 * random_batches


def test_micro_batches_partition_the_global_batch():
    lengths = list(range(1, 21))
    batch = list(range(20))
    shares = [micro_batches(batch, lengths, accum=2, world=2, rank=r) for r in range(2)]
    flat = sorted(i for share in shares for part in share for i in part)
    assert flat == batch
    assert all(len(share) == 2 for share in shares)


def test_pad_collate_and_inference_order():
    feats = [{"input_ids": [5, 6, 7], "labels": 1}, {"input_ids": [8], "labels": 0}]
    batch = pad_collate(feats, pad_id=0)
    assert batch["input_ids"][:, :4].tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]] and batch["input_ids"].shape[1] == 16
    assert batch["attention_mask"].sum(1).tolist() == [3, 1]
    assert pad_collate(feats, pad_id=0, multiple=1)["input_ids"].shape[1] == 3  # inference: exact widths
    assert torch.equal(batch["labels"], torch.tensor([1, 0]))
    assert inference_order([1, 3, 2], 2) == [[1, 2], [0]]


def _padded_tokens(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(len(b) * max(lengths[i] for i in b) for b in batches)


def test_inference_order_cuts_where_padding_costs_more_than_a_call():
    # one long text is not allowed to pad the short ones: it gets a call of its own
    assert inference_order([100, 10, 10, 10], 64) == [[0], [1, 2, 3]]
    # texts of one width fill batches up to batch_size
    assert [len(b) for b in inference_order([20] * 200, 64)] == [64, 64, 64, 8]
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 300, size=500).tolist()
    batches = inference_order(lengths, 32)
    assert sorted(i for b in batches for i in b) == list(range(500))
    assert max(len(b) for b in batches) <= 32
    order = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    fixed = [order[i : i + 32] for i in range(0, 500, 32)]
    cost = _padded_tokens(batches, lengths) + CALL_COST_TOKENS * len(batches)
    assert cost < _padded_tokens(fixed, lengths) + CALL_COST_TOKENS * len(fixed)
