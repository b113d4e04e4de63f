"""Footnote definitions: the claimed ones kept as links, and the measured evidence of each cell."""

from __future__ import annotations

from harness.report.context import NO_CLAIM, ReportCell, ReportContext, ReportRow
from harness.report.format import one_line, short_numbers
from harness.records.layout import record_relpath
from harness.records.results import ResultRecord


def record_link(record: ResultRecord, results_href: str) -> str:
    """A markdown link to the record file, named by its run id."""
    return f"[`{record.run_id}`]({results_href}/{record_relpath(record)})"


def evidence(record: ResultRecord, results_href: str) -> str:
    """One probe's result: status, verdict reason, engine build, record link and key numbers."""
    numbers = short_numbers(record.evidence.numbers)
    details = f"{record.engine.name} {record.engine.version}, run {record_link(record, results_href)}"
    details += f"; {numbers}" if numbers else ""
    return f"`{record.probe}` {record.status.value.replace('_', ' ')}: {one_line(record.reason)} ({details})"


def measured_definitions(row: ReportRow, cell: ReportCell, results_href: str) -> list[str]:
    """The footnotes of a measured cell, one per shown context: its context, claimed against measured, then every
    probe's evidence; the first also names the contexts not shown (only errors or not measured)."""
    assert cell.measured is not None
    lines = []
    shown = cell.measured.contexts
    for index, (label, result) in enumerate(zip(cell.footnotes, shown, strict=True)):
        probes = "; ".join(evidence(record, results_href) for record in result.records + result.not_measured)
        verdict = f"claimed {cell.claimed_text}"
        verdict += f", today {cell.current.text or NO_CLAIM}" if cell.current else ""
        verdict += f", measured {result.mark}"
        verdict += f" ({cell.measured.note})" if cell.measured.note else ""
        absences = sorted({source for record in result.records if (source := record.absence_source())})
        absence = "".join(f" Documented absence, not an observation: {one_line(source)}." for source in absences)
        hidden = "" if index else "".join(
            f" Not shown ({context.context.describe()}): "
            + "; ".join(evidence(record, results_href) for record in context.records + context.not_measured) + "."
            for context in cell.measured.hidden)
        lines.append(f"[^{label}]: {cell.engine} · {row.label}: {verdict}, in context {result.context.describe()}."
                     f"{absence} {probes}.{hidden}")
    return lines


def footnote_definitions(context: ReportContext) -> str:
    """All definitions: the claimed footnotes (relabelled), then the measured ones in table order."""
    lines = [f"[^{label}]: {footnote.text}" for label, footnote in context.claimed_footnotes()]
    lines += [f"[^{label}]: {footnote.text}" for label, footnote in context.current_footnotes()]
    lines += [line for row, cell in context.cells() if cell.footnotes
              for line in measured_definitions(row, cell, context.results_href)]
    return "\n".join(lines)
