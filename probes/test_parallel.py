"""Tensor and pipeline parallelism: the split is real, the output still right, and the stages work at once.

Three questions, each answered without asking the engine whether it split:
1. Did it split? One process per rank or stage must exist (the OS's process table), each holding a
   fair share of the weights by the engine's own load report.
2. Is the output still right? Greedy output against the HF reference, as for the model families.
   What each stage holds tells the kind apart where the engine's load report says it (whole layers for a
   pipeline split, shards of every layer for a tensor split): a layer split asked for as tensor fails.
   Does every stage work for every token? Each stage is stopped (SIGSTOP) for PAUSE_S during a stream and
   continued: the stream must stall with it. A stage that does busywork, or none, while another computes
   alone lets tokens go on arriving, and fails. This decides where CPU time cannot: ranks that spin.
3. Do the stages work at the same time? While CONCURRENCY identical streams run, every stage's CPU
   time is sampled each SAMPLE_S. Pipelining (or tensor parallelism) keeps both stages busy in the
   same intervals; a sequential split alternates between them. CPU time is work only for a stage that
   waits by blocking: a stage whose main thread never gives up its CPU (fewer than MIN_SWITCHES_PER_STEP
   voluntary context switches per decode step) spins while it waits, and looks busy whether it works
   or not (measured: vLLM CPU's PP=2 ranks read 0.97 overlap with one stream, which no pipeline can
   overlap, and 0 voluntary switches), so its high overlap is no evidence and the verdict is an error.
   The overlap fraction decides the mark (seed: ✅ pipelined, 🟠 "sequentially processed" split, ❌ no
   split); the band between the two thresholds is inconclusive and recorded as an error, never as a mark.
   The throughput against the same workload on one stage (a control launch in the same run) is recorded beside it.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

import pytest

from harness.engines.stages import Stage, pause_during, resident_bytes, sample_busy, voluntary_switches
from harness.loadgen import run_load
from harness.outcomes import NotMeasurable
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from probes.test_model_families import check_matches_reference

SPLIT = 2
CONCURRENCY = 8
TOKENS = 128
MIN_SAMPLED_S = 3.0  # the workload repeats until the stages were sampled for at least this long
PROMPT = "the cat sat on the mat and"
SAMPLE_S = 0.05
BUSY_SHARE = 0.3  # a stage is busy in an interval when it used at least this share of one core
PIPELINED_OVERLAP = 0.6  # both stages busy in at least this share of the busy intervals: they work at once
SEQUENTIAL_OVERLAP = 0.35  # at most this share: they take turns
MIN_SHARE = 0.5 / SPLIT  # each stage holds, and does, at least half of an even share (weights, CPU time)
MIN_SWITCHES_PER_STEP = 0.1  # a stage that blocks to wait switches at least once per step; far fewer: it spins
PAUSE_S = 0.4  # each stage is stopped this long during a stream
STALL_SHARE = 0.75  # no token for at least this share of the pause: the generation stalled with the stage
PACE_TOKENS = 32  # the short stream that gives the first-token time and pace
LEAD_TOKENS = 16  # the pause starts after about this many tokens
TAIL_S = 1.0  # and the stream goes on about this long after it
MAX_PAUSE_TOKENS = 1500  # within the models' 2048-token context
PAUSE_TRIES = 3
OUTSIDE_FACTOR = 1.5  # and that silence is this many times the stream's longest gap without a pause (bursts, load)
HOLDINGS = {"tensor": "shards of every layer", "pipeline": "whole layers"}  # what each stage holds, by split


def _workload(session: EngineSession, min_s: float = 0.0) -> dict[str, float]:
    """Rounds of CONCURRENCY identical fixed-length completions at once, repeated for at least `min_s`;
    output tokens per second."""
    request = session.adapter.fixed_length_request(session.served_model, PROMPT, TOKENS, stream=False)
    started = time.perf_counter()
    tokens = rounds = 0
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        while rounds == 0 or time.perf_counter() - started < min_s:
            answers = list(pool.map(lambda _: session.client.send(request)[1], range(CONCURRENCY)))
            tokens += sum((answer.get("usage") or {}).get("completion_tokens") or TOKENS for answer in answers)
            rounds += 1
    elapsed = time.perf_counter() - started
    return {
        "rounds": rounds,
        "output_tokens": tokens,
        "elapsed_s": round(elapsed, 3),
        "tokens_per_s": round(tokens / elapsed, 1),
    }


def _stream(session: EngineSession, tokens: int) -> Any:
    """One streamed fixed-length completion, its token arrival times stamped here (perf_counter)."""
    request = session.adapter.fixed_length_request(session.served_model, PROMPT, tokens, stream=True)
    return asyncio.run(run_load(session.running.base_url, [request], concurrency=1)).results[0]


def stage_pause(session: EngineSession, stage: Stage) -> dict[str, Any]:
    """Stop `stage` (SIGSTOP) for PAUSE_S during a stream and continue it: a stage that works for every token
    stalls the generation with it (no token for at least STALL_SHARE of the pause, and OUTSIDE_FACTOR times the
    stream's longest gap without a pause), one that does not lets tokens go on arriving. The stream is sized from
    a short one (its first-token time and pace) so that tokens arrive before, during and after the pause; up to
    PAUSE_TRIES streams until one brackets the pause and tells."""
    probe = _stream(session, PACE_TOKENS)
    if not probe.ok or len(probe.timing.token_times) < 2:
        raise NotMeasurable(f"a short stream to time the pause failed: {probe.error}")
    times = probe.timing.token_times
    pace = (times[-1] - times[0]) / (len(times) - 1)  # the mean: an engine that sends tokens in bursts has median 0
    lead = probe.timing.ttft_s + LEAD_TOKENS * pace
    tokens = min(MAX_PAUSE_TOKENS, int((lead + PAUSE_S + TAIL_S) / max(pace, 1e-4)) + LEAD_TOKENS)
    outcome: dict[str, Any] = {"stage": stage.name, "pause_s": PAUSE_S, "pace_s": round(pace, 5), "tokens": tokens}
    for attempt in range(1, PAUSE_TRIES + 1):
        result, began, ended = pause_during(stage.pid, lambda: _stream(session, tokens), lead * attempt, PAUSE_S)
        times = result.timing.token_times if result.ok else []
        before = [t for t in times if t <= began]
        after = [t for t in times if t >= ended]
        outcome["attempts"] = attempt
        if not result.ok or not before or not after:
            outcome["unbracketed"] = f"{len(before)} tokens before the pause, {len(after)} after, error {result.error}"
            continue
        during = [t for t in times if began < t < ended]
        # the longest silence that overlaps the pause: from the last token before it to the first one after it
        edges = [before[-1], *during, after[0]]
        silence = max(later - earlier for earlier, later in zip(edges, edges[1:]))
        # the gaps wholly before or wholly after the pause: what the stream does without it
        outside = [b - a for a, b in zip(times, times[1:]) if b <= began or a >= ended]
        longest_outside = max(outside, default=0.0)
        outcome |= {
            "tokens_during_pause": len(during),
            "longest_silence_s": round(silence, 3),
            "longest_gap_outside_s": round(longest_outside, 3),
            "median_gap_outside_s": round(statistics.median(outside), 5) if outside else None,
        }
        outcome.pop("unbracketed", None)
        outcome.pop("unclear", None)
        if silence < STALL_SHARE * PAUSE_S:
            return outcome | {"stalled": False}
        if silence >= OUTSIDE_FACTOR * longest_outside:
            return outcome | {"stalled": True}
        outcome["unclear"] = f"the stream paused {longest_outside:.3f} s on its own, near the pause's silence"
    return outcome


def _weight_shares(stages: list[Stage]) -> list[float] | None:
    """Each stage's share of the weights by the engine's load report; None when it does not report them all."""
    weights = [stage.weight_bytes for stage in stages]
    if not all(weights):
        return None
    total = sum(weight for weight in weights if weight)
    return [round((weight or 0) / total, 3) for weight in weights]


def check_parallel(session: EngineSession) -> Verdict:
    """Pass (✅, or 🟠 for a sequential split): split verified, output right, overlap decisive. Fail: no split, a
    stage that holds or does no fair share, or wrong output. Error: the overlap falls in the inconclusive band."""
    if session.running.pid is None:
        raise NotMeasurable(
            "the engine's processes are not visible from here (attach mode or a container), so "
            "its split cannot be verified"
        )
    stages = session.adapter.stages(session.running)
    weights = _weight_shares(stages)
    numbers: dict[str, object] = {
        "stages": [stage.name for stage in stages],
        "stage_pids": [stage.pid for stage in stages],
        "stage_weight_bytes": [stage.weight_bytes for stage in stages],
        "stage_weight_shares": weights,
        "stage_rss_bytes": [resident_bytes(stage.pid) for stage in stages],
    }
    if len(stages) < SPLIT:
        return Verdict(
            status=Status.FAIL,
            reason=f"no split: {len(stages)} stage process(es) where {SPLIT} were asked for",
            evidence=Evidence(numbers=numbers),
        )
    reference = check_matches_reference(session, session.model.references)
    numbers["reference"] = reference.evidence.numbers
    if reference.status is not Status.PASS:
        return Verdict(
            status=Status.FAIL,
            reason=f"split over {len(stages)} stages, but the output is wrong: {reference.reason}",
            evidence=Evidence(numbers=numbers),
        )
    asked = "tensor" if session.spec.tensor_parallel > 1 else "pipeline"
    holdings = session.adapter.split_holdings(session.running)
    numbers |= {"asked_split": asked, "stage_holdings": holdings}
    if holdings is not None and holdings != HOLDINGS[asked]:
        return Verdict(
            status=Status.FAIL,
            reason=f"asked for {asked} parallel, but by the engine's load report each stage holds "
            f"{holdings} (a {'layer' if holdings == 'layers' else 'tensor'} split)",
            evidence=Evidence(numbers=numbers),
        )
    pauses = [stage_pause(session, stage) for stage in stages]
    numbers["stage_pause"] = pauses
    idle = [pause for pause in pauses if pause.get("stalled") is False]
    if idle:
        return Verdict(
            status=Status.FAIL,
            reason="no real split: generation went on while "
            + ", ".join(
                f"{pause['stage']} was stopped for {PAUSE_S} s ({pause['tokens_during_pause']} tokens meanwhile, "
                f"longest silence {pause['longest_silence_s']} s)"
                for pause in idle
            )
            + ": a stage that does no work for every token",
            evidence=Evidence(numbers=numbers),
        )
    stalled = len(pauses) == len(stages) and all(pause.get("stalled") for pause in pauses)
    silences = [pause.get("longest_silence_s") for pause in pauses]
    _workload(session)  # warm-up
    switches_before = [voluntary_switches(stage.pid) for stage in stages]
    trace, load = sample_busy(stages, lambda: _workload(session, MIN_SAMPLED_S), interval_s=SAMPLE_S)
    steps = load["output_tokens"] / CONCURRENCY  # decode steps at least, every stream in every step
    switches_per_step = [
        None if before is None or after is None else round((after - before) / steps, 3)
        for before, after in zip(switches_before, (voluntary_switches(s.pid) for s in stages))
    ]
    spinning = [
        name
        for name, rate in zip((stage.name for stage in stages), switches_per_step)
        if rate is not None and rate < MIN_SWITCHES_PER_STEP
    ]
    overlap = trace.overlap_fraction(BUSY_SHARE)
    compute = trace.cpu_share()
    numbers.update(
        {
            "workload": load,
            "concurrency": CONCURRENCY,
            "tokens_per_request": TOKENS,
            "sample_s": SAMPLE_S,
            "busy_share": BUSY_SHARE,
            "intervals": len(trace.cpu_s),
            "overlap_fraction": None if overlap is None else round(overlap, 3),
            "stage_cpu_shares": compute,
            "voluntary_switches_per_step": switches_per_step,
            "spinning_stages": spinning,
            "thresholds": {
                "pipelined": PIPELINED_OVERLAP,
                "sequential": SEQUENTIAL_OVERLAP,
                "min_share": MIN_SHARE,
                "min_switches_per_step": MIN_SWITCHES_PER_STEP,
            },
        }
    )
    unfair = [name for name, share in zip(numbers["stages"], compute) if share < MIN_SHARE]
    unfair += [name for name, share in zip(numbers["stages"], weights or []) if share < MIN_SHARE]
    if unfair:
        return Verdict(
            status=Status.FAIL,
            reason=f"no real split: {', '.join(sorted(set(unfair)))} held or did less "
            f"than {MIN_SHARE:.0%} (weights {weights}, compute {compute})",
            evidence=Evidence(numbers=numbers),
        )
    held = f"weight shares {weights}" if weights else "the engine does not report per-stage weights"
    if holdings:
        held += f", each stage holds {holdings}"
    split = f"split verified over {len(stages)} stages ({held}; compute shares {compute}), output matches"
    if spinning and stalled:
        return Verdict(
            status=Status.PASS,
            reason=f"{split}; every stage stalled the stream when stopped for {PAUSE_S} s (silences {silences} s): "
            f"each works for every token ({', '.join(spinning)} spin while they wait, so their CPU overlap "
            f"{overlap} says nothing about whether they work at once)",
            evidence=Evidence(numbers=numbers),
        )
    if overlap is not None and overlap >= PIPELINED_OVERLAP and spinning:
        return Verdict(
            status=Status.ERROR,
            reason=f"{split}; stages busy at once in {overlap:.0%} of busy intervals, "
            f"but {', '.join(spinning)} never blocked to wait ({switches_per_step} voluntary context switches "
            "per step): a stage that spins looks busy whether it works or not, so this is no evidence "
            "that the stages work at once",
            evidence=Evidence(numbers=numbers),
        )
    if overlap is not None and overlap >= PIPELINED_OVERLAP:
        return Verdict(
            status=Status.PASS,
            reason=f"{split}; stages busy at once in {overlap:.0%} of busy intervals",
            evidence=Evidence(numbers=numbers),
        )
    if overlap is not None and overlap <= SEQUENTIAL_OVERLAP:
        numbers["seed_mark"] = "🟠"
        return Verdict(
            status=Status.PASS,
            reason=f"{split}; stages take turns (busy at once in only {overlap:.0%} "
            "of busy intervals): a sequentially processed split",
            evidence=Evidence(numbers=numbers),
        )
    return Verdict(
        status=Status.ERROR,
        reason=f"{split}; overlap {overlap} is between the sequential "
        f"({SEQUENTIAL_OVERLAP}) and pipelined ({PIPELINED_OVERLAP}) thresholds: inconclusive on a loaded host",
        evidence=Evidence(numbers=numbers),
    )


@pytest.mark.cpu
@pytest.mark.parametrize(
    "kind",
    [
        pytest.param(
            "tensor",
            id="tensor",
            marks=[pytest.mark.launch(tensor_parallel=SPLIT), pytest.mark.feature("tensor_parallel")],
        ),
        pytest.param(
            "pipeline",
            id="pipeline",
            marks=[pytest.mark.launch(pipeline_parallel=SPLIT), pytest.mark.feature("pipeline_parallel")],
        ),
    ],
)
def test_parallel(probe, kind):
    session = probe.engine()
    first = check_parallel(session)
    if "workload" not in first.evidence.numbers:  # no verified split to compare with one stage
        probe.record(first)
        return
    one_stage = _workload(probe.engine(replace(probe.spec, tensor_parallel=1, pipeline_parallel=1)), MIN_SAMPLED_S)
    numbers = first.evidence.numbers
    numbers["one_stage_workload"] = one_stage
    numbers["throughput_ratio"] = round(numbers["workload"]["tokens_per_s"] / one_stage["tokens_per_s"], 3)
    probe.record(first)
