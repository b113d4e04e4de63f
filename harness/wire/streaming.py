"""Timed SSE streaming: when a request left and when each token arrived, stamped at the socket.

The send time is stamped just before the HTTP client writes the request body, the request's
last bytes, onto its connection (httpcore's `trace` extension), so building the request,
waiting for a pooled connection and the client's own HTTP overhead do not count as engine
latency. Every raw chunk is stamped the moment `aiter_raw` hands it over, before it is split
into events or parsed, so parsing never shifts a timestamp. An event that spans chunks gets
the time its last byte arrived; events in one chunk share its stamp.

A stream counts only when complete: it ended with `[DONE]` or a `finish_reason`, and carried no
more tokens than asked for (exactly as many when the request fixed the length); anything else
raises StreamError, so a cut stream is never timed as if it were whole.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.deadline import read_timed_out, request_timeout_s
from harness.wire.request import ApiRequest

_ERROR_BODY_CHARS = 300


class StreamError(RuntimeError):
    """The engine answered with an error status or an error event, or sent something unparsable."""


@dataclass
class StreamTiming:
    """Arrival times (perf_counter seconds) of one streamed completion, and what the engine reported."""

    sent_at: float  # when the request's last bytes were written to the connection
    token_times: list[float] = field(default_factory=list)  # one per SSE event that carries text
    text: str = ""
    usage: dict[str, Any] | None = None
    engine_timings: dict[str, Any] | None = None  # the engine's own `timings` (llama-server), if sent
    finished_at: float = 0.0
    done: bool = False  # the `[DONE]` event arrived
    finish_reason: str | None = None  # the last finish_reason the engine sent

    @property
    def ended(self) -> bool:
        """Whether the engine said the stream was over (`[DONE]` or a finish_reason)."""
        return self.done or self.finish_reason is not None

    @property
    def ttft_s(self) -> float:
        """Time to first token: from sending to the first text-bearing event."""
        return self.token_times[0] - self.sent_at if self.token_times else math.nan

    @property
    def gaps_s(self) -> list[float]:
        """Every inter-token gap (between consecutive text-bearing events)."""
        return [later - earlier for earlier, later in zip(self.token_times, self.token_times[1:])]

    @property
    def output_tokens(self) -> int:
        """Generated tokens as the engine's usage counts them, else one per text-bearing event."""
        counted = (self.usage or {}).get("completion_tokens")
        return int(counted) if counted is not None else len(self.token_times)

    @property
    def prompt_tokens(self) -> int | None:
        """Prompt tokens as the engine's usage counts them (None when it sent no usage)."""
        counted = (self.usage or {}).get("prompt_tokens")
        return int(counted) if counted is not None else None

    @property
    def tpot_s(self) -> float:
        """Time per output token after the first: decode time over the remaining tokens."""
        if len(self.token_times) < 2 or self.output_tokens < 2:
            return math.nan
        return (self.token_times[-1] - self.token_times[0]) / (self.output_tokens - 1)

    @property
    def e2e_s(self) -> float:
        """End-to-end latency: from sending to the end of the stream."""
        return self.finished_at - self.sent_at


class SSEDecoder:
    """Splits a byte stream into the `data` payloads of complete server-sent events."""

    def __init__(self) -> None:
        self._pending = b""
        self._data: list[bytes] = []

    def feed(self, chunk: bytes) -> list[bytes]:
        """The payloads of the events that `chunk` completes (LF or CRLF line ends)."""
        *lines, self._pending = (self._pending + chunk).split(b"\n")
        payloads = []
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                payloads += self._end_event()
            elif line.startswith(b"data:"):
                value = line[5:]
                self._data.append(value[1:] if value.startswith(b" ") else value)
        return payloads

    def close(self) -> list[bytes]:
        """The payload of an event left unterminated when the stream ended."""
        return self.feed(b"\n\n") if self._pending or self._data else []

    def _end_event(self) -> list[bytes]:
        payload, self._data = b"\n".join(self._data), []
        return [payload] if payload else []


