"""A load balancer over engine replicas: concurrency without batching, for the continuous-batching negative.

Each connection goes to the next replica in turn, byte for byte (streams stay streams). `GET /metrics`
answers with every replica's samples summed, as an aggregating metrics proxy would, so the engine-wide
counters are honest: the replicas' steps and tokens together; unless `rewrite_metrics` is given, which
rewrites that text first (a lying proxy, e.g. `fewer_steps`).
"""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from collections import defaultdict
from collections.abc import Callable

import httpx

HEAD_END = b"\r\n\r\n"
START_TIMEOUT_S = 10.0


def summed_metrics(texts: list[str]) -> str:
    """Prometheus samples with the same name and labels added up across `texts` (comments dropped)."""
    totals: dict[str, float] = defaultdict(float)
    for text in texts:
        for line in text.splitlines():
            if line and not line.startswith("#"):
                series, _, value = line.rpartition(" ")
                totals[series] += float(value)
    return "".join(f"{series} {value}\n" for series, value in totals.items())


def fewer_steps(text: str, divisor: float = 3.0) -> str:
    """Metrics text with every step counter (`n_decode_total`, vLLM's iteration counters) divided by `divisor`:
    counters claiming `divisor` sequences per forward pass."""
    return re.sub(
        r"^(\S*(?:n_decode_total|iteration_tokens_total_count)\S*) (\S+)$",
        lambda match: f"{match.group(1)} {float(match.group(2)) / divisor}",
        text,
        flags=re.M,
    )


class ReplicaProxy:
    """Round-robin TCP proxy on 127.0.0.1 in its own thread and event loop; a context manager."""

    def __init__(self, replica_urls: list[str], rewrite_metrics: Callable[[str], str] | None = None) -> None:
        self.replicas = [httpx.URL(url) for url in replica_urls]
        self.rewrite_metrics = rewrite_metrics
        self._next = itertools.cycle(range(len(self.replicas)))
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.url = ""

    def __enter__(self) -> ReplicaProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(timeout=START_TIMEOUT_S)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=START_TIMEOUT_S)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=START_TIMEOUT_S)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        while HEAD_END not in head and (data := await reader.read(65536)):
            head += data
        try:
            if head.startswith(b"GET /metrics "):
                await self._metrics(writer)
            elif head:
                await self._pipe(head, reader, writer)
        finally:
            writer.close()

    async def _metrics(self, writer: asyncio.StreamWriter) -> None:
        async with httpx.AsyncClient(timeout=5.0) as client:
            texts = [(await client.get(str(url.join("/metrics")))).text for url in self.replicas]
        summed = summed_metrics(texts)
        body = (self.rewrite_metrics(summed) if self.rewrite_metrics else summed).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()

    async def _pipe(self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        replica = self.replicas[next(self._next)]
        upstream_reader, upstream_writer = await asyncio.open_connection(replica.host, replica.port)
        upstream_writer.write(head)

        async def copy(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            if sink.can_write_eof():
                sink.write_eof()

        try:
            await asyncio.gather(copy(reader, upstream_writer), copy(upstream_reader, writer))
        except ConnectionError:
            pass
        finally:
            upstream_writer.close()
