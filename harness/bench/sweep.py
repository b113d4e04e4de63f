"""A concurrency sweep on a launched or attached engine, recorded with provenance."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from harness.bench.records import BenchLevel, BenchRecord, BenchWorkload, write_bench_record
from harness.engines.base import LaunchSpec
from harness.host.provenance import harness_info, host_info
from harness.loadgen import SLO, LoadResult, Percentiles, Workload, measure_prompt_scale, run_load, summarize
from harness.paths import cache_dir
from harness.probing.run_context import RunContext
from harness.probing.session import EngineSession

RATE_WINDOW_S = 8.0  # an open-loop level sends this many seconds of traffic (at least 16 requests)


@dataclass(frozen=True)
class SweepPlan:
    """What to send at each level: closed-loop concurrency levels, then open-loop Poisson rates."""

    levels: Sequence[int]  # concurrency levels, closed loop
    workload: Workload = Workload()
    requests_per_level: int | None = None  # None: max(16, 8 x concurrency), or RATE_WINDOW_S of a rate's traffic
    warmup_requests: int = 2
    slo: SLO | None = None
    rates: Sequence[float] = ()  # requests/s, open loop
    processes: int = 1  # load-generating processes
    max_error_rate: float | None = None  # a level stops once more of its finished requests failed

    def requests_at(self, concurrency: int) -> int:
        """How many requests the level at `concurrency` sends."""
        return self.requests_per_level or max(16, 8 * concurrency)

    def requests_at_rate(self, rate: float) -> int:
        """How many requests the level at `rate` sends."""
        return self.requests_per_level or max(16, round(rate * RATE_WINDOW_S))

    @property
    def slots(self) -> int:
        """Parallel slots the engine is launched with."""
        return max(self.levels, default=4)


def sweep(session: EngineSession, plan: SweepPlan, progress: Callable[[str], None] = print) -> list[BenchLevel]:
    """Size prompts in the engine's tokens, warm it up, then run each level; each level gets its own prompts."""
    base_url, adapter, model = session.running.base_url, session.adapter, session.served_model
    scale = asyncio.run(measure_prompt_scale(base_url, adapter, model))
    base = replace(plan.workload, prompt_scale=scale)
    warmup = replace(base, seed=base.seed - 1).requests(adapter, model, plan.warmup_requests)
    if warmup:
        asyncio.run(run_load(base_url, warmup, concurrency=1))
    points: list[tuple[int | None, float | None, int]] = [(c, None, plan.requests_at(c)) for c in plan.levels]
    points += [(None, rate, plan.requests_at_rate(rate)) for rate in plan.rates]
    levels = []
    for index, (concurrency, rate, count) in enumerate(points):
        workload = replace(base, seed=base.seed + 1 + index)
        load = asyncio.run(
            run_load(
                base_url,
                workload.requests(adapter, model, count),
                concurrency=concurrency,
                rate=rate,
                processes=plan.processes,
                max_error_rate=plan.max_error_rate,
            )
        )
        stats = summarize(load, plan.slo)
        where = f"concurrency {concurrency}" if rate is None else f"{rate:g} req/s"
        bound = f"; {stats.client.reason}" if stats.client and stats.client.bound else ""
        progress(
            f"{where}: {stats.completed}/{stats.requests} ok, {stats.output_throughput:.1f} output tok/s, "
            f"{stats.request_throughput:.2f} req/s{bound}"
        )
        levels.append(BenchLevel(stats=stats, engine_decode_tps=engine_decode_tps(load)))
    return levels


def engine_decode_tps(load: LoadResult) -> Percentiles | None:
    """Per-request decode speed as the engine itself timed it (llama-server's `timings.predicted_per_second`)."""
    return Percentiles.of(
        [
            float(timings["predicted_per_second"])
            for result in load.results
            if result.ok and (timings := result.timing.engine_timings) is not None and "predicted_per_second" in timings
        ]
    )


def run_bench(
    engine: str,
    plan: SweepPlan,
    results_dir: Path,
    *,
    base_url: str | None = None,
    model: str = "llama",
    progress: Callable[[str], None] = print,
) -> tuple[BenchRecord, Path]:
    """Launch (or attach to) the engine with enough slots for the highest level, sweep, write bench.json."""
    started_at = datetime.now(timezone.utc)
    spec = LaunchSpec(model=model, parallel_slots=plan.slots, prompt_cache_ram=False)  # no drift over the sweep
    context = RunContext.create(
        engine, results_dir, cache_dir(), attach_url=base_url, attach_spec=spec, progress=progress
    )
    try:
        session = context.pool.session(spec)
        levels = sweep(session, plan, progress)
    finally:
        context.pool.close()
    record = BenchRecord(
        run_id=context.run_id,
        engine=session.identity,
        launch=session.launch,
        model=session.model_info(),
        host=host_info(),
        harness=harness_info(),
        workload=BenchWorkload.of(plan.workload, plan.warmup_requests),
        levels=levels,
        started_at=started_at,
        finished_at=datetime.now(timezone.utc),
    )
    return record, write_bench_record(record, context.run_dir)
