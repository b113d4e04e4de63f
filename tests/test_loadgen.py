"""The load generator against the null engine (a separate process with a known pace).

Timing tolerances are generous on purpose: CI is a shared 2-core box. The calibration figures
(error under 1% at the median) come from `python -m harness.bench.calibrate_llama`, not from here.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import threading
from collections.abc import Iterator
from typing import Any, Literal

import pytest

from harness.engines.llamacpp import LlamaCppAdapter
from harness.launch.base import free_port
from harness.loadgen import (
    SLO,
    ClientLoad,
    Lengths,
    LoadResult,
    Percentiles,
    PromptScale,
    RequestResult,
    Workload,
    arrival_offsets,
    as_chat,
    measure_prompt_scale,
    offered_rate,
    run_load,
    summarize,
)
from harness.loadgen.null_engine import MAX_LEAD_S, NullPace, running_null_engine
from harness.wire.request import ApiRequest
from harness.wire.streaming import SSEDecoder, StreamError, StreamTiming
from harness.wire.streaming_socket import stream_with_socket

PACE = NullPace(ttft_s=0.05, itl_s=0.005)
ADAPTER = LlamaCppAdapter(server_binary=None)


@pytest.fixture(scope="module")
def null_url() -> Iterator[str]:
    with running_null_engine(PACE) as url:
        yield url


def requests(
    count: int,
    output: int = 20,
    prompt: int = 12,
    api: Literal["completions", "chat"] = "completions",
) -> list[ApiRequest]:
    return Workload(Lengths(prompt), Lengths(output), api=api).requests(ADAPTER, "null", count)


def run(url: str, reqs: list[ApiRequest], **kwargs: Any) -> LoadResult:
    return asyncio.run(run_load(url, reqs, **kwargs))


# -- SSE splitting -----------------------------------------------------------------------


def test_sse_decoder_joins_events_split_across_chunks() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"a"') == []
    assert decoder.feed(b": 1}\n") == []
    assert decoder.feed(b"\ndata: [DONE]\n\n") == [b'{"a": 1}', b"[DONE]"]


def test_sse_decoder_handles_crlf_comments_multiline_and_unterminated_tail() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b": ping\r\n\r\nevent: x\r\ndata: one\r\ndata:two\r\n\r\ndata: tail") == [b"one\ntwo"]
    assert decoder.close() == [b"tail"]
    assert decoder.close() == []


# -- against the null engine ----------------------------------------------------------------


def test_closed_loop_measures_the_null_engine_pace(null_url: str) -> None:
    load = run(null_url, requests(8), concurrency=4)
    stats = summarize(load)
    assert (stats.completed, stats.failed, stats.output_tokens, stats.input_tokens) == (8, 0, 160, 96)
    assert all(len(result.timing.token_times) == 20 for result in load.results)
    assert stats.ttft_s and stats.itl_s and stats.tpot_s and stats.e2e_s
    assert PACE.ttft_s - MAX_LEAD_S <= stats.ttft_s.p50 < PACE.ttft_s * 3  # it may wake up to its lead early
    # means, not medians: on a busy host a late engine sends its overdue tokens back to back (absolute
    # deadlines), which zeroes single gaps but not the mean
    assert PACE.itl_s * 0.3 < stats.itl_s.mean < PACE.itl_s * 3
    assert PACE.itl_s * 0.3 < stats.tpot_s.p50 < PACE.itl_s * 3
    assert stats.itl_s.count == 8 * 19
    nominal_e2e = PACE.ttft_s + 19 * PACE.itl_s
    # its deadlines are absolute, so the last token too may come up to its lead early (a median of 0.1446 s
    # against a nominal 0.145 s was seen)
    assert nominal_e2e - MAX_LEAD_S <= stats.e2e_s.p50 < nominal_e2e * 2
    # two waves of four: about twice one request's latency, and the throughputs agree with it
    assert 2 * (nominal_e2e - MAX_LEAD_S) <= stats.duration_s < 5 * nominal_e2e
    assert stats.request_throughput == pytest.approx(8 / stats.duration_s)
    assert stats.output_throughput == pytest.approx(160 / stats.duration_s)
    assert stats.total_token_throughput == pytest.approx(256 / stats.duration_s)


def test_concurrency_one_sends_one_at_a_time(null_url: str) -> None:
    load = run(null_url, requests(3, output=5), concurrency=1)
    spans = sorted((result.timing.sent_at, result.timing.finished_at) for result in load.results)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_tokens_are_counted_from_usage_when_events_bundle_several() -> None:
    with running_null_engine(NullPace(ttft_s=0.02, itl_s=0.004, tokens_per_event=4)) as url:
        load = run(url, requests(2, output=10), concurrency=2)
    for result in load.results:
        timing = result.timing
        assert result.ok and timing.output_tokens == 10 and len(timing.token_times) == 3  # 4 + 4 + 2
        assert timing.tpot_s == pytest.approx((timing.token_times[-1] - timing.token_times[0]) / 9)


def test_chat_api_streams_deltas(null_url: str) -> None:
    load = run(null_url, requests(2, output=6, api="chat"), concurrency=2)
    assert all(
        result.ok and result.timing.output_tokens == 6 and result.timing.text == " tok" * 6 for result in load.results
    )


def test_open_loop_sends_on_the_poisson_schedule(null_url: str) -> None:
    rate, count = 40.0, 12
    load = run(null_url, requests(count, output=4), rate=rate, seed=7)
    offsets = arrival_offsets(count, rate, seed=7)
    lateness = [result.timing.sent_at - load.started_at - offset for result, offset in zip(load.results, offsets)]
    assert all(-0.002 < late < 0.25 for late in lateness)
    assert summarize(load).completed == count and load.rate == rate


def test_several_processes_merge_their_timestamps(null_url: str) -> None:
    load = run(null_url, requests(8, output=10), concurrency=4, processes=2)
    stats = summarize(load)
    assert stats.completed == 8 and stats.client and stats.client.processes == 2
    assert all(len(result.timing.token_times) == 10 for result in load.results)
    spans = [(r.timing.sent_at, r.timing.finished_at) for r in load.results]
    assert all(load.started_at <= sent < end for sent, end in spans)  # one clock for every process
    assert max(end for _, end in spans) <= load.finished_at


def test_open_loop_reports_requested_offered_and_send_rates(null_url: str) -> None:
    stats = summarize(run(null_url, requests(12, output=4), rate=40.0, seed=7))
    assert stats.rate == 40.0 and stats.offered_rate == pytest.approx(40.0)
    assert stats.client and stats.client.send_rate and stats.client.send_lag_s and stats.client.cpu_ms_per_request > 0


def test_an_overloaded_client_flags_its_points_as_client_bound(null_url: str) -> None:
    """Far above any client's ceiling (100,000 req/s): the run says the client, not the engine, limited it."""
    stats = summarize(run(null_url, requests(300, output=2), rate=100_000.0))
    assert stats.completed == 300 and stats.client is not None
    assert stats.client.bound and "could not keep the schedule" in (stats.client.reason or "")


