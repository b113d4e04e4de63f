"""Drive an engine with a list of streaming requests, closed loop or open loop, and time each one.

One or more load-generating processes share the work: requests are dealt round-robin, each
process keeps its share of the concurrency, and all of them stamp with `perf_counter`
(CLOCK_MONOTONIC, one clock for every process on the host), so their timestamps merge as they
are. Each process reports its own CPU time over the run, so a run knows whether its client was
the bottleneck (`harness.loadgen.stats`).
"""

from __future__ import annotations

import asyncio
import pickle
import select
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.loadgen import wire
from harness.loadgen.schedule import arrival_offsets
from harness.wire.request import ApiRequest
from harness.wire.streaming import StreamTiming

MIN_FOR_ERROR_RATE = 10  # finished requests before the maximum error rate may stop a run
CANCELLED = "cancelled: the run stopped at its maximum error rate"
_START_LEAD_S = 0.2  # how far ahead of the common start the processes are told it
_SPAWN_DEADLINE_S = 60.0


@dataclass
class RequestResult:
    """One request: its timing (partial if it failed) and why it failed, if it did."""

    timing: StreamTiming
    error: str | None = None
    scheduled_at: float | None = None  # when the schedule meant to send it (perf_counter)

    @property
    def ok(self) -> bool:
        """Completed, with at least one token."""
        return self.error is None

    @property
    def cancelled(self) -> bool:
        """Never finished because the run stopped early."""
        return self.error == CANCELLED


@dataclass(frozen=True)
class ClientLoad:
    """What the load-generating processes spent: CPU seconds and wall seconds of the timed part."""

    processes: int
    cpu_s: float  # all processes together, the parsing after the timed part included
    wall_s: float  # the longest process
    saturation: float  # the busiest process's CPU time over its wall time (1.0: one core, the most one loop gets)
    waiting: float  # the same process's time ready to run but kept off a CPU by the host, over its wall time


@dataclass
class LoadResult:
    """Every request of one run, in the order given; `started_at` is the schedule's origin."""

    results: list[RequestResult]
    started_at: float
    finished_at: float
    concurrency: int | None
    rate: float | None
    offsets: list[float] = field(default_factory=list)  # the schedule: send times after started_at
    client: ClientLoad | None = None
    stopped: str | None = None  # why the run stopped early, if it did

    @property
    def duration_s(self) -> float:
        """From the first request's send to the last request's end (the client's own start-up excluded)."""
        sent = [result.timing.sent_at for result in self.results if result.timing.sent_at]
        return self.finished_at - min(sent, default=self.started_at)


@dataclass(frozen=True)
class _Share:
    """What one load-generating process sends."""

    base_url: str
    indexes: list[int]
    requests: list[ApiRequest]
    offsets: list[float]
    concurrency: int | None
    open_loop: bool
    timeout_s: float
    max_error_rate: float | None


@dataclass
class _Outcome:
    indexes: list[int]
    results: list[RequestResult]
    cpu_s: float  # over the timed part
    parse_cpu_s: float  # parsing the recorded responses, after it
    wait_s: float  # ready to run, but not running (the kernel's run-queue wait)
    wall_s: float
    ended_at: float  # when its last request ended (perf_counter)
    stopped: str | None


