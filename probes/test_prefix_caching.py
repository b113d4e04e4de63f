"""Prefix caching: a request whose long prefix the engine has seen is served from its cache.

Every request is the same one-token completion with the cache on: nothing in a request says which are
the controls. Each round sends a warm-up of a long and of a short prefix, then, in shuffled order:
- the hits: the same prefixes again with a new ending;
- the fresh controls: prefixes of the same length in tokens whose start (a nonce, the same words in a
  new order) is new, with the same ending.
Decision from timing alone, on each kind's fastest time over the rounds (the machine's own load only ever
adds time, and a server cannot answer faster than it computes):
- the long hit is measurably faster than its fresh control (ratio <= MAX_CACHED_RATIO);
- a hit's time does not grow with the length of what it took from the cache: long hit minus short hit
  is at most MAX_HIT_SLOPE of long fresh minus short fresh. A server that only slows down what it
  guesses are controls still prefills every hit, so its hits grow with their prefix as its controls do.
The engine's reported cached tokens (`usage.prompt_tokens_details.cached_tokens`, llama-server's
`timings.cache_n`, vLLM's prefix-cache hit counter) only corroborate: timing holds and they report at
least half the prefix -> pass; timing holds, not reported -> partial; timing fails -> fail.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from typing import Any

import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict

BODY = ["a", "blue", "bird", "flew", "over", "the", "old", "stone", "wall"]
LONG_WORDS = 620  # about 1300 tokens of the synthesized tokenizer
SHORT_WORDS = 30
# The nonce: these words in a fresh order (12! orders). Every order has the same tokens in number on a
# tokenizer that splits at spaces first, so a fresh control is exactly as long as its hit.
NONCE_WORDS = ["river", "garden", "yellow", "window", "paper", "music", "summer", "silver", "forest", "table", "letter"]
NONCE_WORDS += ["morning"]
ROUNDS = 5
MAX_CACHED_RATIO = 0.7  # long hit / long fresh control, fastest of each: "measurably faster"
MAX_HIT_SLOPE = 0.3  # (long hit - short hit) / (long fresh - short fresh), fastest of each
MIN_CACHED_SHARE = 0.5  # reported cached tokens at least this share of the long prompt's tokens
METRICS_SETTLE_S = 0.3  # the engine's counters are updated just after the answer


def _prefix(words: int) -> str:
    """A prefix of `words` body words after a nonce that no earlier request started with."""
    order = random.Random(secrets.randbits(64)).sample(NONCE_WORDS, len(NONCE_WORDS))
    return "Note: " + " ".join(order) + ". " + " ".join(BODY[i % len(BODY)] for i in range(words))


def _counters(session: EngineSession) -> dict[str, float]:
    """Every Prometheus counter the engine exposes (empty when it has no /metrics)."""
    status, text = session.client.get("/metrics", check=False)
    if status != 200 or not isinstance(text, str):
        return {}
    totals: dict[str, float] = {}
    for match in re.finditer(r"^([a-zA-Z_:][\w:]*_total)(?:\{[^}]*\})?\s+(\S+)$", text, re.M):
        totals[match.group(1)] = totals.get(match.group(1), 0.0) + float(match.group(2))
    return totals


def _timed(session: EngineSession, prompt: str) -> dict[str, Any]:
    """One request: its wall time, prompt tokens and the cached tokens the engine reports for it."""
    before = _counters(session)
    started = time.perf_counter()
    _, response = session.client.send(session.adapter.prefix_cache_request(session.served_model, prompt, True))
    elapsed = time.perf_counter() - started
    time.sleep(METRICS_SETTLE_S)
    after = _counters(session)
    delta = {name: after[name] - before.get(name, 0.0) for name in after if after[name] != before.get(name, 0.0)}
    return {
        "s": round(elapsed, 4),
        "prompt_tokens": (response.get("usage") or {}).get("prompt_tokens"),
        "cached_reported": session.adapter.cached_prompt_tokens(response, delta),
    }


def _round(session: EngineSession, index: int) -> dict[str, dict[str, Any]]:
    """One round: warm-ups, then the hits and fresh controls of both lengths in a shuffled order."""
    long_prefix, short_prefix = _prefix(LONG_WORDS), _prefix(SHORT_WORDS)
    _timed(session, f"{long_prefix} w{index}")
    _timed(session, f"{short_prefix} w{index}")
    ending = f" c{index}"
    prompts = {
        "long_hit": long_prefix + ending,
        "long_fresh": _prefix(LONG_WORDS) + ending,
        "short_hit": short_prefix + ending,
        "short_fresh": _prefix(SHORT_WORDS) + ending,
    }
    names = random.sample(list(prompts), len(prompts))
    return {name: _timed(session, prompts[name]) for name in names}


def check_prefix_caching(session: EngineSession) -> Verdict:
    """Faster on hits and flat in the hit length, reported -> pass; not reported -> partial; otherwise fail."""
    rounds = [_round(session, index) for index in range(ROUNDS)]
    fastest = {name: min(r[name]["s"] for r in rounds) for name in rounds[0]}
    ratio = fastest["long_hit"] / fastest["long_fresh"]
    fresh_growth = fastest["long_fresh"] - fastest["short_fresh"]
    hit_growth = fastest["long_hit"] - fastest["short_hit"]
    slope = hit_growth / fresh_growth if fresh_growth > 0 else float("inf")
    prompt_tokens = max((r["long_hit"]["prompt_tokens"] or 0) for r in rounds)
    reported = [r["long_hit"]["cached_reported"] for r in rounds]
    reported_ok = prompt_tokens > 0 and all(
        value is not None and value >= MIN_CACHED_SHARE * prompt_tokens for value in reported
    )
    faster = ratio <= MAX_CACHED_RATIO
    flat = slope <= MAX_HIT_SLOPE
    numbers = {
        "rounds": [{name: r[name] for name in sorted(r)} for r in rounds],
        "fastest_s": {name: round(value, 4) for name, value in fastest.items()},
        "time_ratio": round(ratio, 3),
        "max_ratio": MAX_CACHED_RATIO,
        "hit_slope": round(slope, 3),
        "max_hit_slope": MAX_HIT_SLOPE,
        "prompt_tokens": prompt_tokens,
        "fresh_prompt_tokens": [r["long_fresh"]["prompt_tokens"] for r in rounds],
        "cached_tokens_reported": reported,
        "reported": reported_ok,
        "faster": faster,
        "flat": flat,
    }
    timing = faster and flat
    status = Status.PASS if timing and reported_ok else Status.PARTIAL if timing else Status.FAIL
    reason = (
        f"{prompt_tokens}-token prefix seen before: {fastest['long_hit'] * 1000:.0f} ms vs "
        f"{fastest['long_fresh'] * 1000:.0f} ms for a fresh prefix of the same length (ratio {ratio:.2f}, needs <= "
        f"{MAX_CACHED_RATIO}); hits grow by {slope:.2f} of what fresh prompts grow from the short to the long "
        f"prefix (needs <= {MAX_HIT_SLOPE}); engine reports {reported} cached tokens"
    )
    if reported_ok and not timing:
        reason = "cached tokens reported but the timing shows no cache: " + reason
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("prefix_caching")
def test_prefix_caching(probe):
    probe.record(check_prefix_caching(probe.engine()))