def loaded(saturation: float, waiting: float = 0.0) -> LoadResult:
    results = [timed(0.1, [0.01] * 4) for _ in range(4)]
    return LoadResult(
        results=results,
        started_at=0.0,
        finished_at=1.0,
        concurrency=2,
        rate=None,
        client=ClientLoad(processes=1, cpu_s=saturation, wall_s=1.0, saturation=saturation, waiting=waiting),
    )


def test_a_saturated_or_starved_client_is_client_bound() -> None:
    assert summarize(loaded(0.97)).client.bound  # type: ignore[union-attr]
    assert summarize(loaded(0.3, waiting=0.65)).client.bound  # type: ignore[union-attr]
    calm = summarize(loaded(0.3)).client
    assert calm and not calm.bound and calm.reason is None and calm.cpu_ms_per_request == pytest.approx(75.0)


def test_the_null_engine_holds_more_connections_than_select_could() -> None:
    with running_null_engine(NullPace(ttft_s=1.0, itl_s=0.01)) as url:
        stats = summarize(run(url, requests(1500, output=2)))
    assert (stats.completed, stats.failed) == (1500, 0)


# -- errors are failed requests, not crashes ---------------------------------------------------


def test_server_down_fails_every_request_without_raising() -> None:
    stats = summarize(run(f"http://127.0.0.1:{free_port()}", requests(3), concurrency=2))
    assert (stats.completed, stats.failed, stats.request_throughput, stats.ttft_s) == (0, 3, 0, None)
    assert stats.errors and "ConnectError" in stats.errors[0]


