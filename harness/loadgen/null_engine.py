"""The null engine: an OpenAI-compatible streaming server whose timings are known exactly.

It generates nothing: every completion or chat request streams `max_tokens` placeholder
tokens, the first `ttft_s` after the request's last byte arrived and the k-th `k * itl_s`
later (absolute deadlines, so waiting errors never accumulate; it learns how late it wakes
and wakes that much early), then a final event with the usage, its own `timings` (when it
really wrote the tokens, as llama-server reports them) and `[DONE]`. It is the ruler the
load generator is calibrated against. "Arrived" is the kernel's receive timestamp of the
request's last bytes (SO_TIMESTAMPNS), so the time this process takes to wake, accept and
read never shifts its deadlines. HTTP/1.1 comes from h11; the event loop is asyncio's default
(epoll), so it holds as many connections as its file limit allows (raised to the hard limit at
start; select() died past 1,024 descriptors). epoll rounds a wait up to the next millisecond:
the learned lead absorbs the mean of that lateness. A token whose deadline has passed goes out
without a trip through the event loop, and with a zero gap all tokens share one write, so a
zero-delay pace costs the engine one write per request and it out-runs the clients it measures.

`GET /null/stats` answers its own median time to first token and gap between tokens since the
last `DELETE /null/stats`: the truth any client's figures are compared with, late wake-ups included.

Run it in its own process so that it never shares an event loop with the load generator:
`python -m harness.loadgen.null_engine --ttft 0.1 --itl 0.01` prints `listening on PORT`,
or use `running_null_engine(pace)` from Python.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import resource
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import h11

MODEL = "null"
READ_BYTES = 65536
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python's socket module leaves it out
ANCILLARY_BYTES = socket.CMSG_SPACE(16)  # one struct timespec
BACKLOG = 4096  # pending connections the kernel queues (capped by net.core.somaxconn)
MAX_LEAD_S = 0.002  # the most it wakes early to make up for its own lateness
LEAD_GAIN = 0.05  # how fast the lead follows the lateness it measures
STATS_PATH = "/null/stats"  # GET: its own median first-token time and gap since the last reset; DELETE: also reset
_GENERATION_PATHS = {"/v1/completions": "text_completion", "/v1/chat/completions": "chat.completion.chunk"}


@dataclass(frozen=True)
class NullPace:
    """How the null engine answers."""

    ttft_s: float = 0.1
    itl_s: float = 0.01
    tokens_per_event: int = 1  # >1 bundles tokens into one SSE event, as llama-server sometimes does
    fail_every: int = 0  # every n-th generation request gets HTTP 500 (0: never)

    def arguments(self) -> list[str]:
        """The command-line form of this pace."""
        return [
            "--ttft",
            repr(self.ttft_s),
            "--itl",
            repr(self.itl_s),
            "--tokens-per-event",
            str(self.tokens_per_event),
            "--fail-every",
            str(self.fail_every),
        ]


class NullEngine:
    """Serves one pace; counts generation requests for `fail_every`."""

    def __init__(self, pace: NullPace) -> None:
        self.pace = pace
        self._requests = itertools.count(1)
        self._lead_s = 0.0  # how early it wakes so that writes land on their deadlines on average
        self._first_token_s: list[float] = []  # its own record: when it really wrote, for GET /stats
        self._gaps_s: list[float] = []

    async def handle(self, sock: socket.socket) -> None:
        """Serve one keep-alive connection until the client closes it."""
        connection, writer = h11.Connection(h11.SERVER), _Writer(sock)
        try:
            while (received := await _read_request(connection, sock)) is not None:
                await self._respond(connection, writer, *received)
                if connection.our_state is h11.MUST_CLOSE:
                    break
                connection.start_next_cycle()
        except h11.RemoteProtocolError as exc:  # not HTTP: answered 400 in one line, then closed
            await _answer_malformed(connection, writer, f"malformed HTTP request: {exc}")
        except (h11.ProtocolError, ConnectionError):
            pass
        finally:
            sock.close()

    async def _respond(
        self, connection: h11.Connection, writer: _Writer, request: h11.Request, body: bytes, arrived: float
    ) -> None:
        path = request.target.decode().split("?")[0]
        if request.method == b"GET" and path in ("/health", "/v1/models"):
            answer = {"status": "ok"} if path == "/health" else {"object": "list", "data": [{"id": MODEL}]}
            await _send_json(connection, writer, 200, answer)
        elif path == STATS_PATH and request.method in (b"GET", b"DELETE"):
            await _send_json(connection, writer, 200, self._stats())
            if request.method == b"DELETE":
                self._first_token_s, self._gaps_s = [], []
        elif request.method != b"POST" or path not in _GENERATION_PATHS:
            await _send_json(connection, writer, 404, {"error": {"message": f"no route {path}"}})
        elif self.pace.fail_every and next(self._requests) % self.pace.fail_every == 0:
            await _send_json(connection, writer, 500, {"error": {"message": "injected failure"}})
        else:
            try:
                params = _params(body)
            except MalformedRequest as exc:
                await _send_json(connection, writer, 400, {"error": {"message": str(exc)}})
                return
            await self._stream(connection, writer, _GENERATION_PATHS[path], params, arrived)

    def _stats(self) -> dict[str, Any]:
        """Its own timings since the last reset: how late it really was, whatever a client measured."""
        return {
            "requests": len(self._first_token_s),
            "first_token_ms_p50": statistics.median(self._first_token_s) * 1000 if self._first_token_s else None,
            "gap_ms_p50": statistics.median(self._gaps_s) * 1000 if self._gaps_s else None,
        }

    async def _stream(
        self, connection: h11.Connection, writer: _Writer, kind: str, params: dict[str, Any], arrived: float
    ) -> None:
        if not params.get("stream"):
            await _send_json(connection, writer, 400, {"error": {"message": "the null engine only streams"}})
            return
        tokens = params.get("max_tokens") or params.get("max_completion_tokens") or 16
        writer.write(
            connection.send(
                h11.Response(
                    status_code=200, headers=[("content-type", "text/event-stream"), ("cache-control", "no-cache")]
                )
            )
        )
        loop, pace = asyncio.get_running_loop(), self.pace
        written: list[float] = []
        due: list[bytes] = []  # events with the same deadline (a zero gap), sent together in one chunk
        for first in range(0, tokens, pace.tokens_per_event):
            count = min(pace.tokens_per_event, tokens - first)
            deadline = arrived + pace.ttft_s + (first + count - 1) * pace.itl_s
            wait = deadline - self._lead_s - loop.time()
            if wait > 0:
                _send_due(connection, writer, due)
                await writer.drain()
                await asyncio.sleep(wait)
            due.append(_token_event(kind, count, first + count == tokens))
            written.append(loop.time())
            if pace.itl_s > 0:  # each token its own write, even when late; only simultaneous ones share one
                _send_due(connection, writer, due)
            if wait > 0:  # only a wait it slept teaches it how late it wakes
                self._lead_s = min(MAX_LEAD_S, max(0.0, self._lead_s + LEAD_GAIN * (written[-1] - deadline)))
        self._first_token_s.append(written[0] - arrived)
        self._gaps_s += [later - earlier for earlier, later in zip(written, written[1:])]
        final = {"object": kind, "model": MODEL, "choices": [], "timings": _timings(arrived, written, tokens)}
        if (params.get("stream_options") or {}).get("include_usage"):
            prompt = _prompt_tokens(params)
            final["usage"] = {"prompt_tokens": prompt, "completion_tokens": tokens, "total_tokens": prompt + tokens}
        due.append(_sse(final) + b"data: [DONE]\n\n")
        _send_due(connection, writer, due)
        writer.write(connection.send(h11.EndOfMessage()))
        await writer.drain()


class MalformedRequest(ValueError):
    """A generation request the null engine cannot read: answered HTTP 400 with this one line."""


def _params(body: bytes) -> dict[str, Any]:
    """The generation request's JSON object, with what the engine reads checked; MalformedRequest otherwise."""
    try:
        params = json.loads(body)
    except ValueError as exc:  # not JSON, or not UTF-8
        raise MalformedRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(params, dict):
        raise MalformedRequest(f"the body is a JSON {type(params).__name__}, not an object")
    tokens = params.get("max_tokens") or params.get("max_completion_tokens") or 16
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise MalformedRequest(f"max_tokens must be a positive integer, not {json.dumps(tokens)[:40]}")
    messages = params.get("messages", [])
    if not isinstance(messages, list) or not all(isinstance(message, dict) for message in messages):
        raise MalformedRequest("messages must be a list of objects")
    if not isinstance(params.get("stream_options") or {}, dict):
        raise MalformedRequest("stream_options must be an object")
    return params


