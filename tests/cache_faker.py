"""A server that fakes a prefix cache, for the prefix-caching negative: put it in front of an engine launched
with its cache off.

It remembers every prompt. A prompt sharing at least half its characters from the start with an earlier one
is taken for a cache hit: the answer claims that share of the prompt tokens as cached
(`usage.prompt_tokens_details.cached_tokens`, `timings.cache_n`). Any other prompt is taken for a control
and answered late: after twice the engine's own time, at least MIN_SLEEP_S more, so the "hits" look fast
next to it. Everything else passes through.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

MIN_SLEEP_S = 0.25
HIT_SHARE = 0.5


def _common_prefix(a: str, b: str) -> int:
    return len(os.path.commonprefix([a, b]))


class CacheFakerProxy:
    """HTTP proxy on 127.0.0.1 in its own thread; a context manager."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[str] = []
        self.guesses: list[str] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> CacheFakerProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def _guess_hit(self, prompt: str) -> float:
        """The share of `prompt` an earlier prompt started with, when at least HIT_SHARE (else 0); remembers it."""
        with self._lock:
            share = max((_common_prefix(prompt, seen) / max(len(prompt), 1) for seen in self.seen), default=0.0)
            self.seen.append(prompt)
            self.guesses.append("hit" if share >= HIT_SHARE else "control")
        return share if share >= HIT_SHARE else 0.0

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the base class's name)
                pass

            def _answer(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                response = httpx.get(proxy.upstream + self.path, timeout=60)
                self._answer(response.status_code, response.content, response.headers.get("content-type", ""))

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                body = json.loads(raw or b"{}")
                prompt = body.get("prompt")
                share = proxy._guess_hit(prompt) if isinstance(prompt, str) else 0.0
                started = time.perf_counter()
                response = httpx.post(proxy.upstream + self.path, content=raw, timeout=600, headers=_json_header())
                elapsed = time.perf_counter() - started
                content = response.content
                if isinstance(prompt, str) and response.status_code == 200:
                    answer = response.json()
                    usage = answer.setdefault("usage", {})
                    cached = int(share * (usage.get("prompt_tokens") or 0))
                    usage["prompt_tokens_details"] = {"cached_tokens": cached}
                    answer.setdefault("timings", {})["cache_n"] = cached
                    content = json.dumps(answer).encode()
                    if not share:
                        time.sleep(max(MIN_SLEEP_S, 2 * elapsed))
                self._answer(response.status_code, content, response.headers.get("content-type", ""))

        return Handler


def _json_header() -> dict[str, str]:
    return {"Content-Type": "application/json"}
