"""The report's performance section: the latest sweep of each engine as tables and SVG plots."""

from __future__ import annotations

from harness.bench.plots import latency_percentiles_svg, throughput_latency_svg
from harness.bench.records import BenchLevel, BenchRecord, latest_per_engine
from harness.loadgen import Percentiles
from harness.report.context import ReportContext
from harness.report.format import table_cell
from harness.report.sections import ReportSection
from harness.results import BENCH_FILE, engine_slug

THROUGHPUT_PLOT = "performance/throughput-latency.svg"
PERCENTILES_PLOT = "performance/latency-percentiles.svg"
NONE = "—"
COLUMNS = ("Concurrency", "OK / failed", "Req/s", "Output tok/s", "TTFT p50 / p99 (ms)", "ITL p50 / p99 (ms)",
           "TPOT p50 (ms)", "E2E p50 (s)", "Goodput (req/s)", "Engine decode tok/s p50")


def render_performance(context: ReportContext) -> ReportSection:
    """Tables and plots from the latest benchmark record of each engine (nothing without records)."""
    records = latest_per_engine(context.bench)
    if not records:
        return ReportSection(markdown="")
    lines = ["## Performance", "",
             "Closed-loop concurrency sweeps (`infercheck bench`), the latest run of each engine. TTFT is "
             "measured from the request leaving the client to the first token, ITL is every gap between "
             "token events, TPOT is the decode time over the output tokens after the first.", "",
             f"![Throughput vs latency]({THROUGHPUT_PLOT})", "", f"![TTFT and ITL percentiles]({PERCENTILES_PLOT})"]
    for record in records:
        lines += ["", f"### {record.engine.name}", "", _provenance(record, context.results_href), "",
                  "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS),
                  *(_row(level) for level in record.levels)]
    return ReportSection(markdown="\n".join(lines), files={THROUGHPUT_PLOT: throughput_latency_svg(records),
                                                           PERCENTILES_PLOT: latency_percentiles_svg(records)})


def _provenance(record: BenchRecord, results_href: str) -> str:
    link = f"[`{record.run_id}`]({results_href}/{engine_slug(record.engine.name)}/{record.run_id}/{BENCH_FILE})"
    model = f"{record.model.name} ({record.model.format})" if record.model else "unknown model"
    work = record.workload
    return table_cell(f"Run {link}: {record.engine.name} {record.engine.version}, {model}, on {record.host.hostname} "
                      f"({record.host.cpu}, {record.host.cpu_count} CPUs); {work.input_tokens} input and "
                      f"{work.output_tokens} output tokens per request ({work.api} API, EOS ignored).")


def _row(level: BenchLevel) -> str:
    stats = level.stats
    cells = [str(stats.concurrency), f"{stats.completed} / {stats.failed}", f"{stats.request_throughput:.2f}",
             f"{stats.output_throughput:.1f}", _pair(stats.ttft_s), _pair(stats.itl_s),
             _ms(stats.tpot_s.p50) if stats.tpot_s else NONE, f"{stats.e2e_s.p50:.3f}" if stats.e2e_s else NONE,
             f"{stats.goodput:.2f}" if stats.goodput is not None else NONE,
             f"{level.engine_decode_tps.p50:.1f}" if level.engine_decode_tps else NONE]
    return "| " + " | ".join(cells) + " |"


def _pair(summary: Percentiles | None) -> str:
    return f"{_ms(summary.p50)} / {_ms(summary.p99)}" if summary else NONE


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"
