"""Prefix caching: a second request sharing a long prefix is served from the engine's cache.

Two things must hold, and the counter alone is never trusted:
- the engine reports cached prompt tokens for it (`usage.prompt_tokens_details.cached_tokens`,
  llama-server's `timings.cache_n`, vLLM's prefix-cache hit counter), at least half the prefix;
- its one-token request is measurably faster than the same request with the cache bypassed in the
  same run (llama-server `cache_prompt: false`, vLLM a fresh `cache_salt`), median of a few rounds.
"""

from __future__ import annotations

import itertools
import re
import secrets
import statistics
import time
from typing import Any

import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.request import ApiRequest

PREFIX_WORDS = 700  # about 1270 tokens of the synthesized tokenizer
ROUNDS = 3
MAX_CACHED_RATIO = 0.7  # cached median time / uncached median time at most this: "measurably faster"
MIN_CACHED_SHARE = 0.5  # reported cached tokens at least this share of the uncached prompt's tokens
METRICS_SETTLE_S = 0.3  # the engine's counters are updated just after the answer


def _prefix() -> str:
    """A long prefix starting with a fresh nonce, so nothing from an earlier run is cached."""
    words = itertools.islice(
        itertools.cycle(["a", "blue", "bird", "flew", "over", "the", "old", "stone", "wall"]), PREFIX_WORDS
    )
    return f"{secrets.randbelow(10**9)} " + " ".join(words)


def _counters(session: EngineSession) -> dict[str, float]:
    """Every Prometheus counter the engine exposes (empty when it has no /metrics)."""
    status, text = session.client.get("/metrics", check=False)
    if status != 200 or not isinstance(text, str):
        return {}
    totals: dict[str, float] = {}
    for match in re.finditer(r"^([a-zA-Z_:][\w:]*_total)(?:\{[^}]*\})?\s+(\S+)$", text, re.M):
        totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
    return totals


def _timed(session: EngineSession, request: ApiRequest) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    _, response = session.client.send(request)
    return time.perf_counter() - started, response


def check_prefix_caching(session: EngineSession) -> Verdict:
    """Reported and faster -> pass; faster but not reported -> partial; otherwise fail."""
    adapter, model, prefix = session.adapter, session.served_model, _prefix()
    rounds = []
    for index in range(ROUNDS):
        uncached_s, uncached = _timed(session, adapter.prefix_cache_request(model, f"{prefix} u{index}", False))
        _timed(session, adapter.prefix_cache_request(model, f"{prefix} w{index}", True))  # the prefix is now cached
        before = _counters(session)
        cached_s, cached = _timed(session, adapter.prefix_cache_request(model, f"{prefix} c{index}", True))
        time.sleep(METRICS_SETTLE_S)
        after = _counters(session)
        delta = {name: after[name] - before.get(name, 0.0) for name in after if after[name] != before.get(name, 0.0)}
        rounds.append(
            {
                "uncached_s": round(uncached_s, 4),
                "cached_s": round(cached_s, 4),
                "prompt_tokens": (uncached.get("usage") or {}).get("prompt_tokens"),
                "uncached_reported": adapter.cached_prompt_tokens(uncached, {}),
                "cached_reported": adapter.cached_prompt_tokens(cached, delta),
            }
        )
    uncached_median = statistics.median(r["uncached_s"] for r in rounds)
    cached_median = statistics.median(r["cached_s"] for r in rounds)
    ratio = cached_median / uncached_median
    prompt_tokens = max((r["prompt_tokens"] or 0) for r in rounds)
    reported = [r["cached_reported"] for r in rounds]
    reported_ok = prompt_tokens > 0 and all(
        value is not None and value >= MIN_CACHED_SHARE * prompt_tokens for value in reported
    )
    faster = ratio <= MAX_CACHED_RATIO
    numbers = {
        "rounds": rounds,
        "uncached_median_s": round(uncached_median, 4),
        "cached_median_s": round(cached_median, 4),
        "time_ratio": round(ratio, 3),
        "max_ratio": MAX_CACHED_RATIO,
        "prompt_tokens": prompt_tokens,
        "cached_tokens_reported": reported,
        "reported": reported_ok,
        "faster": faster,
    }
    status = Status.PASS if reported_ok and faster else Status.PARTIAL if faster else Status.FAIL
    reason = (
        f"shared {prompt_tokens}-token prefix: engine reports {reported} cached tokens; cached request "
        f"{cached_median * 1000:.0f} ms vs {uncached_median * 1000:.0f} ms with the cache bypassed "
        f"(ratio {ratio:.2f}, needs <= {MAX_CACHED_RATIO})"
    )
    if reported_ok and not faster:
        reason = "cached tokens reported but the prefill is not faster: " + reason
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("prefix_caching")
def test_prefix_caching(probe):
    probe.record(check_prefix_caching(probe.engine()))