def test_http_500_mid_run_counts_as_failed_requests() -> None:
    with running_null_engine(NullPace(ttft_s=0.01, itl_s=0.002, fail_every=3)) as url:
        stats = summarize(run(url, requests(9, output=4), concurrency=3))
    assert (stats.requests, stats.completed, stats.failed) == (9, 6, 3)
    assert stats.output_tokens == 24 and "HTTP 500" in stats.errors[0] and "injected failure" in stats.errors[0]


def test_maximum_error_rate_stops_the_run_and_counts_cancelled_requests() -> None:
    with running_null_engine(NullPace(ttft_s=0.01, itl_s=0.002, fail_every=2)) as url:
        stats = summarize(run(url, requests(200, output=4), concurrency=2, max_error_rate=0.2))
    assert stats.stopped and "maximum error rate" in stats.stopped
    assert stats.cancelled > 100 and stats.completed + stats.failed + stats.cancelled == 200
    assert stats.ttft_s is not None and stats.ttft_s.count == stats.completed  # only completed ones


def test_unknown_route_is_a_failed_request(null_url: str) -> None:
    load = run(null_url, [ApiRequest("/v1/nowhere", {"stream": True})])
    assert not load.results[0].ok and "HTTP 404" in (load.results[0].error or "")


# -- schedule, percentiles, goodput, workload ---------------------------------------------------


