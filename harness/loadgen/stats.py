"""From timed requests to a run's figures: throughput, goodput and latency percentiles.

Definitions follow vLLM's `bench serve`: TTFT from send to the first token; ITL every gap
between token-bearing events; TPOT (last token - first token) / (output tokens - 1); E2E from
send to the end of the stream; throughputs over the run's wall time (first send to last end);
goodput the completed requests per second that meet every SLO given.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from harness.loadgen.runner import LoadResult, RequestResult

ERRORS_KEPT = 5


class Percentiles(BaseModel):
    """Mean and percentiles of one latency, in seconds."""

    count: int
    mean: float
    p50: float
    p90: float
    p99: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Percentiles | None:
        """Summary of `values` (NaN dropped); None when there are none."""
        finite = [value for value in values if not math.isnan(value)]
        if not finite:
            return None
        p50, p90, p99 = np.percentile(finite, [50, 90, 99]).tolist()
        return cls(count=len(finite), mean=float(np.mean(finite)), p50=p50, p90=p90, p99=p99)


class SLO(BaseModel):
    """Service-level objectives a request must all meet to count toward goodput (seconds; None: no limit)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2e_s: float | None = None

    def met_by(self, result: RequestResult) -> bool:
        """A completed request within every limit (a one-token request has no TPOT and meets that limit)."""
        timing = result.timing
        within = [(self.ttft_s, timing.ttft_s), (self.tpot_s, 0.0 if math.isnan(timing.tpot_s) else timing.tpot_s),
                  (self.e2e_s, timing.e2e_s)]
        return result.ok and all(limit is None or value <= limit for limit, value in within)


class LoadStats(BaseModel):
    """The figures of one run (one concurrency level or one request rate)."""

    concurrency: int | None
    rate: float | None
    requests: int
    completed: int
    failed: int
    duration_s: float
    input_tokens: int
    output_tokens: int
    request_throughput: float  # completed requests per second
    output_throughput: float  # output tokens per second
    total_token_throughput: float  # input + output tokens per second
    goodput: float | None  # requests per second meeting the SLO (None: no SLO given)
    slo: SLO | None
    ttft_s: Percentiles | None
    itl_s: Percentiles | None
    tpot_s: Percentiles | None
    e2e_s: Percentiles | None
    errors: list[str]  # the first few distinct failure reasons


def summarize(load: LoadResult, slo: SLO | None = None) -> LoadStats:
    """The run's figures; failed requests count only as failures."""
    done = [result for result in load.results if result.ok]
    timings = [result.timing for result in done]
    input_tokens = sum(timing.prompt_tokens or 0 for timing in timings)
    output_tokens = sum(timing.output_tokens for timing in timings)
    duration = load.duration_s
    errors = list(dict.fromkeys(result.error for result in load.results if result.error))
    return LoadStats(
        concurrency=load.concurrency, rate=load.rate, requests=len(load.results), completed=len(done),
        failed=len(load.results) - len(done), duration_s=duration, input_tokens=input_tokens,
        output_tokens=output_tokens, request_throughput=len(done) / duration,
        output_throughput=output_tokens / duration, total_token_throughput=(input_tokens + output_tokens) / duration,
        goodput=sum(slo.met_by(result) for result in done) / duration if slo else None, slo=slo,
        ttft_s=Percentiles.of([timing.ttft_s for timing in timings]),
        itl_s=Percentiles.of([gap for timing in timings for gap in timing.gaps_s]),
        tpot_s=Percentiles.of([timing.tpot_s for timing in timings]),
        e2e_s=Percentiles.of([timing.e2e_s for timing in timings]),
        errors=[str(error)[:300] for error in errors[:ERRORS_KEPT]])
