"""Drive an engine with a list of streaming requests, closed loop or open loop, and time each one."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from harness.engines.base import ApiRequest
from harness.loadgen.connections import ConnectionClients
from harness.loadgen.schedule import arrival_offsets
from harness.streaming import StreamError, StreamTiming, stream_into


@dataclass
class RequestResult:
    """One request: its timing (partial if it failed) and why it failed, if it did."""

    timing: StreamTiming
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Completed, with at least one token."""
        return self.error is None


@dataclass
class LoadResult:
    """Every request of one run, in the order given; `started_at` is the schedule's origin."""

    results: list[RequestResult]
    started_at: float
    finished_at: float
    concurrency: int | None
    rate: float | None

    @property
    def duration_s(self) -> float:
        """From the first request's send to the last request's end (the client's own start-up excluded)."""
        return self.finished_at - min(result.timing.sent_at for result in self.results)


async def run_load(base_url: str, requests: Sequence[ApiRequest], *, concurrency: int | None = None,
                   rate: float | None = None, seed: int = 0, timeout_s: float = 600.0) -> LoadResult:
    """Send `requests` and time them; a failed request is recorded, never raised.

    Closed loop: `concurrency` requests in flight, each finished one replaced at once.
    Open loop: Poisson arrivals at `rate` per second (capped at `concurrency` in flight when given).
    """
    if not requests:
        raise ValueError("no requests to send")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    offsets = arrival_offsets(len(requests), rate, seed)
    clients = ConnectionClients(base_url, timeout_s, ready=min(concurrency or 1, len(requests)))
    slots = asyncio.Semaphore(concurrency) if concurrency else None
    try:
        started_at = time.perf_counter()
        results = await asyncio.gather(*(_scheduled(clients, request, started_at + offset, slots)
                                         for request, offset in zip(requests, offsets)))
        finished_at = time.perf_counter()
    finally:
        await clients.aclose()
    return LoadResult(results=list(results), started_at=started_at, finished_at=finished_at,
                      concurrency=concurrency, rate=rate)


async def measure(client: httpx.AsyncClient, request: ApiRequest) -> RequestResult:
    """Send one streaming request and time it; errors become a failed result."""
    timing = StreamTiming(sent_at=time.perf_counter())
    try:
        await stream_into(client, request, timing)
    except (httpx.HTTPError, StreamError) as exc:
        return RequestResult(timing, f"{type(exc).__name__}: {exc}")
    if not timing.token_times:
        return RequestResult(timing, "the stream ended without a token")
    return RequestResult(timing)


async def _scheduled(clients: ConnectionClients, request: ApiRequest, send_at: float,
                     slots: asyncio.Semaphore | None) -> RequestResult:
    await asyncio.sleep(send_at - time.perf_counter())
    async with slots or contextlib.nullcontext(), clients.client() as client:
        return await measure(client, request)
