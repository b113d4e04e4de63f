"""The report's performance section: the latest sweep of each engine (tables, Pareto and percentile plots,
saturation point), the latest calibration of the load generators, and the exact metric definitions."""

from __future__ import annotations

from harness.bench.outputs import (
    ACCURACY_COLUMNS, CEILING_COLUMNS, LEVEL_COLUMNS, accuracy_rows, ceiling_rows, describe_level, level_row,
    provenance_text,
)
from harness.bench.plots import latency_percentiles_svg, pareto_svg
from harness.bench.records import BenchRecord, Calibration, latest_per_engine
from harness.bench.saturation import saturation_point
from harness.loadgen import DEFINITIONS
from harness.report.context import ReportContext
from harness.report.format import table_cell
from harness.report.section import ReportSection
from harness.records.results import BENCH_FILE, engine_slug

THROUGHPUT_PLOT = "performance/throughput-latency.svg"
PERCENTILES_PLOT = "performance/latency-percentiles.svg"


def render_performance(context: ReportContext) -> ReportSection:
    """Tables and plots from the latest benchmark record of each engine (nothing without records)."""
    latest = latest_per_engine(context.bench)
    sweeps = [record for record in latest if record.calibration is None]
    calibrations = [record for record in latest if record.calibration is not None]
    if not latest:
        return ReportSection(markdown="")
    lines = ["## Performance", ""]
    files = {}
    if sweeps:
        lines += ["Sweeps (`infercheck bench`), the latest run of each engine: closed-loop concurrency levels and "
                  "open-loop Poisson rates. A level whose client was the bottleneck is marked unreliable.", "",
                  f"![Throughput vs latency]({THROUGHPUT_PLOT})", "", f"![TTFT and ITL percentiles]({PERCENTILES_PLOT})"]
        files = {THROUGHPUT_PLOT: pareto_svg(sweeps), PERCENTILES_PLOT: latency_percentiles_svg(sweeps)}
    for record in sweeps:
        point = saturation_point(record.levels)
        lines += ["", f"### {record.engine.name}", "", _provenance(record, context.results_href), "",
                  _table(LEVEL_COLUMNS, [level_row(level) for level in record.levels]), "",
                  f"Saturation point: {describe_level(point) if point else 'not found in this sweep'}."]
    for record in calibrations:
        assert record.calibration is not None
        lines += ["", "### Load generator calibration", "", _provenance(record, context.results_href), "",
                  _calibration_text(record.calibration), "",
                  _table(ACCURACY_COLUMNS, accuracy_rows(record.calibration)), "",
                  _table(CEILING_COLUMNS, ceiling_rows(record.calibration)), "",
                  "Tools: " + "; ".join(f"{tool.name}{f' {tool.version}' if tool.version else ''}: {tool.status}"
                                        for tool in record.calibration.tools) + "."]
    lines += ["", "### Metric definitions", "", *(f"- **{name}**: {text}" for name, text in DEFINITIONS.items())]
    return ReportSection(markdown="\n".join(lines), files=files)


def _calibration_text(calibration: Calibration) -> str:
    return (f"Every installed tool took turns on one null engine (`harness.loadgen.null_engine`) in one run, open-loop "
            f"Poisson traffic (GuideLLM: evenly spaced, its 0.8.1 Poisson profile repeats each gap once per worker). "
            f"Accuracy: TTFT {calibration.ttft_ms:g} ms, ITL {calibration.itl_ms:g} ms, "
            f"{calibration.output_tokens} output tokens; errors against the pace and against the engine's own record "
            f"of when it wrote (its lateness on a shared host is not the client's). Ceiling: zero delay; the highest "
            f"rate achieved at {calibration.ceiling_share:.0%} or more of the rate asked for.")


def _provenance(record: BenchRecord, results_href: str) -> str:
    link = f"[`{record.run_id}`]({results_href}/{engine_slug(record.engine.name)}/{record.run_id}/{BENCH_FILE})"
    return table_cell(f"Run {link}: {provenance_text(record)}")


def _table(columns: tuple[str, ...], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns),
                      *("| " + " | ".join(table_cell(cell) for cell in row) + " |" for row in rows)])
