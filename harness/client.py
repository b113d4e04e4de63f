"""HTTP client for probes: every request and an excerpt of its answer become evidence."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from harness.engines.base import ApiRequest
from harness.results import Exchange

_EXCERPT_CHARS = 2000


def excerpt(value: Any, limit: int = _EXCERPT_CHARS) -> Any:
    """Keep evidence readable: long strings and big JSON documents are cut."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… [{len(value) - limit} more chars]"
    text = json.dumps(value, ensure_ascii=False)
    return value if len(text) <= limit else excerpt(text, limit)


class EngineHTTPError(RuntimeError):
    """The engine answered a request with an error status."""

    def __init__(self, exchange: Exchange) -> None:
        super().__init__(f"HTTP {exchange.status_code} from {exchange.path}: {excerpt(exchange.response, 300)}")
        self.exchange = exchange


class EvidenceClient:
    """Sends requests to one engine and keeps the exchanges for the probe's record."""

    def __init__(self, base_url: str, timeout_s: float = 120.0) -> None:
        self.base_url = base_url
        # Engines close idle keep-alive connections on their own schedule; never reuse a stale one.
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, limits=httpx.Limits(keepalive_expiry=0.5))
        self.exchanges: list[Exchange] = []

    def send(self, request: ApiRequest, check: bool = True) -> tuple[int, Any]:
        """Send one request; returns (status code, parsed JSON or text)."""
        started = time.perf_counter()
        response = self._http.request(request.method, request.path,
                                      json=request.body if request.method != "GET" else None)
        elapsed = time.perf_counter() - started
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        exchange = Exchange(method=request.method, path=request.path, request=excerpt(request.body),
                            status_code=response.status_code, response=excerpt(payload), elapsed_s=round(elapsed, 4))
        self.exchanges.append(exchange)
        if check and response.status_code >= 400:
            raise EngineHTTPError(exchange)
        return response.status_code, payload

    def get(self, path: str, check: bool = True) -> tuple[int, Any]:
        """GET `path`."""
        return self.send(ApiRequest(path, {}, method="GET"), check=check)

    def take_exchanges(self) -> list[Exchange]:
        """The exchanges since the last call, handed to a verdict."""
        taken, self.exchanges = self.exchanges, []
        return taken

    def close(self) -> None:
        self._http.close()
