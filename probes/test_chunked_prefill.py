"""Chunked prefill (the table's "Dyn. SplitFuse"): a long prompt does not stall running decodes.

A request decodes steadily; meanwhile a long prompt arrives. An engine that prefills the whole
prompt in one forward pass stalls the decode for the whole prefill; one that splits the prompt
into chunks and fuses them with decode steps keeps the decode's gaps short. The stall is measured
against the same prompt's prefill time alone, on the same engine in the same run, and the verdict
comes from the contrast with a control launched with chunking off (one chunk as large as the context).
"""

from __future__ import annotations

import itertools
import math
import secrets
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from harness.engines.base import LaunchSpec
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.streaming_socket import stream_with_socket

CHUNK_TOKENS = 64
WHOLE_PROMPT_TOKENS = 2048  # the control's chunk: as large as the models' context, so any prompt is one step
CONTROL_SPEC = LaunchSpec(prefill_chunk_tokens=WHOLE_PROMPT_TOKENS)
PROMPT_WORDS = 700  # about 1270 tokens with the synthesized tokenizer
MAX_PROMPT_WORDS = 1000  # about 1810 tokens: the prompt and its one generated token fit a 2048-token context
MIN_PREFILL_STEPS = 20  # the prompt's prefill alone must last this many decode steps
DECODE_TOKENS_MAX = 1900  # fits a 2048-token context after a two-token prompt
PACE_TOKENS = 256  # a lone decode this long gives the engine's decode step
PACE_TRIES = 3  # a lone decode read in one piece (llama.cpp's tiny model: 64 tokens in one read, in CI) shows no pace
DECODE_AFTER_PREFILL_S = 0.3  # the decode is cut this long after the prefill's stream ended
ALONE_REPEATS = 2  # the prefill alone is timed this often; the fastest counts
MEASUREMENTS = 2
ATTEMPTS = 6
RETRY_PAUSE_S = 2.0  # between inconclusive attempts: an engine whose API server lagged gets time to catch up
STALL_SHARE = 0.5  # a decode gap above this share of the prefill time means the prefill was not split
CONTRAST = 2.0  # the control's stall must be at least this many times the chunked engine's
BURST_SHARE = 0.5  # more decode gaps than this exactly zero (events several to a read): the pace is not seen
STREAM_TIMEOUT_S = 300.0


def _long_prompt(words: int) -> str:
    """A long prompt that starts with a fresh nonce, so no prefix cache can shorten its prefill."""
    text = itertools.islice(
        itertools.cycle(["the", "cat", "sat", "on", "a", "red", "mat", "and", "ate", "fish"]), words
    )
    return f"{secrets.randbelow(10**9)} " + " ".join(text)


def _prefill_alone_s(session: EngineSession, words: int) -> float:
    """The fastest of ALONE_REPEATS times to first token of a fresh `words`-word prompt with nothing else running."""
    request = lambda: session.adapter.fixed_length_request(session.served_model, _long_prompt(words), 1, stream=True)  # noqa: E731
    return min(
        stream_with_socket(session.running.base_url, request(), timeout_s=STREAM_TIMEOUT_S).ttft_s
        for _ in range(ALONE_REPEATS)
    )


def _decode_step_s(session: EngineSession) -> float:
    """The mean pace of a lone decode (first to last token, so events read several at a time still count); 0.0
    when PACE_TRIES decodes each arrived in a single read."""
    request = session.adapter.fixed_length_request(session.served_model, "the cat", PACE_TOKENS, stream=True)
    for _ in range(PACE_TRIES):
        times = stream_with_socket(session.running.base_url, request, timeout_s=STREAM_TIMEOUT_S).token_times
        if len(times) > 1 and times[-1] > times[0]:
            return (times[-1] - times[0]) / (len(times) - 1)
    return 0.0


def size_prompt(session: EngineSession) -> dict[str, Any]:
    """Prompt words whose prefill alone lasts at least MIN_PREFILL_STEPS decode steps on this engine."""
    _prefill_alone_s(session, PROMPT_WORDS)  # warm-up
    step, words = _decode_step_s(session), PROMPT_WORDS
    prefill = _prefill_alone_s(session, words)
    if step > 0 and prefill < MIN_PREFILL_STEPS * step and words < MAX_PROMPT_WORDS:
        words = min(MAX_PROMPT_WORDS, math.ceil(words * 1.3 * MIN_PREFILL_STEPS * step / prefill))
        prefill = _prefill_alone_s(session, words)
    return {
        "prompt_words": words,
        "decode_step_s": round(step, 5),
        "sizing_prefill_s": round(prefill, 4),
        "prefill_steps": round(prefill / step, 1) if step > 0 else None,
    }