async def run_load(
    base_url: str,
    requests: Sequence[ApiRequest],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    seed: int = 0,
    timeout_s: float = 600.0,
    processes: int = 1,
    max_error_rate: float | None = None,
) -> LoadResult:
    """Send `requests` and time them; a failed request is recorded, never raised.

    Closed loop: `concurrency` requests in flight, each finished one replaced at once.
    Open loop: Poisson arrivals at `rate` per second (capped at `concurrency` in flight when given).
    `processes` load-generating processes share the work (1: this process's event loop). Once more
    than `max_error_rate` of the finished requests failed, the rest are cancelled and counted as such.
    """
    if not requests:
        raise ValueError("no requests to send")
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    wire.Target.of(base_url)
    offsets = arrival_offsets(len(requests), rate, seed)
    shares = _deal(
        base_url, list(requests), offsets, concurrency, rate is not None, timeout_s, max_error_rate, processes
    )
    if len(shares) == 1:
        started_at = time.perf_counter()
        outcomes = [await drive(shares[0], started_at)]
    else:
        started_at, outcomes = await asyncio.get_running_loop().run_in_executor(None, _in_processes, shares)
    results: list[RequestResult | None] = [None] * len(requests)
    for outcome in outcomes:
        for index, result in zip(outcome.indexes, outcome.results):
            result.scheduled_at = started_at + offsets[index]
            results[index] = result
    done = [result for result in results if result is not None]
    finished_at = max(outcome.ended_at for outcome in outcomes)
    busiest = max(outcomes, key=lambda o: o.cpu_s / o.wall_s if o.wall_s > 0 else 0.0)
    client = ClientLoad(
        processes=len(outcomes),
        cpu_s=sum(o.cpu_s + o.parse_cpu_s for o in outcomes),
        wall_s=max(o.wall_s for o in outcomes),
        saturation=busiest.cpu_s / busiest.wall_s if busiest.wall_s > 0 else 0.0,
        waiting=busiest.wait_s / busiest.wall_s if busiest.wall_s > 0 else 0.0,
    )
    return LoadResult(
        results=done,
        started_at=started_at,
        finished_at=finished_at,
        concurrency=concurrency,
        rate=rate,
        offsets=offsets,
        client=client,
        stopped=next((o.stopped for o in outcomes if o.stopped), None),
    )


def _deal(
    base_url: str,
    requests: list[ApiRequest],
    offsets: list[float],
    concurrency: int | None,
    open_loop: bool,
    timeout_s: float,
    max_error_rate: float | None,
    processes: int,
) -> list[_Share]:
    """Requests round-robin over the processes; each keeps its part of the concurrency (at least one)."""
    processes = min(processes, len(requests), concurrency or len(requests))
    shares = []
    for worker in range(processes):
        indexes = list(range(worker, len(requests), processes))
        part = None if concurrency is None else concurrency // processes + (worker < concurrency % processes)
        shares.append(
            _Share(
                base_url,
                indexes,
                [requests[i] for i in indexes],
                [offsets[i] for i in indexes],
                part,
                open_loop,
                timeout_s,
                max_error_rate,
            )
        )
    return shares


async def drive(share: _Share, started_at: float) -> _Outcome:
    """Send one share on this event loop, then parse what came back (after the timed part)."""
    target = wire.Target.of(share.base_url)
    payloads = [wire.encode(target, request) for request in share.requests]
    records: list[wire.Exchange | None] = [None] * len(payloads)
    state = _RunState(share.max_error_rate)
    slots = asyncio.Semaphore(share.concurrency) if share.concurrency else None
    loop = asyncio.get_running_loop()
    await asyncio.sleep(started_at - time.perf_counter())
    cpu_start, wait_start, wall_start = time.process_time(), _run_queue_wait_s(), time.perf_counter()

    async def send(position: int) -> None:
        if slots is not None:
            await slots.acquire()
        try:
            if not state.stopped:
                records[position] = record = await wire.exchange(target, payloads[position], share.timeout_s)
                state.finished(record)
        finally:
            if slots is not None:
                slots.release()

    if share.open_loop:
        tasks = []
        for position, offset in enumerate(share.offsets):
            delay = started_at + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if state.stopped:
                break
            tasks.append(loop.create_task(send(position)))
        await _gather(tasks, state)
    else:
        positions = iter(range(len(payloads)))

        async def closed_loop() -> None:
            for position in positions:
                if state.stopped:
                    return
                await send(position)

        await _gather([loop.create_task(closed_loop()) for _ in range(share.concurrency or len(payloads))], state)
    ended_at = time.perf_counter()
    cpu_s, wait_s, wall_s = time.process_time() - cpu_start, _run_queue_wait_s() - wait_start, ended_at - wall_start
    results, parse_started = [], time.process_time()
    for request, record in zip(share.requests, records):
        if record is None:
            results.append(RequestResult(StreamTiming(sent_at=0.0), CANCELLED))
            continue
        timing, error = wire.parse(target, request, record)
        results.append(RequestResult(timing, CANCELLED if record.error == "cancelled" else error))
    return _Outcome(
        share.indexes, results, cpu_s, time.process_time() - parse_started, wait_s, wall_s, ended_at, state.stopped
    )


