"""A benchmark record's other forms: CSV rows and a self-contained HTML page (tables, inline SVG plot,
metric definitions), written beside its bench.json; the rows are the ones the report's tables show."""

from __future__ import annotations

import csv
import html
import io
from pathlib import Path

from harness.bench.plots import pareto_svg
from harness.bench.records import BenchLevel, BenchRecord, Calibration
from harness.bench.saturation import saturation_point
from harness.loadgen import DEFINITIONS, Percentiles

CSV_FILE, HTML_FILE = "bench.csv", "bench.html"
LEVEL_COLUMNS = (
    "concurrency",
    "requested rate (req/s)",
    "offered rate (req/s)",
    "ok / failed / cancelled",
    "achieved (req/s)",
    "output tok/s",
    "TTFT p50 / p99 (ms)",
    "ITL p50 / p99 (ms)",
    "TPOT p50 (ms)",
    "E2E p50 (s)",
    "goodput (req/s)",
    "client CPU (ms/req)",
    "client busy / waiting",
    "reliable",
)
ACCURACY_COLUMNS = (
    "tool",
    "requested (req/s)",
    "achieved (req/s)",
    "ok / failed",
    "TTFT p50 (ms)",
    "TTFT error vs pace",
    "TTFT error vs engine's own",
    "ITL p50 (ms)",
    "ITL error vs pace",
    "ITL error vs engine's own",
    "client CPU (ms/req)",
    "client-bound",
)
CEILING_COLUMNS = ("tool", "ceiling (req/s)", "past it", "client CPU at the ceiling (ms/req)")
NONE = "—"


def level_row(level: BenchLevel) -> list[str]:
    """One sweep level as table cells."""
    stats, client = level.stats, level.stats.client
    return [
        str(stats.concurrency or NONE),
        _num(stats.rate),
        _num(stats.offered_rate),
        f"{stats.completed} / {stats.failed} / {stats.cancelled}",
        f"{stats.request_throughput:.2f}",
        f"{stats.output_throughput:.1f}",
        _pair(stats.ttft_s),
        _pair(stats.itl_s),
        _ms(stats.tpot_s.p50) if stats.tpot_s else NONE,
        f"{stats.e2e_s.p50:.3f}" if stats.e2e_s else NONE,
        f"{stats.goodput:.2f}" if stats.goodput is not None else NONE,
        f"{client.cpu_ms_per_request:.3f}" if client else NONE,
        f"{client.saturation:.0%} / {client.waiting:.0%}" if client else NONE,
        (f"no: {client.reason}" if client.bound else "yes") if client else "unknown",
    ]


def accuracy_rows(calibration: Calibration) -> list[list[str]]:
    """The paced points: each tool's median TTFT and ITL against the pace and the engine's own record."""
    rows = []
    for point in sorted((p for p in calibration.points if p.pace == "paced"), key=lambda p: (p.rate, p.tool)):
        rows.append(
            [
                point.tool,
                f"{point.rate:g}",
                f"{point.achieved_rate:.1f}",
                f"{point.completed} / {point.failed}",
                _num(point.ttft_p50_ms, ".2f"),
                _error(point.ttft_p50_ms, calibration.ttft_ms),
                _error(point.ttft_p50_ms, point.engine_ttft_p50_ms),
                _num(point.itl_p50_ms, ".3f"),
                _error(point.itl_p50_ms, calibration.itl_ms),
                _error(point.itl_p50_ms, point.engine_gap_p50_ms),
                _num(point.client_cpu_ms_per_request, ".3f"),
                NONE if point.client_bound is None else ("yes" if point.client_bound else "no"),
            ]
        )
    return rows


def ceiling_rows(calibration: Calibration) -> list[list[str]]:
    """Each tool's ceiling on the zero-delay engine, and what happened past it."""
    rows = []
    for tool in dict.fromkeys(p.tool for p in calibration.points if p.pace == "zero"):
        best, past = calibration.ceiling(tool)
        at = next((p for p in calibration.points if p.tool == tool and p.pace == "zero" and p.rate == best), None)
        rows.append(
            [
                tool,
                f"{best:g}" if best else f"below {min(p.rate for p in calibration.points):g}",
                f"{past.achieved_rate:.0f} achieved at {past.rate:g}" if past else "not reached",
                _num(at.client_cpu_ms_per_request if at else None, ".3f"),
            ]
        )
    return rows


