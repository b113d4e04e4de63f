"""From timed requests to a run's figures: rates, throughput, goodput, latency percentiles, and whether
the client itself was the bottleneck. `DEFINITIONS` is the exact meaning of every figure (the report
prints it); only completed requests enter the latency statistics, failed and cancelled ones are counted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel

from harness.loadgen.runner import LoadResult, RequestResult
from harness.loadgen.schedule import offered_rate

ERRORS_KEPT = 5
CLIENT_SATURATED = 0.9  # a load-generating process busy (or wanting a CPU) this share of the run is the bottleneck
KEPT_SCHEDULE = 0.95  # an open-loop run must send at least this share of the offered rate

DEFINITIONS = {
    "TTFT": "time to first token: from the request's last byte written to the socket to the arrival of the first "
    "event carrying text (the socket read that completed it).",
    "ITL": "inter-token latency: every gap between consecutive text-bearing events of a request. When an event "
    "carries several tokens (the engine's usage counts more tokens than events), the gap is one number "
    "for all of them: see TPOT for the per-token figure.",
    "TPOT": "time per output token, first token excluded: (last text event - first text event) / "
    "(output tokens - 1), output tokens from the engine's usage (else one per event).",
    "E2E": "end-to-end latency: from the request's last byte written to the arrival of the end of the stream "
    "([DONE], else the last event).",
    "duration": "from the first request's send to the end of the last request.",
    "request throughput": "completed requests / duration (the achieved rate).",
    "output throughput": "output tokens of completed requests (engine usage) / duration.",
    "goodput": "completed requests / duration that meet every SLO given: TTFT, TPOT, E2E, and ITL as the "
    "request's largest gap between text events.",
    "requested rate": "the open-loop rate asked for (requests/s).",
    "offered rate": "what the seeded schedule offers: (requests - 1) / (last scheduled send - first); the "
    "exponential draws are rescaled so that it equals the requested rate.",
    "send rate": "what the client really sent: (requests sent - 1) / (last send - first send).",
    "send lag": "how late each request left against its scheduled time (includes waiting for a concurrency slot).",
    "client CPU": "CPU seconds of the load-generating processes, the timed part of the run and the parsing of the "
    "recorded responses after it, in all and per request.",
    "client saturation": "the busiest load-generating process's CPU time over the run's wall time (1.0: a whole "
    "core, all one event loop can use), plus its time ready to run but kept off a CPU by the "
    "host (run-queue wait).",
    "client-bound": f"the client, not the engine, limited the run: its busiest process was busy or waiting for a "
    f"CPU at least {CLIENT_SATURATED:.0%} of the time (token stamps are then late), or an open-loop "
    f"run without a concurrency cap sent under {KEPT_SCHEDULE:.0%} of the offered rate. Such a "
    f"point is unreliable.",
    "failed / cancelled": "failed: an error status, an error event, a broken or timed-out stream, or no token; "
    "cancelled: never finished because the run stopped at its maximum error rate. Neither "
    "enters a latency statistic.",
}


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
    itl_s: float | None = None  # the request's largest gap between text events
    e2e_s: float | None = None

    def met_by(self, result: RequestResult) -> bool:
        """A completed request within every limit (a one-token request has no TPOT or ITL and meets those)."""
        timing = result.timing
        within = [
            (self.ttft_s, timing.ttft_s),
            (self.tpot_s, 0.0 if math.isnan(timing.tpot_s) else timing.tpot_s),
            (self.itl_s, max(timing.gaps_s, default=0.0)),
            (self.e2e_s, timing.e2e_s),
        ]
        return result.ok and all(limit is None or value <= limit for limit, value in within)


class ClientFigures(BaseModel):
    """What the load generator itself spent, and whether it limited the run."""

    processes: int
    cpu_s: float
    cpu_ms_per_request: float
    saturation: float
    waiting: float
    send_rate: float | None  # requests/s actually sent (None: fewer than two sent)
    send_lag_s: Percentiles | None  # open loop: lateness against the schedule
    bound: bool
    reason: str | None  # why the point is unreliable, when it is


class LoadStats(BaseModel):
    """The figures of one run (one concurrency level or one request rate)."""

    concurrency: int | None
    rate: float | None  # requested (open loop)
    offered_rate: float | None = None
    requests: int
    completed: int
    failed: int
    cancelled: int = 0
    duration_s: float
    input_tokens: int
    output_tokens: int
    request_throughput: float  # completed requests per second: the achieved rate
    output_throughput: float  # output tokens per second
    total_token_throughput: float  # input + output tokens per second
    goodput: float | None  # requests per second meeting the SLO (None: no SLO given)
    slo: SLO | None
    ttft_s: Percentiles | None
    itl_s: Percentiles | None
    tpot_s: Percentiles | None
    e2e_s: Percentiles | None
    client: ClientFigures | None = None
    stopped: str | None = None  # why the run stopped early
    errors: list[str]  # the first few distinct failure reasons


def summarize(load: LoadResult, slo: SLO | None = None) -> LoadStats:
    """The run's figures; failed and cancelled requests count only as such."""
    done = [result for result in load.results if result.ok]
    timings = [result.timing for result in done]
    input_tokens = sum(timing.prompt_tokens or 0 for timing in timings)
    output_tokens = sum(timing.output_tokens for timing in timings)
    duration = load.duration_s
    cancelled = sum(result.cancelled for result in load.results)
    errors = list(dict.fromkeys(result.error for result in load.results if result.error))
    return LoadStats(
        concurrency=load.concurrency,
        rate=load.rate,
        offered_rate=offered_rate(load.offsets) if load.rate else None,
        requests=len(load.results),
        completed=len(done),
        failed=len(load.results) - len(done) - cancelled,
        cancelled=cancelled,
        duration_s=duration,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        request_throughput=len(done) / duration,
        output_throughput=output_tokens / duration,
        total_token_throughput=(input_tokens + output_tokens) / duration,
        goodput=sum(slo.met_by(result) for result in done) / duration if slo else None,
        slo=slo,
        ttft_s=Percentiles.of([timing.ttft_s for timing in timings]),
        itl_s=Percentiles.of([gap for timing in timings for gap in timing.gaps_s]),
        tpot_s=Percentiles.of([timing.tpot_s for timing in timings]),
        e2e_s=Percentiles.of([timing.e2e_s for timing in timings]),
        client=client_figures(load),
        stopped=load.stopped,
        errors=[str(error)[:300] for error in errors[:ERRORS_KEPT]],
    )


