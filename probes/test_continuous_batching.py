"""Continuous batching: throughput scales with concurrency and a short request overtakes a long one."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.loadgen import Lengths, Workload, run_load, summarize
from harness.results import Evidence, Status, Verdict
from harness.session import EngineSession
from harness.streaming_socket import stream_with_socket

CONCURRENCY = 4
TOKENS = 256
PROMPT_TOKENS = 8
LONG_TOKENS = 1024
SHORT_TOKENS = 8
MIN_SPEEDUP = 1.2  # measured here (best of 3): 1 slot 1.0-1.1x; 4 slots 1.26-1.8x on the tiny models (per-token overhead dominates)
ROUNDS = 3
MAX_ROUNDS = 8  # below the threshold after ROUNDS, more rounds (vLLM CPU on 2 cores serializes for seconds at a time)
OVERTAKE_ATTEMPTS = 3
# After the short request ends, the long one must still stream this many tokens, for this share of its own
# latency: a server whose output layer lags can deliver a finished long stream's buffered tail after the
# short one, but as a burst, not at the decode's pace (seen on vLLM CPU with --max-num-seqs 1).
OVERTAKE_MARGIN_TOKENS = 64
OVERTAKE_MARGIN_SHARE = 0.2
PROMPT = "the cat"


async def _measure(session: EngineSession) -> dict[str, float | bool]:
    """Best of ROUNDS to MAX_ROUNDS rounds (as timing benchmarks do: the least disturbed round; vLLM CPU also
    needs a round or two per batch shape to warm up): one round runs CONCURRENCY requests one after another,
    then at once. Extra rounds cannot make a one-at-a-time engine pass: its best speedup stays near 1x."""
    await _round(session, 0)  # warms the engine up
    sequential_s: list[float] = []
    concurrent_s: list[float] = []
    while len(sequential_s) < ROUNDS or (len(sequential_s) < MAX_ROUNDS
                                         and min(sequential_s) / min(concurrent_s) < MIN_SPEEDUP):
        sequential, concurrent = await _round(session, len(sequential_s) + 1)
        sequential_s.append(sequential)
        concurrent_s.append(concurrent)
    sequential_best, concurrent_best = min(sequential_s), min(concurrent_s)
    return {"rounds": len(sequential_s), "sequential_s": [round(v, 4) for v in sequential_s],
            "concurrent_s": [round(v, 4) for v in concurrent_s],
            "speedup": round(sequential_best / concurrent_best, 3),
            "output_tokens_per_round": CONCURRENCY * TOKENS}


async def _round(session: EngineSession, index: int) -> tuple[float, float]:
    """Seconds for CONCURRENCY fresh requests one after another, then for CONCURRENCY others at once."""
    adapter, model, url = session.adapter, session.served_model, session.running.base_url
    batch = [Workload(Lengths(PROMPT_TOKENS), Lengths(TOKENS), seed=10 * index + seed)
             .requests(adapter, model, CONCURRENCY) for seed in range(2)]
    sequential = summarize(await run_load(url, batch[0], concurrency=1))
    concurrent = summarize(await run_load(url, batch[1], concurrency=CONCURRENCY))
    if sequential.errors or concurrent.errors:
        raise RuntimeError(f"requests failed: {(sequential.errors + concurrent.errors)[0]}")
    return sequential.duration_s, concurrent.duration_s


def _overtake_attempts(session: EngineSession) -> list[dict[str, float | bool]]:
    """Send a short request while a long one decodes, up to OVERTAKE_ATTEMPTS times, until it finishes
    first with OVERTAKE_MARGIN_TOKENS of the long one still to come. One overtake proves the engine
    interleaves them: an engine that runs one sequence at a time can never finish the short request
    first. Each stream is read by its own socket and thread, which only receive and stamp, so a tiny
    model's fast tokens never leave the stamps behind the engine."""
    adapter, model, url = session.adapter, session.served_model, session.running.base_url
    attempts: list[dict[str, float | bool]] = []
    with ThreadPoolExecutor(max_workers=1) as reader:
        while len(attempts) < OVERTAKE_ATTEMPTS and not any(a["short_finished_first"] for a in attempts):
            long_streaming = threading.Event()
            long_future = reader.submit(stream_with_socket, url, adapter.fixed_length_request(
                model, PROMPT, LONG_TOKENS, stream=True), long_streaming)
            long_streaming.wait()
            short = stream_with_socket(url, adapter.fixed_length_request(model, PROMPT, SHORT_TOKENS, stream=True))
            long = long_future.result()
            long_tokens_after_short = sum(arrived > short.finished_at for arrived in long.token_times)
            long_after_short_s = long.finished_at - short.finished_at
            attempts.append({"short_sent_during_long": short.sent_at < long.finished_at,
                             "long_tokens_after_short": long_tokens_after_short,
                             "long_streamed_after_short_s": round(long_after_short_s, 4),
                             "short_finished_first": long_tokens_after_short >= OVERTAKE_MARGIN_TOKENS
                             and long_after_short_s >= OVERTAKE_MARGIN_SHARE * long.e2e_s,
                             "short_latency_s": round(short.e2e_s, 4), "long_latency_s": round(long.e2e_s, 4)})
    return attempts


def check_continuous_batching(session: EngineSession) -> Verdict:
    """Pass: speedup >= MIN_SPEEDUP and the short request overtakes; partial: one of the two; fail: neither."""
    numbers = asyncio.run(_measure(session))
    overtaking = _overtake_attempts(session)
    numbers |= {"short_finished_first": any(attempt["short_finished_first"] for attempt in overtaking),
                "overtake_attempts": overtaking}
    scales = numbers["speedup"] >= MIN_SPEEDUP
    overtakes = bool(numbers["short_finished_first"])
    status = Status.PASS if scales and overtakes else Status.PARTIAL if scales or overtakes else Status.FAIL
    tries = len(numbers["overtake_attempts"])
    reason = (f"{CONCURRENCY} concurrent requests {numbers['speedup']}x faster than sequential "
              f"(threshold {MIN_SPEEDUP}x); a short request sent during a long one "
              f"{f'finished first (attempt {tries})' if overtakes else f'waited for it in all {tries} attempts'}")
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("continuous_batching")
def test_continuous_batching(probe):
    probe.record(check_continuous_batching(probe.engine()))
