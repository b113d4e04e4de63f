"""A streaming request read by a bare blocking socket that only receives and stamps while it runs.

The asyncio client (`harness.wire.streaming`) spends a few hundred microseconds of Python per event; a
tiny model on llama-server makes tokens faster than that, so its stamps fall behind the engine and
two streams read by one event loop can be stamped out of the order the engine sent them. Here each
stream has its own thread and socket, the loop does nothing but `recv` and take the time, and the
HTTP and SSE parsing happen after the stream has ended, each event stamped with its chunk's time.

Every read waits at most `harness.deadline.request_timeout_s()` and the whole stream at most
`timeout_s` (both cut to the probe's time left); a refused, reset or silent connection raises
StreamError naming the endpoint, and `first_data` is set however the stream ends.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import h11
import httpx

from harness.deadline import DeadlineExceeded, read_timed_out, remaining_s, request_timeout_s
from harness.wire.request import ApiRequest
from harness.wire.streaming import SSEDecoder, StreamError, StreamTiming, check_complete, take_event

READ_BYTES = 65536


def stream_with_socket(
    base_url: str,
    request: ApiRequest,
    first_data: threading.Event | None = None,
    timeout_s: float = 300.0,
    stop: threading.Event | None = None,
) -> StreamTiming:
    """Send one streaming request on a fresh connection and time its events; `first_data` is set when
    the first bytes of the response body arrive, and once `stop` is set the connection is closed after
    the next read (the engine sees the client go). Raises StreamError on an error status or event."""
    url = httpx.URL(base_url)
    body = json.dumps(request.body).encode()
    connection = h11.Connection(h11.CLIENT)
    message = connection.send(
        h11.Request(
            method=request.method,
            target=url.path.rstrip("/") + request.path,
            headers=[
                ("Host", f"{url.host}:{url.port}"),
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("Connection", "close"),
                *request.headers.items(),
            ],
        )
    )
    message += connection.send(h11.Data(data=body)) + connection.send(h11.EndOfMessage())
    chunks: list[tuple[float, bytes]] = []
    endpoint = f"{url.host}:{url.port or 80}{request.path}"
    try:
        sent_at, stopped = _read(url, message, chunks, timeout_s, first_data, stop)
    except OSError as exc:  # refused, reset, timed out
        if isinstance(exc, TimeoutError) and not isinstance(exc, DeadlineExceeded):
            read_timed_out(endpoint)  # raises if the engine is hung
        raise StreamError(f"{endpoint}: {type(exc).__name__}: {exc} after {len(chunks)} read(s)") from None
    finally:
        if first_data is not None:
            first_data.set()  # never leave a waiter hanging, whatever happened to the stream
    try:
        timing = parse_chunks(connection, chunks, sent_at)
        if not stopped:
            check_complete(timing, request)
    except StreamError as exc:
        raise StreamError(f"{endpoint}: {exc}") from None
    return timing


def _read(
    url: httpx.URL,
    message: bytes,
    chunks: list[tuple[float, bytes]],
    timeout_s: float,
    first_data: threading.Event | None,
    stop: threading.Event | None,
) -> tuple[float, bool]:
    """Send `message` and stamp every chunk until the server closes; (send time, whether `stop` cut it)."""
    probe_left = remaining_s()
    deadline = time.monotonic() + (timeout_s if probe_left is None else min(timeout_s, probe_left))
    with socket.create_connection((url.host, url.port or 80), timeout=request_timeout_s()) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sent_at = time.perf_counter()
        sock.sendall(message)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the stream did not end within {timeout_s:g}s")
            sock.settimeout(min(left, request_timeout_s()))
            data = sock.recv(READ_BYTES)
            if not data:
                return sent_at, False
            chunks.append((time.perf_counter(), data))
            if first_data is not None and b"data:" in data:
                first_data.set()
            if stop is not None and stop.is_set():
                return sent_at, True


def parse_chunks(connection: h11.Connection, chunks: list[tuple[float, bytes]], sent_at: float) -> StreamTiming:
    """The response read back from its stamped chunks, each event stamped with its chunk's arrival."""
    timing, decoder = StreamTiming(sent_at=sent_at), SSEDecoder()
    status, error_body = 0, b""
    for arrived, data in chunks:
        connection.receive_data(data)
        while (event := connection.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data) and status >= 400:
                error_body += event.data
            elif isinstance(event, h11.Data):
                for payload in decoder.feed(event.data):
                    take_event(timing, payload, arrived)
            elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                break
    if status >= 400 or not status:
        raise StreamError(f"HTTP {status or 'no response'}: {error_body[:300].decode('utf-8', 'replace')}")
    if chunks and not timing.finished_at:
        timing.finished_at = chunks[-1][0]
    return timing
