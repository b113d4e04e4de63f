"""Footnote definitions: the claimed ones kept as links, and the measured evidence of each cell."""

from __future__ import annotations

from harness.report.context import ReportCell, ReportContext, ReportRow
from harness.report.format import one_line, short_numbers
from harness.report.layout import record_relpath
from harness.results import ResultRecord


def record_link(record: ResultRecord, results_href: str) -> str:
    """A markdown link to the record file, named by its run id."""
    return f"[`{record.run_id}`]({results_href}/{record_relpath(record)})"


def evidence(record: ResultRecord, results_href: str) -> str:
    """One probe's result: status, verdict reason, engine build, record link and key numbers."""
    numbers = short_numbers(record.evidence.numbers)
    details = f"{record.engine.name} {record.engine.version}, run {record_link(record, results_href)}"
    details += f"; {numbers}" if numbers else ""
    return f"`{record.probe}` {record.status.value.replace('_', ' ')}: {one_line(record.reason)} ({details})"


def measured_definition(row: ReportRow, cell: ReportCell, results_href: str) -> str:
    """The footnote of a measured cell: claimed against measured, then every probe's evidence."""
    assert cell.measured is not None and cell.footnote is not None
    probes = "; ".join(evidence(record, results_href)
                       for record in cell.measured.records + cell.measured.not_measured)
    verdict = f"claimed {cell.claimed_text}, measured {cell.measured.mark}"
    return f"[^{cell.footnote}]: {cell.engine} · {row.label}: {verdict}. {probes}."


def footnote_definitions(context: ReportContext) -> str:
    """All definitions: the claimed footnotes (relabelled), then the measured ones in table order."""
    lines = [f"[^{label}]: {footnote.text}" for label, footnote in context.claimed_footnotes()]
    lines += [measured_definition(row, cell, context.results_href) for row, cell in context.cells() if cell.footnote]
    return "\n".join(lines)
