"""The load generator's HTTP path: raw bytes stamped on arrival now, HTTP and SSE parsed after the run.

The request's bytes are made with h11 before the run starts. During the run a request costs one
TCP connection, one write and one `data_received` call per arriving segment, which only appends
`(perf_counter(), bytes)`: no HTTP parser, SSE splitter or JSON decoder runs while tokens are
arriving, so the client's own work cannot delay the stamp of the next token. Afterwards `parse`
replays the stamped bytes through h11 and the SSE decoder; every event gets the stamp of the
segment that completed it, exactly as if it had been parsed on arrival.

Each request has its own connection with `Connection: close` (the end of the response is the
server closing it). It is opened before the send is stamped, so connecting never counts as
latency, and a server that drops kept-alive connections between requests (llama-server does)
can never fail a request sent on a stale one.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

from harness.wire.request import ApiRequest
from harness.wire.streaming import StreamError, StreamTiming, check_complete
from harness.wire.streaming_socket import parse_chunks


@dataclass(frozen=True)
class Target:
    """Where requests go: host and port of an http:// base URL (and its path prefix)."""

    host: str
    port: int
    prefix: str = ""

    @classmethod
    def of(cls, base_url: str) -> Target:
        """The target of an `http://host:port[/prefix]` URL; raises ValueError for anything else."""
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"the load generator speaks plain http:// only, not {base_url!r}")
        return cls(parts.hostname, parts.port or 80, parts.path.rstrip("/"))


def _request_events(target: Target, request: ApiRequest) -> list[Any]:
    body = json.dumps(request.body).encode()
    headers = [
        ("host", f"{target.host}:{target.port}"),
        ("content-type", "application/json"),
        ("accept", "text/event-stream"),
        ("content-length", str(len(body))),
        ("connection", "close"),
        *request.headers.items(),
    ]
    return [
        h11.Request(method=request.method, target=target.prefix + request.path, headers=headers),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ]


def encode(target: Target, request: ApiRequest) -> bytes:
    """The request's complete HTTP/1.1 bytes."""
    connection = h11.Connection(h11.CLIENT)
    return b"".join(connection.send(event) or b"" for event in _request_events(target, request))


@dataclass
class Exchange:
    """One request's raw record: when it was sent, every segment as it arrived, and how it ended."""

    sent_at: float = 0.0
    chunks: list[tuple[float, bytes]] | None = None
    closed_at: float = 0.0
    error: str | None = None


class _Recorder(asyncio.Protocol):
    """Appends each arriving segment with its arrival time; resolves `done` when the server closes."""

    def __init__(self, exchange: Exchange, done: asyncio.Future[None]) -> None:
        self._exchange, self._done = exchange, done
        self._chunks: list[tuple[float, bytes]] = []
        exchange.chunks = self._chunks

    def data_received(self, data: bytes) -> None:
        self._chunks.append((time.perf_counter(), data))

    def connection_lost(self, exc: Exception | None) -> None:
        self._exchange.closed_at = time.perf_counter()
        if exc is not None and self._exchange.error is None:
            self._exchange.error = f"{type(exc).__name__}: {exc}"
        if not self._done.done():
            self._done.set_result(None)


async def exchange(target: Target, payload: bytes, timeout_s: float) -> Exchange:
    """Connect, send `payload` (stamping the send), and record the response until the server closes."""
    loop = asyncio.get_running_loop()
    record, done = Exchange(sent_at=time.perf_counter()), loop.create_future()  # re-stamped once connected
    try:
        transport, _ = await asyncio.wait_for(
            loop.create_connection(lambda: _Recorder(record, done), target.host, target.port), timeout_s
        )
    except (OSError, asyncio.TimeoutError) as exc:
        record.error = f"ConnectError: {exc or type(exc).__name__}"
        return record
    record.sent_at = time.perf_counter()
    transport.write(payload)
    timer = loop.call_later(timeout_s, _expire, record, transport, f"{target.host}:{target.port}", timeout_s)
    try:
        await done
    except asyncio.CancelledError:
        record.error = record.error or "cancelled"
        transport.abort()
        raise
    finally:
        timer.cancel()
    return record


def _expire(record: Exchange, transport: asyncio.Transport, endpoint: str, timeout_s: float) -> None:
    record.error = f"ReadTimeout: {endpoint} sent no end of stream within {timeout_s:g}s"
    transport.abort()


def parse(target: Target, request: ApiRequest, record: Exchange) -> tuple[StreamTiming, str | None]:
    """The request's timing from its recorded bytes, and why it failed if it did (as the socket reader
    of `harness.wire.streaming_socket` parses and judges a stream)."""
    if record.chunks is None:
        return StreamTiming(sent_at=record.sent_at), record.error or "never sent"
    connection = h11.Connection(h11.CLIENT)
    for event in _request_events(target, request):
        connection.send(event)
    try:
        timing = parse_chunks(connection, record.chunks, record.sent_at)
        check_complete(timing, request)
    except (h11.RemoteProtocolError, StreamError) as exc:
        return StreamTiming(sent_at=record.sent_at), record.error or f"{type(exc).__name__}: {exc}"
    if not timing.token_times:
        return timing, "the stream ended without a token"
    return timing, None