def _measure(session: EngineSession, words: int, alone_s: float) -> dict[str, Any]:
    """One attempt. Both streams are read by bare sockets (`harness.wire.streaming_socket`), the decode in its own
    thread, so the client's own work (sending a long prompt) never shows up as a gap in the decode."""
    adapter, model, url = session.adapter, session.served_model, session.running.base_url
    decoding, cut = threading.Event(), threading.Event()
    with ThreadPoolExecutor(max_workers=1) as reader:
        decode_future = reader.submit(
            stream_with_socket,
            url,
            adapter.fixed_length_request(model, "the cat", DECODE_TOKENS_MAX, stream=True),
            decoding,
            timeout_s=STREAM_TIMEOUT_S,
            stop=cut,
        )
        try:
            if not decoding.wait(timeout=STREAM_TIMEOUT_S):
                raise TimeoutError(f"the decode sent no token within {STREAM_TIMEOUT_S:.0f} s")
            time.sleep(0.05)
            prefill = stream_with_socket(
                url,
                adapter.fixed_length_request(model, _long_prompt(words), 1, stream=True),
                timeout_s=STREAM_TIMEOUT_S,
            )
            time.sleep(DECODE_AFTER_PREFILL_S)
        finally:
            cut.set()
        decode = decode_future.result(timeout=STREAM_TIMEOUT_S)
    overlapping = [
        later - earlier
        for earlier, later in zip(decode.token_times, decode.token_times[1:])
        if later >= prefill.sent_at and earlier <= prefill.finished_at
    ]
    gaps = decode.gaps_s
    longest = max(overlapping) if overlapping else None
    return {
        "prefill_alone_s": round(alone_s, 4),
        "prefill_ttft_s": round(prefill.ttft_s, 4),
        "max_decode_gap_during_prefill_s": round(longest, 4) if longest is not None else None,
        "stall_share": round(longest / alone_s, 3) if longest is not None else None,
        "decode_outlived_prefill": bool(decode.token_times) and decode.token_times[-1] > prefill.finished_at,
        "decode_tokens_seen": len(decode.token_times),
        "median_decode_gap_s": round(statistics.median(gaps), 5) if gaps else None,
        "zero_gap_share": round(sum(gap == 0 for gap in gaps) / len(gaps), 3) if gaps else 0.0,
        "prompt_tokens": prefill.prompt_tokens,
    }


def _inconclusive(numbers: dict[str, Any]) -> str | None:
    """Why a measurement cannot tell chunked from whole prefill; None when it can."""
    if not numbers["decode_outlived_prefill"] or numbers["max_decode_gap_during_prefill_s"] is None:
        return "the decode did not overlap the prefill"
    if numbers["zero_gap_share"] > BURST_SHARE:
        return (
            "the decode arrived in bursts (most of its events shared a read), so its gaps do not show the engine's pace"
        )
    if (
        numbers["median_decode_gap_s"] is None
        or numbers["prefill_alone_s"] < MIN_PREFILL_STEPS * numbers["median_decode_gap_s"]
    ):
        return f"the prefill alone lasted under {MIN_PREFILL_STEPS} decode steps, too short to tell chunked from whole"
    return None


def measure_stall(session: EngineSession, words: int) -> dict[str, Any]:
    """The least stalled of MEASUREMENTS conclusive measurements (an engine that prefills in one piece stalls
    the decode every time, so more measurements cannot make it pass; a busy 2-core host sometimes stalls one),
    trying up to ATTEMPTS times; `conclusive` is False when no attempt could tell."""
    measured: list[dict[str, Any]] = []
    inconclusive: list[str] = []
    alone_s = _prefill_alone_s(session, words)
    for attempt in range(1, ATTEMPTS + 1):
        numbers = _measure(session, words, alone_s) | {"attempt": attempt}
        why = _inconclusive(numbers)
        if why is None:
            measured.append(numbers)
            if len(measured) == MEASUREMENTS:
                break
        else:
            inconclusive.append(why)
            time.sleep(RETRY_PAUSE_S)
    if not measured:
        return numbers | {"conclusive": False, "inconclusive": inconclusive}
    best = min(measured, key=lambda m: m["stall_share"])
    return best | {
        "conclusive": True,
        "stall_shares": [m["stall_share"] for m in measured],
        "inconclusive": inconclusive,
    }


