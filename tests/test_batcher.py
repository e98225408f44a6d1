"""The dynamic batcher: concurrent requests share a batch; a lone request does not wait for company."""

import asyncio
import time

from lmforge.serve.batcher import Batcher


def _run(coro):
    return asyncio.run(coro)


def test_a_lone_request_is_not_held_for_max_wait():
    async def go():
        batcher = Batcher(lambda items: [i * 2 for i in items], max_batch=16, max_wait_ms=500, max_queue=64)
        batcher.start()
        started = time.perf_counter()
        results = [await batcher.submit(i, timeout=5) for i in range(3)]  # one client, back to back
        await batcher.stop()
        return results, time.perf_counter() - started

    results, seconds = _run(go())
    assert results == [0, 2, 4] and seconds < 0.5  # waiting 500 ms per request would take 1.5 s


def test_concurrent_requests_share_batches_in_order():
    sizes = []

    def run(items):
        sizes.append(len(items))
        time.sleep(0.05)  # a forward pass: requests arriving meanwhile queue up
        return [i * 2 for i in items]

    async def go():
        batcher = Batcher(run, max_batch=8, max_wait_ms=20, max_queue=64)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i, timeout=5) for i in range(20)))
        await batcher.stop()
        return results

    assert _run(go()) == [i * 2 for i in range(20)]
    assert sum(sizes) == 20 and max(sizes) == 8 and len(sizes) <= 4


def test_token_budget_groups_queued_items_by_length_and_caps_padded_tokens():
    """Queued texts of mixed lengths: passes hold texts of similar length, shortest first, each within
    max_tokens padded tokens (rows x longest), a text over the budget alone; answers reach their senders."""
    passes = []

    def run(items):
        passes.append(list(items))
        time.sleep(0.02)
        return [text.upper() for text in items]

    async def go():
        batcher = Batcher(run, max_batch=4, max_wait_ms=50, max_queue=64, cost=len, max_tokens=12)
        batcher.start()
        texts = ["aaaaaa", "b", "cc", "dddddddddddddddd", "e", "ffff", "g", "hhh", "ii"]
        results = await asyncio.gather(*(batcher.submit(t, timeout=5) for t in texts))
        await batcher.stop()
        return texts, results

    texts, results = _run(go())
    assert results == [t.upper() for t in texts]
    assert [len(t) for p in passes for t in p] == sorted(len(t) for t in texts)  # one round, shortest first
    assert passes[-1] == ["dddddddddddddddd"]  # 16 tokens: over the budget, alone
    for p in passes:
        assert len(p) <= 4 and (len(p) == 1 or len(p) * max(len(t) for t in p) <= 12)
    assert passes[0] == ["b", "e", "g", "cc"]  # four rows of at most 2 tokens: the max_batch cap, not tokens


def test_a_lone_item_is_not_costed():
    costed = []

    def cost(item):
        costed.append(item)
        return 1

    async def go():
        batcher = Batcher(lambda items: items, max_batch=4, max_wait_ms=5, max_queue=8, cost=cost, max_tokens=8)
        batcher.start()
        result = await batcher.submit("x", timeout=5)
        await batcher.stop()
        return result

    assert _run(go()) == "x" and costed == []
