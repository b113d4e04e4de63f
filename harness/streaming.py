"""Timed SSE streaming: when each token arrived, as read off the socket."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.engines.base import ApiRequest


@dataclass
class StreamTiming:
    """Arrival times (perf_counter seconds) of one streamed completion."""

    sent_at: float
    token_times: list[float] = field(default_factory=list)
    text: str = ""
    usage: dict[str, Any] | None = None
    finished_at: float = 0.0

    @property
    def ttft_s(self) -> float:
        return self.token_times[0] - self.sent_at if self.token_times else float("nan")

    @property
    def gaps_s(self) -> list[float]:
        return [later - earlier for earlier, later in zip(self.token_times, self.token_times[1:])]


async def stream_request(client: httpx.AsyncClient, request: ApiRequest,
                         on_first_token: Any = None) -> StreamTiming:
    """Send a streaming request and time every SSE event that carries text."""
    timing = StreamTiming(sent_at=time.perf_counter())
    async with client.stream(request.method, request.path, json=request.body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            arrived = time.perf_counter()
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                break
            event = json.loads(data)
            if event.get("usage"):
                timing.usage = event["usage"]
            for choice in event.get("choices", []):
                piece = choice.get("text") or (choice.get("delta") or {}).get("content") or ""
                if piece:
                    timing.text += piece
                    timing.token_times.append(arrived)
                    if on_first_token is not None and len(timing.token_times) == 1:
                        on_first_token()
    timing.finished_at = time.perf_counter()
    return timing
