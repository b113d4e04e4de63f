"""One HTTP request in an engine's own API, as adapters build it and the clients send it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ApiRequest:
    """One HTTP request in the engine's own API."""

    path: str
    body: dict[str, Any]
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)  # e.g. an API key the engine asks for (TabbyAPI)
