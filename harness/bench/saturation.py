"""Where a sweep saturates the engine: on its own, so the report can read benchmark records without the
sweep's engine, model and load-generator imports."""

from __future__ import annotations

from collections.abc import Sequence

from harness.bench.records import BenchLevel

SATURATED = 0.95  # a level saturates the engine when it reaches this share of the sweep's best throughput


def saturation_point(levels: Sequence[BenchLevel]) -> BenchLevel | None:
    """Where the engine saturates: closed loop, the lowest concurrency reaching SATURATED of the sweep's best
    request throughput; open loop, the highest rate still achieved at SATURATED of the rate asked for
    (None when no level qualifies). Client-bound levels do not count."""
    reliable = [level for level in levels if not (level.stats.client and level.stats.client.bound)]
    closed = [level for level in reliable if level.stats.rate is None]
    opened = [level for level in reliable if level.stats.rate is not None]
    if opened:
        kept = [level for level in opened if level.stats.request_throughput >= SATURATED * (level.stats.rate or 0)]
        return max(kept, key=lambda level: level.stats.rate or 0, default=None)
    best = max((level.stats.request_throughput for level in closed), default=0.0)
    return next(
        (
            level
            for level in sorted(closed, key=lambda level: level.stats.concurrency or 0)
            if best and level.stats.request_throughput >= SATURATED * best
        ),
        None,
    )
