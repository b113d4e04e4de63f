"""Continuous batching: throughput scales with concurrency and a short request overtakes a long one."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

from harness.results import Evidence, Status, Verdict
from harness.session import EngineSession
from harness.streaming import stream_request

CONCURRENCY = 4
TOKENS = 64
LONG_TOKENS = 256
SHORT_TOKENS = 8
MIN_SPEEDUP = 1.5
PROMPT = "the cat"


async def _measure(session: EngineSession) -> dict[str, float | bool]:
    adapter, model = session.adapter, session.served_model
    request = adapter.fixed_length_request(model, PROMPT, TOKENS, stream=True)
    async with httpx.AsyncClient(base_url=session.running.base_url, timeout=300) as client:
        await stream_request(client, request)  # warm-up
        started = time.perf_counter()
        for _ in range(CONCURRENCY):
            await stream_request(client, request)
        sequential_s = time.perf_counter() - started
        started = time.perf_counter()
        await asyncio.gather(*(stream_request(client, request) for _ in range(CONCURRENCY)))
        concurrent_s = time.perf_counter() - started

        long_started = asyncio.Event()
        long_task = asyncio.create_task(stream_request(
            client, adapter.fixed_length_request(model, PROMPT, LONG_TOKENS, stream=True), long_started.set))
        await long_started.wait()
        short = await stream_request(client, adapter.fixed_length_request(model, PROMPT, SHORT_TOKENS, stream=True))
        long = await long_task
    return {"sequential_s": round(sequential_s, 4), "concurrent_s": round(concurrent_s, 4),
            "speedup": round(sequential_s / concurrent_s, 3),
            "short_finished_first": short.finished_at < long.finished_at,
            "short_latency_s": round(short.finished_at - short.sent_at, 4),
            "long_latency_s": round(long.finished_at - long.sent_at, 4)}


def check_continuous_batching(session: EngineSession) -> Verdict:
    """Pass: speedup >= MIN_SPEEDUP and the short request overtakes; partial: one of the two; fail: neither."""
    numbers = asyncio.run(_measure(session))
    scales = numbers["speedup"] >= MIN_SPEEDUP
    overtakes = bool(numbers["short_finished_first"])
    status = Status.PASS if scales and overtakes else Status.PARTIAL if scales or overtakes else Status.FAIL
    reason = (f"{CONCURRENCY} concurrent requests {numbers['speedup']}x faster than sequential "
              f"(threshold {MIN_SPEEDUP}x); short request sent during a long one "
              f"{'finished first' if overtakes else 'waited for it'}")
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("continuous_batching")
def test_continuous_batching(probe):
    probe.record(check_continuous_batching(probe.engine()))