def test_poisson_offsets_are_seeded_exponential_arrivals() -> None:
    offsets = arrival_offsets(4000, rate=20.0, seed=3)
    assert offsets == arrival_offsets(4000, rate=20.0, seed=3) != arrival_offsets(4000, rate=20.0, seed=4)
    assert offsets[0] == 0 and all(b >= a for a, b in zip(offsets, offsets[1:]))
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert sum(gaps) / len(gaps) == pytest.approx(1 / 20)  # rescaled: the schedule offers the requested rate
    assert sorted(gaps)[len(gaps) // 2] == pytest.approx(math.log(2) / 20, rel=0.1)  # exponential median
    assert offered_rate(arrival_offsets(40, rate=10.0, seed=0)) == pytest.approx(10.0)  # raw draws offered 8.6
    assert arrival_offsets(3, rate=None) == [0.0, 0.0, 0.0] and offered_rate([0.0, 0.0]) is None
    with pytest.raises(ValueError):
        arrival_offsets(3, rate=0)


def test_percentiles_interpolate_like_numpy_and_drop_nan() -> None:
    summary = Percentiles.of([float(v) for v in range(1, 101)] + [math.nan])
    assert summary is not None
    assert (summary.count, summary.mean, summary.p50, summary.p90) == (100, 50.5, 50.5, pytest.approx(90.1))
    assert summary.p99 == pytest.approx(99.01)
    assert Percentiles.of([]) is None and Percentiles.of([math.nan]) is None


def timed(ttft: float, gaps: list[float], tokens: int | None = None) -> RequestResult:
    """A finished request sent at 0 with the given first-token time and gaps."""
    times = [ttft]
    for gap in gaps:
        times.append(times[-1] + gap)
    usage = {"completion_tokens": tokens or len(times), "prompt_tokens": 5}
    return RequestResult(StreamTiming(sent_at=0.0, token_times=times, usage=usage, finished_at=times[-1]))


def test_goodput_counts_requests_within_every_slo() -> None:
    results = [
        timed(0.1, [0.01] * 9),
        timed(0.3, [0.01] * 9),
        timed(0.1, [0.05] * 9),
        timed(0.1, []),
        RequestResult(StreamTiming(sent_at=0.0), error="HTTP 500"),
    ]
    load = LoadResult(results=results, started_at=0.0, finished_at=2.0, concurrency=4, rate=None)
    stats = summarize(load, SLO(ttft_s=0.2, tpot_s=0.02))
    assert stats.goodput == pytest.approx(2 / 2.0)  # the first, and the one-token request (no TPOT)
    assert summarize(load, SLO(ttft_s=0.5)).goodput == pytest.approx(4 / 2.0)
    assert summarize(load, SLO(itl_s=0.02)).goodput == pytest.approx(3 / 2.0)  # the largest gap of each request
    assert summarize(load, SLO(e2e_s=0.2)).goodput == pytest.approx(2 / 2.0)
    assert summarize(load).goodput is None
    assert (stats.completed, stats.failed, stats.output_tokens, stats.input_tokens) == (4, 1, 31, 20)
    assert stats.tpot_s is not None and stats.tpot_s.count == 3  # the one-token request has no TPOT


def test_workload_is_seeded_and_lengths_stay_in_range() -> None:
    workload = Workload(Lengths(20, 0.5), Lengths(40, 0.25), seed=5)
    reqs = workload.requests(ADAPTER, "m", 50)
    assert reqs == workload.requests(ADAPTER, "m", 50)
    assert all(10 <= len(r.body["prompt"].split()) <= 30 and 30 <= r.body["max_tokens"] <= 50 for r in reqs)
    assert all(
        r.body["ignore_eos"] and r.body["stream"] and r.body["stream_options"] == {"include_usage": True} for r in reqs
    )
    assert len({r.body["prompt"] for r in reqs}) == 50
    assert Lengths(7).sample(random.Random(0)) == 7
    with pytest.raises(ValueError):
        Lengths(0)


def test_prompt_scale_is_measured_from_usage(null_url: str) -> None:
    assert asyncio.run(measure_prompt_scale(null_url, ADAPTER, "null")) == PromptScale(1.0, 0.0)  # a word a token
    scale = PromptScale(per_word=2.0, overhead=1.0)  # a small vocabulary: two tokens a word, plus BOS
    assert scale.words_for(33) == 16 and scale.words_for(1) == 1
    (request,) = Workload(Lengths(33), Lengths(4), prompt_scale=scale).requests(ADAPTER, "m", 1)
    assert len(request.body["prompt"].split()) == 16


def test_as_chat_moves_the_prompt_into_one_user_message() -> None:
    chat = as_chat(ADAPTER.fixed_length_request("m", "hello there", 4, stream=True))
    assert chat.path == "/v1/chat/completions" and "prompt" not in chat.body
    assert chat.body["messages"] == [{"role": "user", "content": "hello there"}] and chat.body["max_tokens"] == 4
    with pytest.raises(ValueError):
        as_chat(ApiRequest("/completion", {"prompt": "x"}))


# -- the bare-socket reader ----------------------------------------------------------------


def test_socket_reader_times_the_null_engine_pace(null_url: str) -> None:
    started = threading.Event()
    timing = stream_with_socket(null_url, requests(1, output=20)[0], started)
    assert started.is_set() and len(timing.token_times) == 20 and timing.usage["completion_tokens"] == 20
    assert PACE.ttft_s - MAX_LEAD_S <= timing.ttft_s < PACE.ttft_s * 3
    assert PACE.itl_s * 0.3 < statistics.mean(timing.gaps_s) < PACE.itl_s * 3
    assert timing.finished_at >= timing.token_times[-1]


def test_socket_reader_raises_on_an_error_status(null_url: str) -> None:
    with pytest.raises(StreamError, match="HTTP 404"):
        stream_with_socket(null_url, ApiRequest("/v1/nothing", {"stream": True}))
