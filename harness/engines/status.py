"""Where each engine project stands (active, maintenance, dormant, superseded), with the source that says so.

One place for the fact: each adapter's `status` ClassVar holds one of these; `infercheck engines`
lists it and the report header marks the columns whose project is not active. The states and
dates follow /work/shared/engines-2026.md (the engines' own repositories, read up to 2026-09).
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Literal

State = Literal["active", "maintenance", "dormant", "superseded"]


@dataclass(frozen=True)
class EngineStatus:
    """A project's state, since when, what the state rests on, and the day it was last checked."""

    state: State
    source: str  # a URL or repository reference that shows the state
    since: datetime.date | None = None  # None for active projects
    note: str = ""
    checked: datetime.date = datetime.date(2026, 12, 2)

    def label(self) -> str:
        """One line for listings: `maintenance since 2025-12-11 (source)`."""
        since = f" since {self.since.isoformat()}" if self.since else ""
        return f"{self.state}{since} ({self.source})"