def check_chunked_prefill(chunked: Callable[[], EngineSession], control: Callable[[], EngineSession]) -> Verdict:
    """Pass: with chunking on, the longest decode gap during the prefill stays under STALL_SHARE of the prompt's
    prefill time alone, and the control (chunking off) stalls at least CONTRAST times longer; fail: the decode
    stalls as if the prompt were prefilled in one piece. The prompt is sized on the control first.
    `chunked` and `control` start (or return) the two engines, one after the other."""
    control_session = control()
    sizing = size_prompt(control_session)
    whole = measure_stall(control_session, sizing["prompt_words"])
    chunked_session = chunked()
    split = measure_stall(chunked_session, sizing["prompt_words"])
    flags = chunk_flags(chunked_session)
    batches = engine_batches(chunked_session)
    evidence = Evidence(
        numbers={
            "sizing": sizing,
            "chunked": split,
            "control": whole,
            "launch_flags": flags,
            "engine_batches": {key: value for key, value in batches.items() if key != "log"},
            "thresholds": {"stall_share": STALL_SHARE, "contrast": CONTRAST, "min_prefill_steps": MIN_PREFILL_STEPS},
        },
        engine_log=batches.get("log", []),
    )
    if sizing["prefill_steps"] is None or sizing["prefill_steps"] < MIN_PREFILL_STEPS:
        return Verdict(
            status=Status.ERROR,
            reason=f"the longest prompt that fits ({sizing['prompt_words']} words) "
            f"prefills in {sizing['prefill_steps']} decode steps, under {MIN_PREFILL_STEPS}",
            evidence=evidence,
        )
    for name, numbers in (("control (chunking off)", whole), ("chunked engine", split)):
        if not numbers["conclusive"]:
            return Verdict(
                status=Status.ERROR,
                reason=f"{name}: {numbers['inconclusive'][-1]} (all {ATTEMPTS} attempts)",
                evidence=evidence,
            )
    if whole["stall_share"] < STALL_SHARE:
        return Verdict(
            status=Status.ERROR,
            reason=f"the control with chunking off stalled the decode for only "
            f"{whole['stall_share']:.0%} of the prefill, so the contrast cannot tell",
            evidence=evidence,
        )
    share, tokens = split["stall_share"], split["prompt_tokens"]
    if share >= STALL_SHARE:
        return Verdict(
            status=Status.FAIL,
            reason=f"decode stalled for {share:.0%} of a {tokens}-token prefill (control "
            f"with chunking off: {whole['stall_share']:.0%}): the prompt was processed in one piece",
            evidence=evidence,
        )
    if share * CONTRAST > whole["stall_share"]:
        return Verdict(
            status=Status.ERROR,
            reason=f"decode stalled for {share:.0%} of the prefill against the "
            f"control's {whole['stall_share']:.0%}: not clearly less, inconclusive",
            evidence=evidence,
        )
    needed = f"; needs the launch flags `{' '.join(flags)}`" if flags else ""
    fused = ""
    if batches.get("mixed"):
        fused = (
            f"; the engine's log: {batches['mixed']} prompt chunks shared a forward pass with decode tokens "
            f"(under n_batch = {batches['n_batch']}), {batches['alone']} went alone"
        )
    return Verdict(
        status=Status.PASS,
        reason=f"decode kept running during a {tokens}-token prefill: longest gap "
        f"{share:.0%} of the prefill time alone, against {whole['stall_share']:.0%} with chunking off{needed}{fused}",
        evidence=evidence,
    )


def chunk_flags(session: EngineSession) -> list[str]:
    """The launch flags that set the chunk: every flag of the session's command whose value is the chunk size."""
    command, chunk = session.launch.command, str(session.spec.prefill_chunk_tokens)
    return [part for flag, value in zip(command, command[1:]) if value == chunk for part in (flag, value)]


def engine_batches(session: EngineSession) -> dict[str, Any]:
    """How the engine's own log says it batched the prompts (not visible in attach mode)."""
    return {} if session.running.launcher == "attach" else session.adapter.prefill_batches(session.running)


@pytest.mark.cpu
@pytest.mark.feature("chunked_prefill")
@pytest.mark.launch(prefill_chunk_tokens=CHUNK_TOKENS)
def test_chunked_prefill(probe):
    probe.record(check_chunked_prefill(probe.engine, lambda: probe.engine(CONTROL_SPEC)))