async def _answer_malformed(connection: h11.Connection, writer: _Writer, message: str) -> None:
    """Answer a request h11 could not parse with 400 and one line, when an answer can still be sent."""
    if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return  # mid-answer: the connection just closes
    try:
        await _send_json(connection, writer, 400, {"error": {"message": message[:200]}})
    except (h11.LocalProtocolError, OSError):
        pass


def _send_due(connection: h11.Connection, writer: _Writer, due: list[bytes]) -> None:
    """Write the events due so far as one HTTP chunk (nothing when there are none)."""
    if due:
        writer.write(connection.send(h11.Data(data=b"".join(due))))
        due.clear()


@lru_cache(maxsize=256)
def _token_event(kind: str, count: int, last: bool) -> bytes:
    """The SSE event carrying `count` placeholder tokens (made once per shape)."""
    text = " tok" * count
    finish = "length" if last else None
    choice = (
        {"index": 0, "delta": {"content": text}, "finish_reason": finish}
        if kind == "chat.completion.chunk"
        else {"index": 0, "text": text, "finish_reason": finish}
    )
    return _sse({"object": kind, "model": MODEL, "choices": [choice]})


def _timings(arrived: float, written: list[float], tokens: int) -> dict[str, float]:
    """What the engine itself measured, as llama-server reports it (its decode rate is (predicted_n - 1) /
    predicted_ms, the gaps after the first token), plus its real time to first token."""
    timings = {
        "first_token_ms": (written[0] - arrived) * 1000,
        "predicted_n": tokens,
        "predicted_ms": (written[-1] - written[0]) * 1000,
    }
    if written[-1] > written[0]:
        timings["predicted_per_second"] = (tokens - 1) / (written[-1] - written[0])
    return timings


