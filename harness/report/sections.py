"""Report sections below the table. A section is a function of the context; more can be appended.

Hook for later work: a performance section (tables, plots written as extra files) is one more
SectionRenderer added to DEFAULT_SECTIONS or passed to render_report(sections=...).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from pydantic import BaseModel, Field

from harness.report.context import ReportContext
from harness.report.footnotes import record_link
from harness.report.format import table_cell, timestamp
from harness.results import ResultRecord


class ReportSection(BaseModel):
    """A section's markdown, and any files it adds to the report folder (name -> content)."""

    markdown: str
    files: dict[str, str] = Field(default_factory=dict)


SectionRenderer = Callable[[ReportContext], ReportSection]


def diff_section(context: ReportContext) -> ReportSection:
    """One line per cell whose measured mark differs from its claim."""
    probed = [cell for row, cell in context.cells() if not row.claims_only]
    measured = [cell for cell in probed if cell.measured and cell.measured.mark]
    differing = [(row, cell) for row, cell in context.cells() if cell.differs]
    lines = ["## Claimed vs measured", "",
             f"{len(measured)} of {len(probed)} probed cells measured: "
             f"{len(measured) - len(differing)} agree with the claim, {len(differing)} differ.", ""]
    lines += [f"- {row.label} · {cell.engine}: {cell.claimed_text} → {cell.measured.mark}[^{cell.footnote}]"
              for row, cell in differing if cell.measured] or ["No measured cell differs from its claim."]
    return ReportSection(markdown="\n".join(lines))


def not_measured_section(context: ReportContext) -> ReportSection:
    """Probes that have only not-measured records, with the reason."""
    lines = ["## Not measured", ""]
    entries = [(row, cell.engine, record) for row, cell in context.cells() if cell.measured
               for record in cell.measured.not_measured]
    if not entries:
        return ReportSection(markdown="\n".join([*lines, "Every probe with a record was measured."]))
    lines += ["| Engine | Row | Probe | Reason | Record |", "|---|---|---|---|---|"]
    lines += [f"| {table_cell(engine)} | {table_cell(row.label)} | `{record.probe}` | {table_cell(record.reason)} | "
              f"{record_link(record, context.results_href)} |" for row, engine, record in entries]
    return ReportSection(markdown="\n".join(lines))


def runs_section(context: ReportContext) -> ReportSection:
    """Provenance per engine: every run the counted records come from."""
    lines = ["## Runs"]
    for engine in context.engines:
        runs: dict[str, list[ResultRecord]] = defaultdict(list)
        for record in context.records:
            if record.engine.name == engine:
                runs[record.run_id].append(record)
        if not runs:
            continue
        lines += ["", f"### {engine}", "",
                  "| Run | Engine version | Package / image | Host | Harness | Started | Finished | Probes |",
                  "|---|---|---|---|---|---|---|---|"]
        ordered = sorted(runs.items(), key=lambda item: (min(r.started_at for r in item[1]), item[0]))
        lines += [_run_row(run_id, records) for run_id, records in ordered]
    if len(lines) == 1:
        lines += ["", "No runs yet."]
    return ReportSection(markdown="\n".join(lines))


def _run_row(run_id: str, records: list[ResultRecord]) -> str:
    cells = [f"`{run_id}`", _distinct(records, lambda r: r.engine.version), _distinct(records, _package),
             _distinct(records, _host), _distinct(records, _harness),
             timestamp(min(r.started_at for r in records)), timestamp(max(r.finished_at for r in records)),
             str(len(records))]
    return "| " + " | ".join(cells) + " |"


def _distinct(records: list[ResultRecord], describe: Callable[[ResultRecord], str]) -> str:
    """The distinct descriptions of a run's records (normally one), sorted, as a table cell."""
    return table_cell(", ".join(sorted({describe(record) for record in records})))


def _package(record: ResultRecord) -> str:
    engine = record.engine
    parts = []
    if engine.package:
        parts.append(f"{engine.package}=={engine.package_version}" if engine.package_version else engine.package)
    if engine.image:
        parts.append(f"{engine.image}@{engine.image_digest}" if engine.image_digest else engine.image)
    return "; ".join(parts) or "—"


def _host(record: ResultRecord) -> str:
    host = record.host
    return f"{host.hostname} ({'; '.join(host.accelerators) or host.cpu})"


def _harness(record: ResultRecord) -> str:
    harness = record.harness
    commit = f" @ {harness.git_commit[:12]}" if harness.git_commit else ""
    return f"{harness.version}{commit}{' (dirty)' if harness.git_dirty else ''}"


def performance_section(context: ReportContext) -> ReportSection:
    """Benchmark tables and plots (harness.bench); imported on use, so matplotlib loads only here."""
    from harness.bench.report_section import render_performance

    return render_performance(context)


DEFAULT_SECTIONS: tuple[SectionRenderer, ...] = (diff_section, not_measured_section, performance_section,
                                                 runs_section)
