"""The site's HTML pages, rendered from the report model with autoescaping Jinja2 templates
(every string from a record is escaped; nothing from a record is ever marked safe)."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from harness.bench.records import BenchRecord
from harness.records.layout import record_relpath
from harness.records.results import ResultRecord
from harness.report.aggregate import record_mark
from harness.report.changes import cell_summary
from harness.report.context import NO_CLAIM, ReportCell, ReportContext, ReportRow
from harness.report.format import timestamp
from harness.report.table import MEASURED_LEGEND
from harness.site.history import HistoryEntry
from harness.site.views import (
    claim_text,
    context_marks,
    context_options,
    record_href,
    rows_by_section,
)

PRETTY_CHARS = 4000  # a request or response longer than this is cut on the page (the raw record has it whole)
MAX_EXCHANGES = 20  # exchanges shown per record; the raw record has every one


def _pretty(value: Any) -> str:
    """A value from a record as indented JSON text (strings as they are), cut to PRETTY_CHARS."""
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    )
    return text if len(text) <= PRETTY_CHARS else text[: PRETTY_CHARS - 1] + "…"


def environment() -> Environment:
    """The templates (harness/site/templates), autoescaped."""
    env = Environment(
        loader=PackageLoader("harness.site", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["pretty"] = _pretty
    env.globals.update(record_href=record_href, record_relpath=record_relpath, mark_of=record_mark)
    return env


def index_page(env: Environment, context: ReportContext, pages: dict[tuple[str, str], str]) -> str:
    """The comparison table, each probed cell linking to its page, with the context switch's data embedded."""
    cells = list(context.cells())
    runs = {record.run_id for record in context.records}
    summary = f"{len(context.records)} counted probe result(s) from {len(runs)} run(s)"
    if context.records:
        summary += f", the latest finished {timestamp(max(record.finished_at for record in context.records))}"
    if context.left_out:
        summary += f"; {len(context.left_out)} record(s) left out of the table (see Runs)"
    return env.get_template("index.html").render(
        title="claimed vs measured",
        root="",
        n_records=len(context.records) + len(context.left_out),
        claims_source=context.claims.source,
        current_source=context.current.source if context.current else "",
        summary=summary,
        reads="seed claim → current claim → measured" if context.current else "claimed → measured",
        legend=MEASURED_LEGEND,
        no_claim=NO_CLAIM,
        engines=context.engines,
        sections=rows_by_section(context),
        pages=pages,
        options=context_options(context),
        summaries={(cell.engine, row.label): cell_summary(cell) for row, cell in cells},
        claims_of={(cell.engine, row.label): _claims(cell, context) for row, cell in cells},
        contexts={(cell.engine, row.label): [mark.model_dump() for mark in context_marks(cell)] for row, cell in cells},
    )


def _claims(cell: ReportCell, context: ReportContext) -> str:
    if context.current is None:
        return claim_text(cell)
    return f"{claim_text(cell)} → {claim_text(cell, current=True)}"


def cell_page(
    env: Environment, context: ReportContext, row: ReportRow, cell: ReportCell, history: list[HistoryEntry]
) -> str:
    """One cell: its claims with their footnotes, the verdict per context with every record's evidence, its history."""
    measured = cell.measured
    results = (
        [(result, True) for result in measured.contexts] + [(result, False) for result in measured.hidden]
        if measured
        else []
    )
    seed_notes = [
        note.text
        for ref in (cell.claimed.footnotes if cell.claimed else [])
        for _, note in context.claimed_footnotes()
        if note.id == ref
    ]
    current_notes = [
        note.text
        for ref in (cell.current.footnotes if cell.current else [])
        for _, note in context.current_footnotes()
        if note.id == ref
    ]
    return env.get_template("cell.html").render(
        title=f"{cell.engine} · {row.label}",
        root="../../",
        n_records=len(history),
        cell=cell,
        row=row,
        seed_claim=cell.claimed.raw if cell.claimed else NO_CLAIM,
        current_claim=cell.current.raw if cell.current else NO_CLAIM,
        seed_notes=seed_notes,
        current_notes=current_notes,
        summary=cell_summary(cell),
        results=results,
        history=history,
        max_exchanges=MAX_EXCHANGES,
    )


def runs_page(env: Environment, records: list[ResultRecord], left_out: dict[str, str]) -> str:
    """Every run the records come from (counted, superseded or left out of the table), with its provenance;
    `left_out` maps a record's path to why the table leaves it out."""
    groups: dict[tuple[str, str], list[ResultRecord]] = defaultdict(list)
    for record in records:
        groups[(record.engine.name, record.run_id)].append(record)
    runs = []
    for (engine, run_id), group in sorted(
        groups.items(), key=lambda item: max(r.finished_at for r in item[1]), reverse=True
    ):
        last = max(group, key=lambda record: record.finished_at)
        why = sorted({why for record in group if (why := left_out.get(str(record_relpath(record))))})
        runs.append(
            {
                "engine": engine,
                "run_id": run_id,
                "finished": timestamp(last.finished_at),
                "version": last.engine.version,
                "host": f"{last.host.hostname} ({last.context().host_class})",
                "commit": last.harness.git_commit or "unknown",
                "dirty": bool(last.harness.git_dirty),
                "records": sorted(group, key=lambda record: record.probe),
                "left_out": why,
            }
        )
    return env.get_template("runs.html").render(title="Runs", root="", n_records=len(records), runs=runs)


def plots_page(
    env: Environment, context: ReportContext, plots: list[str], bench: list[BenchRecord], bench_href: Any
) -> str:
    """The benchmark plots and links to the benchmark records they are drawn from."""
    return env.get_template("plots.html").render(
        title="Benchmarks", root="", n_records=len(context.records), plots=plots, bench=bench, bench_href=bench_href
    )
