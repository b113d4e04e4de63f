"""What one run of one load generator sends during calibration, the same for every tool."""

from __future__ import annotations

from dataclasses import dataclass

INPUT_TOKENS, OUTPUT_TOKENS = 32, 50


@dataclass(frozen=True)
class Traffic:
    """What one run of one tool sends."""

    base_url: str
    rate: float
    requests: int
