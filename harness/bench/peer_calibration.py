"""`infercheck bench calibrate`: every installed load generator against the null engine, in one run.

Accuracy: a paced null engine (TTFT 100 ms, ITL 10 ms, 50 output tokens); each tool sends open-loop
Poisson traffic at each rate of ACCURACY_RATES, and its median TTFT and ITL are compared with the
pace and with the null engine's own record of the same requests (`GET /null/stats`: when it really
wrote, late wake-ups included), so a busy engine is not blamed on the client. Ceiling: a zero-delay
null engine; each tool climbs CEILING_RATES until it no longer achieves CEILING_SHARE of the rate.
The tools take turns on one engine, so they meet the same host load. GuideLLM and AIPerf run from
their cached installs, each through its own runner (harness/bench/peers/); GuideLLM 0.8.1 sends evenly
spaced arrivals instead, its Poisson profile being no Poisson process (harness/bench/peers/guidellm.py).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path

import httpx

from harness.bench.peers.traffic import INPUT_TOKENS, OUTPUT_TOKENS, Traffic
from harness.bench.records import (
    BenchRecord,
    BenchWorkload,
    Calibration,
    CalibrationPoint,
    Pace,
    PeerTool,
    write_bench_record,
)
from harness.engines.llamacpp import LlamaCppAdapter
from harness.host.provenance import harness_info, host_info
from harness.loadgen import Lengths, Workload, run_load, summarize
from harness.loadgen.null_engine import MODEL, STATS_PATH, NullPace, running_null_engine
from harness.paths import cache_dir
from harness.probing.run_context import new_run_id
from harness.records.results import EngineIdentity, run_dir_for

PACE = NullPace(ttft_s=0.1, itl_s=0.01)
ZERO = NullPace(ttft_s=0.0, itl_s=0.0)
ACCURACY_RATES = (10.0, 40.0, 80.0, 160.0, 320.0, 640.0)
CEILING_RATES = (250.0, 500.0, 1000.0, 2000.0, 4000.0)
ACCURACY_WINDOW_S, CEILING_WINDOW_S = 3.0, 2.0  # seconds of traffic each rate sends
MIN_REQUESTS, MAX_REQUESTS = 30, 8000
CEILING_SHARE = 0.95
PROCESSES = max(1, min(4, os.cpu_count() or 1))  # infercheck's load-generating processes
ENGINE_NAME = "load generator calibration (null engine)"


def requests_for(rate: float, window_s: float) -> int:
    """How many requests `window_s` seconds of traffic at `rate` is."""
    return int(min(MAX_REQUESTS, max(MIN_REQUESTS, rate * window_s)))


def run_infercheck(traffic: Traffic, pace: Pace) -> CalibrationPoint:
    """infercheck's load generator at one rate."""
    requests = Workload(Lengths(INPUT_TOKENS), Lengths(OUTPUT_TOKENS)).requests(
        LlamaCppAdapter(server_binary=None), MODEL, traffic.requests
    )
    stats = summarize(asyncio.run(run_load(traffic.base_url, requests, rate=traffic.rate, processes=PROCESSES)))
    return CalibrationPoint(
        tool="infercheck",
        pace=pace,
        rate=traffic.rate,
        requests=stats.requests,
        completed=stats.completed,
        failed=stats.failed + stats.cancelled,
        achieved_rate=stats.request_throughput,
        ttft_p50_ms=stats.ttft_s.p50 * 1000 if stats.ttft_s else None,
        itl_p50_ms=stats.itl_s.p50 * 1000 if stats.itl_s else None,
        engine_ttft_p50_ms=None,
        engine_gap_p50_ms=None,
        client_cpu_ms_per_request=stats.client.cpu_ms_per_request if stats.client else None,
        client_bound=stats.client.bound if stats.client else None,
    )


