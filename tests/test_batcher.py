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