def client_figures(load: LoadResult) -> ClientFigures | None:
    """The client's own load and the verdict on whether it, not the engine, limited the run."""
    if load.client is None:
        return None
    sent = sorted(result.timing.sent_at for result in load.results if result.timing.sent_at and not result.cancelled)
    send_rate = (len(sent) - 1) / (sent[-1] - sent[0]) if len(sent) > 1 and sent[-1] > sent[0] else None
    lag = (
        Percentiles.of(
            [r.timing.sent_at - r.scheduled_at for r in load.results if r.scheduled_at is not None and r.timing.sent_at]
        )
        if load.rate
        else None
    )
    client, reasons = load.client, []
    busy = client.saturation + client.waiting
    if busy >= CLIENT_SATURATED:
        reasons.append(
            f"the busiest load-generating process was busy {client.saturation:.0%} and waiting for a CPU "
            f"{client.waiting:.0%} of the run: token stamps may be late"
        )
    offered = offered_rate(load.offsets) if load.rate else None
    if offered and load.concurrency is None and len(sent) > 1 and (send_rate or 0) < KEPT_SCHEDULE * offered:
        reasons.append(
            f"it sent {send_rate or 0:.1f} req/s of the {offered:.1f} offered: it could not keep the schedule"
        )
    return ClientFigures(
        processes=client.processes,
        cpu_s=client.cpu_s,
        cpu_ms_per_request=client.cpu_s / len(load.results) * 1000,
        saturation=client.saturation,
        waiting=client.waiting,
        send_rate=send_rate,
        send_lag_s=lag,
        bound=bool(reasons),
        reason="client-bound: " + "; ".join(reasons) if reasons else None,
    )