def run_vllm(python: Path, tokenizer: Path) -> Callable[[Traffic, Pace], CalibrationPoint]:
    """`vllm bench serve` at one rate (random dataset, the same lengths, EOS ignored)."""
    from harness.bench.peers.vllm_bench import VllmBenchRun, run_vllm_bench

    def run(traffic: Traffic, pace: Pace) -> CalibrationPoint:
        result = run_vllm_bench(
            python,
            VllmBenchRun(
                base_url=traffic.base_url,
                model=MODEL,
                tokenizer=tokenizer,
                input_tokens=INPUT_TOKENS,
                output_tokens=OUTPUT_TOKENS,
                num_prompts=traffic.requests,
                rate=traffic.rate,
            ),
        )
        cpu = result.get("client_cpu_s")
        return CalibrationPoint(
            tool="vllm bench serve",
            pace=pace,
            rate=traffic.rate,
            requests=traffic.requests,
            completed=result["completed"],
            failed=result["failed"],
            achieved_rate=result["request_throughput"],
            ttft_p50_ms=result.get("median_ttft_ms"),
            itl_p50_ms=result.get("median_itl_ms"),
            engine_ttft_p50_ms=None,
            engine_gap_p50_ms=None,
            client_cpu_ms_per_request=cpu / traffic.requests * 1000 if cpu is not None else None,
        )

    return run


def _with_engine_record(base_url: str, run: Callable[[], CalibrationPoint]) -> CalibrationPoint:
    """Run one point between a reset and a read of the null engine's own record."""
    httpx.delete(base_url + STATS_PATH, timeout=10)
    point = run()
    own = httpx.get(base_url + STATS_PATH, timeout=10).json()
    return point.model_copy(
        update={"engine_ttft_p50_ms": own["first_token_ms_p50"], "engine_gap_p50_ms": own["gap_ms_p50"]}
    )


def peer_tools() -> tuple[dict[str, Callable[[Traffic, Pace], CalibrationPoint]], list[PeerTool]]:
    """Every tool this host has, and a line for each of the others saying why it did not run."""
    from harness.bench.peers import aiperf, find_peer, guidellm
    from harness.toolchain import vllm_cpu

    runners: dict[str, Callable[[Traffic, Pace], CalibrationPoint]] = {"infercheck": run_infercheck}
    tools = [PeerTool(name="infercheck", version=harness_info().version, status="measured")]
    install = vllm_cpu.find_install(cache_dir())
    tokenizer = hf_tokenizer()
    if install is None:
        tools.append(
            PeerTool(name="vllm bench serve", version=None, status="not installed (infercheck setup vllm installs it)")
        )
    else:
        runners["vllm bench serve"] = run_vllm(install.python, tokenizer)
        tools.append(
            PeerTool(
                name="vllm bench serve", version=f"{vllm_cpu.PACKAGE} {install.package_version}", status="measured"
            )
        )
    for name, driver in (("guidellm", guidellm), ("aiperf", aiperf)):
        peer = find_peer(cache_dir(), name)
        if peer is None:
            tools.append(
                PeerTool(name=name, version=None, status="not installed here (infercheck bench calibrate installs it)")
            )
        else:
            runners[name] = driver.runner(peer, tokenizer)
            tools.append(PeerTool(name=name, version=peer.version, status="measured"))
    return runners, tools


def hf_tokenizer() -> Path:
    """The synthesized llama's Hugging Face folder (the peers' random datasets need a tokenizer); the
    models are built once and cached."""
    from harness.models import ensure_models, find_artifact
    from harness.toolchain import llamacpp

    build = llamacpp.find_build(cache_dir())
    return find_artifact(ensure_models(cache_dir(), build.quantize if build else None), "llama", "hf").path


