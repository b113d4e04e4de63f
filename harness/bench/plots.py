"""Benchmark plots as SVG text, byte-for-byte reproducible from the same records.

Figures are drawn without pyplot, so no GUI backend is ever involved. The SVG writer's element
ids come from `svg.hashsalt` (fixed here) and its Date metadata is left out, so the same records
and the same matplotlib version always give the same bytes.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import matplotlib
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from harness.bench.records import BenchLevel, BenchRecord
from harness.loadgen import Percentiles

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

_RC: dict[RcKeyType, Any] = {"svg.hashsalt": "infercheck", "svg.fonttype": "path", "font.size": 9}
_PERCENTILES = (("p50", "-", "o"), ("p90", "--", "s"), ("p99", ":", "^"))


def pareto_svg(records: list[BenchRecord]) -> str:
    """Output tokens per second against median end-to-end latency, one colour per engine, every level a point
    (labels: concurrency c= or rate r=); the Pareto frontier (no other level is both faster and higher) is the
    solid line, and levels whose client was the bottleneck are crosses."""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(6.4, 4.0))
        axes = figure.subplots()
        for index, record in enumerate(records):
            points = [
                (level.stats.e2e_s.p50, level.stats.output_throughput, level)
                for level in record.levels
                if level.stats.e2e_s
            ]
            if not points:
                continue
            color = f"C{index}"
            frontier = pareto_frontier([(x, y) for x, y, _ in points])
            axes.plot([x for x, _ in frontier], [y for _, y in frontier], color=color, label=_label(record))
            for x, y, level in points:
                bound = level.stats.client is not None and level.stats.client.bound
                axes.plot([x], [y], marker="x" if bound else "o", color=color, linestyle="none")
                name = f"c={level.stats.concurrency}" if level.stats.rate is None else f"r={level.stats.rate:g}"
                axes.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        axes.set_xlabel("median end-to-end latency (s)")
        axes.set_ylabel("output tokens / s")
        axes.set_title("Throughput vs latency: Pareto frontier (x: client-bound level)")
        axes.margins(0.12)
        _finish(axes, records)
        return _svg(figure)


def pareto_frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The (latency, throughput) points no other point beats on both (lower latency and higher
    throughput), by latency."""
    frontier: list[tuple[float, float]] = []
    for latency, throughput in sorted(points, key=lambda point: (point[0], -point[1])):
        if not frontier or throughput > frontier[-1][1]:
            frontier.append((latency, throughput))
    return frontier


def latency_percentiles_svg(records: list[BenchRecord]) -> str:
    """TTFT and ITL p50/p90/p99 against concurrency, one colour per engine."""
    with matplotlib.rc_context(_RC):
        figure = Figure(figsize=(8.0, 3.6))
        ttft_axes, itl_axes = figure.subplots(1, 2)
        for index, record in enumerate(records):
            color = f"C{index}"
            _percentile_lines(ttft_axes, record, lambda level: level.stats.ttft_s, color)
            _percentile_lines(itl_axes, record, lambda level: level.stats.itl_s, color)
        levels = sorted(
            {
                level.stats.concurrency
                for record in records
                for level in record.levels
                if level.stats.concurrency is not None
            }
        )
        for axes, name in ((ttft_axes, "Time to first token"), (itl_axes, "Inter-token latency")):
            axes.set_xlabel("concurrency")
            axes.set_ylabel("ms")
            axes.set_title(name)
            axes.set_xscale("log", base=2)
            axes.set_xticks(levels, [str(level) for level in levels])
            axes.minorticks_off()
            _finish(axes, records)
        figure.suptitle("Latency percentiles: p50 solid, p90 dashed, p99 dotted")
        figure.tight_layout()
        return _svg(figure)


def _percentile_lines(
    axes: Axes, record: BenchRecord, metric: Callable[[BenchLevel], Percentiles | None], color: str
) -> None:
    measured = [(level.stats.concurrency, metric(level)) for level in record.levels if level.stats.rate is None]
    levels = [(c, summary) for c, summary in measured if c is not None and summary is not None]
    for name, style, marker in _PERCENTILES:
        axes.plot(
            [concurrency for concurrency, _ in levels],
            [getattr(summary, name) * 1000 for _, summary in levels],
            linestyle=style,
            marker=marker,
            color=color,
            label=_label(record) if name == "p50" else None,
        )


def _label(record: BenchRecord) -> str:
    model = f", {record.model.name} {record.model.format}" if record.model else ""
    return f"{record.engine.name}{model}"


def _finish(axes: Axes, records: list[BenchRecord]) -> None:
    axes.grid(True, alpha=0.3)
    if records:
        axes.legend(fontsize=7)


def _svg(figure: Figure) -> str:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", metadata={"Date": None})
    return buffer.getvalue()
