"""Single-connection HTTP clients, one per request in flight, each request on a fresh connection.

httpx's shared pool (httpcore) scans every connection, with socket checks, each time a request
is assigned: with hundreds of requests in flight that scan costs more than the requests
themselves and delays token reads. A single-connection client per in-flight request keeps the
cost of a request constant. Connections are not kept alive: llama-server sometimes closes a
kept-alive connection between requests, which would fail the next request sent on it (the
connection is opened before the request's send time is stamped, so it never counts as latency).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx


class ConnectionClients:
    """A free list of single-connection clients to one server."""

    def __init__(self, base_url: str, timeout_s: float, ready: int = 1) -> None:
        """`ready` clients are made at once, so making them does not delay the first requests."""
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._ssl = httpx.create_ssl_context()  # made once: loading the CA bundle takes tens of ms
        self._all: list[httpx.AsyncClient] = []
        self._free = [self._open() for _ in range(ready)]

    @asynccontextmanager
    async def client(self) -> AsyncIterator[httpx.AsyncClient]:
        """A client no other request is using, for the duration of one request."""
        client = self._free.pop() if self._free else self._open()
        try:
            yield client
        finally:
            self._free.append(client)

    def _open(self) -> httpx.AsyncClient:
        client = httpx.AsyncClient(base_url=self._base_url, timeout=self._timeout_s, verify=self._ssl,
                                   limits=httpx.Limits(max_connections=1, max_keepalive_connections=0))
        self._all.append(client)
        return client

    async def aclose(self) -> None:
        """Close every connection."""
        for client in self._all:
            await client.aclose()
        self._free, self._all = [], []