def _sse(event: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(event).encode() + b"\n\n"


def _prompt_tokens(params: dict[str, Any]) -> int:
    """One token per whitespace-separated word (or per id of a token-id prompt)."""
    if "messages" in params:
        return sum(len(str(message.get("content", "")).split()) for message in params["messages"])
    prompt = params.get("prompt", "")
    return len(prompt) if isinstance(prompt, list) else len(str(prompt).split())


async def _read_request(connection: h11.Connection, sock: socket.socket) -> tuple[h11.Request, bytes, float] | None:
    """The next request, its body and when its last bytes arrived; None once the client has closed."""
    request, body, arrived = None, bytearray(), asyncio.get_running_loop().time()
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            data, arrived = await _receive(sock)
            connection.receive_data(data)
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, bytes(body), arrived
        elif isinstance(event, h11.ConnectionClosed):
            return None


async def _receive(sock: socket.socket) -> tuple[bytes, float]:
    """The next bytes on `sock` and, on the event loop's clock, when the kernel received them."""
    loop = asyncio.get_running_loop()
    while True:
        try:
            data, ancillary, _, _ = sock.recvmsg(READ_BYTES, ANCILLARY_BYTES)
        except BlockingIOError:
            await _readable(loop, sock)
            continue
        return data, _kernel_arrival(ancillary, loop)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


def _kernel_arrival(ancillary: list[tuple[int, int, bytes]], loop: asyncio.AbstractEventLoop) -> float:
    """The receive timestamp (wall clock) moved onto the loop's monotonic clock; now, if there is none."""
    now = loop.time()
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            seconds, nanoseconds = struct.unpack("qq", data[:16])
            return now - (time.time_ns() - (seconds * 1_000_000_000 + nanoseconds)) / 1e9
    return now


class _Writer:
    """Writes to a non-blocking socket at once; what the socket cannot take yet waits for `drain`
    (the two StreamWriter calls the engine uses)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock, self._pending = sock, bytearray()

    def write(self, data: bytes) -> None:
        if not self._pending:
            try:
                data = data[self._sock.send(data) :]
            except BlockingIOError:
                pass
        self._pending += data

    async def drain(self) -> None:
        if self._pending:
            pending, self._pending = bytes(self._pending), bytearray()
            await asyncio.get_running_loop().sock_sendall(self._sock, pending)


async def _send_json(connection: h11.Connection, writer: _Writer, status: int, answer: dict[str, Any]) -> None:
    body = json.dumps(answer).encode()
    writer.write(
        connection.send(
            h11.Response(
                status_code=status, headers=[("content-type", "application/json"), ("content-length", str(len(body)))]
            )
        )
    )
    writer.write(connection.send(h11.Data(data=body)))
    writer.write(connection.send(h11.EndOfMessage()))
    await writer.drain()


async def serve(pace: NullPace, host: str = "127.0.0.1", port: int = 0) -> None:
    """Serve forever; prints `listening on PORT` once the socket is bound."""
    loop, engine, connections = asyncio.get_running_loop(), NullEngine(pace), set()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    with socket.create_server((host, port), backlog=BACKLOG) as listener:
        listener.setblocking(False)
        print(f"listening on {listener.getsockname()[1]}", flush=True)
        while True:
            sock, _ = await loop.sock_accept(listener)
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            task = loop.create_task(engine.handle(sock))
            connections.add(task)
            task.add_done_callback(connections.discard)


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry: run the null engine until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: any free port")
    parser.add_argument("--ttft", type=float, default=NullPace.ttft_s, help="seconds to the first token")
    parser.add_argument("--itl", type=float, default=NullPace.itl_s, help="seconds between tokens")
    parser.add_argument("--tokens-per-event", type=int, default=NullPace.tokens_per_event)
    parser.add_argument("--fail-every", type=int, default=NullPace.fail_every)
    args = parser.parse_args(argv)
    pace = NullPace(args.ttft, args.itl, args.tokens_per_event, args.fail_every)
    try:
        asyncio.run(serve(pace, args.host, args.port))
    except KeyboardInterrupt:
        pass


@contextmanager
def running_null_engine(pace: NullPace = NullPace()) -> Iterator[str]:
    """Start the null engine in its own process; yields its base URL and stops it afterwards."""
    process = subprocess.Popen(
        [sys.executable, __file__, *pace.arguments()],  # by path: stdlib and h11 only
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the null engine did not start (exit {process.poll()}): {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[-1])}"
    finally:
        process.terminate()
        process.wait(timeout=10)


if __name__ == "__main__":
    main()
