"""HTTP client for probes: every request and an excerpt of its answer become evidence."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from harness.deadline import read_timed_out, request_timeout_s
from harness.records.results import Exchange
from harness.wire.request import ApiRequest

_EXCERPT_CHARS = 2000


def excerpt(value: Any, limit: int = _EXCERPT_CHARS) -> Any:
    """Keep evidence readable: long strings and big JSON documents are cut."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"… [{len(value) - limit} more chars]"
    text = json.dumps(value, ensure_ascii=False)
    return value if len(text) <= limit else excerpt(text, limit)


class EngineHTTPError(RuntimeError):
    """The engine answered a request with an error status: `rejected` (4xx, the engine refused the
    request) or not (5xx, the engine failed: an error verdict, never a rejection)."""

    def __init__(self, exchange: Exchange, base_url: str = "") -> None:
        super().__init__(
            f"HTTP {exchange.status_code} from {base_url}{exchange.path}: {excerpt(exchange.response, 300)}"
        )
        self.exchange = exchange

    @property
    def rejected(self) -> bool:
        """Whether the engine refused the request (4xx) rather than failed on it."""
        return self.exchange.status_code is not None and 400 <= self.exchange.status_code < 500


class EngineRejected(EngineHTTPError):
    """4xx: the engine refused the request (probes may count this as "rejected")."""


class EngineServerError(EngineHTTPError):
    """5xx: the engine failed on the request (an error, says nothing about the feature)."""


class EngineTransportError(RuntimeError):
    """No complete answer: the connection was refused, reset or timed out (names the endpoint)."""


def http_error(exchange: Exchange, base_url: str = "") -> EngineHTTPError:
    """The exception for an error status: EngineRejected for 4xx, EngineServerError otherwise."""
    status = exchange.status_code or 0
    return (EngineRejected if 400 <= status < 500 else EngineServerError)(exchange, base_url)


class EvidenceClient:
    """Sends requests to one engine and keeps the exchanges for the probe's record.

    Each read waits at most `harness.deadline.request_timeout_s()` (cut to the probe's time left)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        # Engines close idle keep-alive connections on their own schedule; never reuse a stale one.
        self._http = httpx.Client(base_url=base_url, limits=httpx.Limits(keepalive_expiry=0.5))
        self.exchanges: list[Exchange] = []

    def send(self, request: ApiRequest, check: bool = True) -> tuple[int, Any]:
        """Send one request; returns (status code, parsed JSON or text). Raises EngineRejected (4xx),
        EngineServerError (5xx) or EngineTransportError (refused, reset, timed out)."""
        started = time.perf_counter()
        try:
            response = self._http.request(
                request.method,
                request.path,
                timeout=request_timeout_s(),
                json=request.body if request.method != "GET" else None,
                headers=request.headers,
            )
        except httpx.HTTPError as exc:
            elapsed = round(time.perf_counter() - started, 4)
            self.exchanges.append(
                Exchange(
                    method=request.method,
                    path=request.path,
                    request=excerpt(request.body),
                    response=f"{type(exc).__name__}: {exc}",
                    elapsed_s=elapsed,
                )
            )
            if isinstance(exc, httpx.ReadTimeout):
                read_timed_out(f"{request.method} {self.base_url}{request.path}")  # raises if the engine is hung
            raise EngineTransportError(
                f"{request.method} {self.base_url}{request.path}: {type(exc).__name__}"
                f"{f': {exc}' if str(exc) else ''} (after {elapsed:.1f}s)"
            ) from None
        elapsed = time.perf_counter() - started
        try:
            payload: Any = response.json()
        except ValueError:
            payload = response.text
        exchange = Exchange(
            method=request.method,
            path=request.path,
            request=excerpt(request.body),
            status_code=response.status_code,
            response=excerpt(payload),
            elapsed_s=round(elapsed, 4),
        )
        self.exchanges.append(exchange)
        if check and response.status_code >= 400:
            raise http_error(exchange, self.base_url)
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
