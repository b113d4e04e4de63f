"""Read samples from an engine's Prometheus text exposition (`/metrics`)."""

from __future__ import annotations

import re


def metric_total(metrics: str, name: str) -> float | None:
    """Sum of a Prometheus metric's samples (all label sets), or None when absent."""
    values = [
        float(match.group(1)) for match in re.finditer(rf"^{re.escape(name)}(?:{{[^}}]*}})?\s+(\S+)$", metrics, re.M)
    ]
    return sum(values) if values else None


def metric_values(metrics: str, names: dict[str, str]) -> dict[str, float]:
    """{key: total of metric `names[key]`} for the metrics present in `metrics`."""
    totals = {key: metric_total(metrics, name) for key, name in names.items()}
    return {key: value for key, value in totals.items() if value is not None}