async def stream_into(client: httpx.AsyncClient, request: ApiRequest, timing: StreamTiming) -> None:
    """Send a streaming request, filling `timing` as events arrive; raises on errors."""

    async def stamp_send(name: str, info: dict[str, Any]) -> None:
        if name.endswith(".send_request_body.started"):
            timing.sent_at = time.perf_counter()

    arrived = time.perf_counter()
    try:
        async with client.stream(
            request.method,
            request.path,
            json=request.body,
            headers=request.headers,
            timeout=request_timeout_s(),
            extensions={"trace": stamp_send},
        ) as response:
            if response.status_code >= 400:
                body = (await response.aread()).decode("utf-8", "replace")
                raise StreamError(f"HTTP {response.status_code}: {body[:_ERROR_BODY_CHARS]}")
            decoder = SSEDecoder()
            async for chunk in response.aiter_raw():
                arrived = time.perf_counter()
                for payload in decoder.feed(chunk):
                    take_event(timing, payload, arrived)
            for payload in decoder.close():
                take_event(timing, payload, arrived)
    except httpx.HTTPError as exc:  # refused, reset, timed out: say where, and check a silent engine
        endpoint = f"{request.method} {client.base_url}{request.path}"
        if isinstance(exc, httpx.ReadTimeout):
            read_timed_out(endpoint)
        detail = f": {exc}" if str(exc) else ""
        raise StreamError(
            f"{endpoint}: {type(exc).__name__}{detail} after {len(timing.token_times)} token(s)"
        ) from None
    if not timing.finished_at:
        timing.finished_at = arrived
    check_complete(timing, request)


def asked_tokens(request: ApiRequest) -> tuple[int | None, bool]:
    """How many tokens the request asks for, and whether exactly that many (EOS ignored or a minimum)."""
    body = request.body or {}
    asked = next(
        (
            body[key]
            for key in ("max_tokens", "max_completion_tokens", "n_predict", "max_new_tokens")
            if isinstance(body.get(key), int) and body[key] > 0
        ),
        None,
    )
    exact = asked is not None and (body.get("ignore_eos") is True or body.get("min_tokens") == asked)
    return asked, exact


def check_complete(timing: StreamTiming, request: ApiRequest) -> None:
    """Raise StreamError unless the stream ended as the engine said and carried the tokens asked for."""
    if not timing.ended:
        raise StreamError(
            f"the stream stopped after {len(timing.token_times)} token event(s) without [DONE] "
            "or a finish_reason: incomplete"
        )
    asked, exact = asked_tokens(request)
    counted = timing.output_tokens
    if asked is not None and (counted > asked or (exact and counted < asked)):
        raise StreamError(
            f"the stream carried {counted} token(s), {'of' if counted < asked else 'beyond'} the "
            f"{asked} asked for: incomplete"
        )


async def stream_request(client: httpx.AsyncClient, request: ApiRequest) -> StreamTiming:
    """Send a streaming request and time every SSE event that carries text; raises on errors."""
    timing = StreamTiming(sent_at=time.perf_counter())
    await stream_into(client, request, timing)
    return timing


def take_event(timing: StreamTiming, payload: bytes, arrived: float) -> None:
    """Add one SSE payload that arrived at `arrived` to `timing`; raises StreamError on an error event."""
    if payload == b"[DONE]":
        timing.finished_at = arrived
        timing.done = True
        return
    try:
        event = json.loads(payload)
    except ValueError:
        raise StreamError(f"unparsable SSE event: {payload[:_ERROR_BODY_CHARS]!r}") from None
    if not isinstance(event, dict):
        raise StreamError(f"unexpected SSE event: {payload[:_ERROR_BODY_CHARS]!r}")
    if "error" in event:
        raise StreamError(f"error event: {json.dumps(event['error'])[:_ERROR_BODY_CHARS]}")
    if event.get("usage"):
        timing.usage = event["usage"]
    if event.get("timings"):
        timing.engine_timings = event["timings"]
    for choice in event.get("choices") or []:
        if choice.get("finish_reason"):
            timing.finish_reason = str(choice["finish_reason"])
        piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
        if piece:
            timing.text += piece
            timing.token_times.append(arrived)