def calibrate(progress: Callable[[str], None] = print) -> Calibration:
    """Accuracy at every rate, then the ceiling, for every installed tool (taking turns on one engine). A
    run that fails (RuntimeError: the tool exited with an error, or ran past its deadline) is a point with
    every request failed, and the first failure of each tool is named in its status."""
    runners, tools = peer_tools()
    points: list[CalibrationPoint] = []
    failures: dict[str, str] = {}

    def measure(name: str, traffic: Traffic, pace: Pace, run: Callable[[], CalibrationPoint]) -> CalibrationPoint:
        try:
            point = run()
        except RuntimeError as exc:
            failures.setdefault(name, f"{traffic.rate:g} req/s ({pace}): {exc}")
            progress(f"{name} at {traffic.rate:g} req/s ({pace}) failed: {exc}")
            point = CalibrationPoint(
                tool=name,
                pace=pace,
                rate=traffic.rate,
                requests=traffic.requests,
                completed=0,
                failed=traffic.requests,
                achieved_rate=0.0,
                ttft_p50_ms=None,
                itl_p50_ms=None,
                engine_ttft_p50_ms=None,
                engine_gap_p50_ms=None,
                client_cpu_ms_per_request=None,
            )
        else:
            progress(_describe(point))
        points.append(point)
        return point

    with running_null_engine(PACE) as url:
        runners["infercheck"](Traffic(url, 20.0, 10), "paced")  # warm-up
        for rate in ACCURACY_RATES:
            traffic = Traffic(url, rate, requests_for(rate, ACCURACY_WINDOW_S))
            for name, runner in runners.items():
                measure(name, traffic, "paced", partial(_with_engine_record, url, partial(runner, traffic, "paced")))
    with running_null_engine(ZERO) as url:
        climbing = dict(runners)
        for rate in CEILING_RATES:
            traffic = Traffic(url, rate, requests_for(rate, CEILING_WINDOW_S))
            for name, runner in list(climbing.items()):
                point = measure(name, traffic, "zero", partial(runner, traffic, "zero"))
                if point.achieved_rate < CEILING_SHARE * rate:
                    del climbing[name]  # past its ceiling: higher rates only take time
    tools = [
        tool.model_copy(update={"status": f"{tool.status}; failed first at {failures[tool.name]}"})
        if tool.name in failures
        else tool
        for tool in tools
    ]
    return Calibration(
        ttft_ms=PACE.ttft_s * 1000,
        itl_ms=PACE.itl_s * 1000,
        input_tokens=INPUT_TOKENS,
        output_tokens=OUTPUT_TOKENS,
        ceiling_share=CEILING_SHARE,
        tools=tools,
        points=points,
    )


def _describe(point: CalibrationPoint) -> str:
    ttft = f"TTFT p50 {point.ttft_p50_ms:.2f} ms" if point.ttft_p50_ms is not None else "no TTFT"
    bound = ", client-bound" if point.client_bound else ""
    return (
        f"{point.tool} at {point.rate:g} req/s ({point.pace}): {point.completed}/{point.requests} ok, "
        f"{point.achieved_rate:.1f} req/s achieved, {ttft}{bound}"
    )


def run_calibration(results_dir: Path, progress: Callable[[str], None] = print) -> tuple[BenchRecord, Path]:
    """Calibrate and write the record (results/<engine>/<run_id>/bench.json) with provenance."""
    started_at = datetime.now(timezone.utc)
    calibration = calibrate(progress)
    run_id = new_run_id()
    record = BenchRecord(
        run_id=run_id,
        engine=EngineIdentity(name=ENGINE_NAME, version="1"),
        host=host_info(),
        harness=harness_info(),
        levels=[],
        calibration=calibration,
        workload=BenchWorkload(
            api="completions",
            input_tokens=INPUT_TOKENS,
            input_range_ratio=0.0,
            output_tokens=OUTPUT_TOKENS,
            output_range_ratio=0.0,
            seed=0,
            warmup_requests=10,
        ),
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
    )
    return record, write_bench_record(record, run_dir_for(results_dir, ENGINE_NAME, run_id))