def write_outputs(record: BenchRecord, folder: Path) -> list[Path]:
    """bench.csv and bench.html beside the record; the paths written."""
    tables = _tables(record)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for title, columns, rows in tables:
        writer.writerow([f"# {title}"])
        writer.writerow(columns)
        writer.writerows(rows)
    csv_path, html_path = folder / CSV_FILE, folder / HTML_FILE
    csv_path.write_text(buffer.getvalue(), encoding="utf-8")
    html_path.write_text(render_html(record, tables), encoding="utf-8")
    return [csv_path, html_path]


def _tables(record: BenchRecord) -> list[tuple[str, tuple[str, ...], list[list[str]]]]:
    if record.calibration:
        return [
            ("Accuracy against the paced null engine", ACCURACY_COLUMNS, accuracy_rows(record.calibration)),
            ("Ceiling on the zero-delay null engine", CEILING_COLUMNS, ceiling_rows(record.calibration)),
        ]
    return [(f"{record.engine.name} levels", LEVEL_COLUMNS, [level_row(level) for level in record.levels])]


def render_html(record: BenchRecord, tables: list[tuple[str, tuple[str, ...], list[list[str]]]]) -> str:
    """One page, no external resources: provenance, tables, the Pareto plot and every metric's definition."""
    parts = [
        f"<h1>{html.escape(record.engine.name)} — run {html.escape(record.run_id)}</h1>",
        f"<p>{html.escape(provenance_text(record))}</p>",
    ]
    for title, columns, rows in tables:
        parts.append(
            f"<h2>{html.escape(title)}</h2><table><tr>"
            + "".join(f"<th>{html.escape(c)}</th>" for c in columns)
            + "</tr>"
            + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
            + "</table>"
        )
    if record.levels:
        point = saturation_point(record.levels)
        parts.append(f"<p>Saturation point: {html.escape(describe_level(point) if point else 'not found')}</p>")
        parts.append(pareto_svg([record]).split("?>", 1)[-1])
    parts.append(
        "<h2>Definitions</h2><dl>"
        + "".join(f"<dt>{html.escape(name)}</dt><dd>{html.escape(text)}</dd>" for name, text in DEFINITIONS.items())
        + "</dl>"
    )
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:2px 6px;font-size:90%}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(record.run_id)}</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def provenance_text(record: BenchRecord) -> str:
    """Where and with what the record was measured."""
    model = f"{record.model.name} ({record.model.format})" if record.model else "no model"
    launch = f", launch config {record.launch.config}" if record.launch else ""
    work = record.workload
    return (
        f"{record.engine.name} {record.engine.version}, {model}{launch}, on {record.host.hostname} "
        f"({record.host.cpu}, {record.host.cpu_count} CPUs), infercheck {record.harness.version} "
        f"{record.harness.git_commit}{' (dirty)' if record.harness.git_dirty else ''}; {work.input_tokens} input "
        f"and {work.output_tokens} output tokens per request ({work.api} API, EOS ignored)."
    )


def describe_level(level: BenchLevel) -> str:
    """A level's name: its concurrency or its rate."""
    stats = level.stats
    where = f"concurrency {stats.concurrency}" if stats.rate is None else f"{stats.rate:g} req/s"
    return f"{where} ({stats.request_throughput:.2f} req/s, {stats.output_throughput:.1f} output tok/s)"


def _num(value: float | None, spec: str = "g") -> str:
    return NONE if value is None else format(value, spec)


def _error(measured: float | None, true: float | None) -> str:
    return f"{measured / true - 1:+.2%}" if measured is not None and true else NONE


def _pair(summary: Percentiles | None) -> str:
    return f"{_ms(summary.p50)} / {_ms(summary.p99)}" if summary else NONE


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"
