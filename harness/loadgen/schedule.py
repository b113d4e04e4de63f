"""When requests are sent: all at once (closed loop) or as a Poisson process (open loop)."""

from __future__ import annotations

import numpy as np


def arrival_offsets(count: int, rate: float | None, seed: int = 0) -> list[float]:
    """Send times in seconds after the start: Poisson arrivals at `rate` per second, or all at 0 when None.

    Inter-arrival gaps are exponential with mean 1/rate, drawn from a seeded generator,
    so the same seed gives the same schedule. The first request goes at 0.
    """
    if rate is None or np.isinf(rate):
        return [0.0] * count
    if rate <= 0:
        raise ValueError(f"request rate must be positive, got {rate}")
    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=count)
    gaps[0] = 0.0
    return np.cumsum(gaps).tolist()