def _run_queue_wait_s() -> float:
    """Seconds this process's threads have waited on a run queue (Linux schedstat; 0 where unavailable)."""
    try:
        with open("/proc/thread-self/schedstat") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


class _RunState:
    """Counts finished and failed requests; stops the run past the maximum error rate."""

    def __init__(self, max_error_rate: float | None) -> None:
        self.max_error_rate, self.done, self.failed = max_error_rate, 0, 0
        self.stopped: str | None = None

    def finished(self, record: wire.Exchange) -> None:
        self.done += 1
        head = b"".join(data for _, data in (record.chunks or [])[:4])
        status_ok = head[9:10] == b"2"  # "HTTP/1.1 2xx"
        self.failed += bool(record.error) or not status_ok
        if (
            self.max_error_rate is not None
            and not self.stopped
            and self.done >= MIN_FOR_ERROR_RATE
            and self.failed / self.done > self.max_error_rate
        ):
            self.stopped = (
                f"{self.failed} of {self.done} finished requests failed, more than the maximum "
                f"error rate {self.max_error_rate:.0%}"
            )


async def _gather(tasks: list[asyncio.Task[None]], state: _RunState) -> None:
    """Wait for every task; once the run has stopped, cancel those still in flight."""
    pending = set(tasks)
    while pending:
        _, pending = await asyncio.wait(pending, timeout=0.5 if not state.stopped else None)
        if state.stopped:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            return


def _in_processes(shares: list[_Share]) -> tuple[float, list[_Outcome]]:
    """Run each share in its own Python process from one common start time; their outcomes.

    Plain subprocesses (`python -m harness.loadgen.worker`) talking pickle over their pipes, so the
    caller's `__main__` is never re-imported (as multiprocessing's spawn would).
    """
    workers: list[subprocess.Popen[bytes]] = []
    try:
        for share in shares:
            worker = subprocess.Popen(
                [sys.executable, "-m", "harness.loadgen.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
            )
            assert worker.stdin is not None
            pickle.dump(share, worker.stdin)
            worker.stdin.flush()
            workers.append(worker)
        for worker in workers:
            if _read(worker, _SPAWN_DEADLINE_S) != "ready":
                raise RuntimeError("a load-generating process did not start")
        started_at = time.perf_counter() + _START_LEAD_S
        for worker in workers:
            assert worker.stdin is not None
            pickle.dump(started_at, worker.stdin)
            worker.stdin.close()
        deadline = started_at + max(share.offsets[-1] for share in shares) + 2 * max(s.timeout_s for s in shares) + 60
        return started_at, [_read(worker, deadline - time.perf_counter()) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


def _read(worker: subprocess.Popen[bytes], timeout_s: float) -> Any:
    """The next pickled object from a worker's stdout, waiting at most `timeout_s`."""
    assert worker.stdout is not None
    ready, _, _ = select.select([worker.stdout], [], [], max(1.0, timeout_s))
    if not ready:
        raise RuntimeError("a load-generating process did not answer in time")
    try:
        return pickle.load(worker.stdout)
    except EOFError:
        raise RuntimeError(f"a load-generating process exited early (exit {worker.wait()})") from None
