"""The regenerated comparison table: title, legend, the grid and the claimed asterisk notes."""

from __future__ import annotations

from collections import Counter

from harness.report.aggregate import ABSENCE_MARK, MIXED_SUBROWS_MARK, NOT_DECISIVE_MARK
from harness.report.context import NO_CLAIM, ReportCell, ReportContext, ReportRow
from harness.report.format import relink_refs, table_cell, timestamp

UNVERIFIED = "·"
CLAIMS_ONLY = "†"
MEASURED_LEGEND = ("✅ pass | 🟠 pass with an inferior alternative (the probe says which) | "
                   "🌩️ partial (a probe's), or its probes disagree | "
                   f"{MIXED_SUBROWS_MARK} sub-rows disagree (some pass, some fail; the note names them) | "
                   "❌ fail (observed) | "
                   f"{ABSENCE_MARK} documented absence (no request can express it; the footnote names the source) | "
                   f"{NOT_DECISIVE_MARK} not decisive (the footnote says what is missing) | "
                   f"⚠ error (the probe could not finish) | {UNVERIFIED} not measured on any host yet (claimed mark shown, unverified)")


def header(context: ReportContext) -> str:
    """Title, where the claims and the results come from, and how to read a cell."""
    claims = context.claims
    source = f"<{claims.source}>" if claims.source.startswith(("http://", "https://")) else f"`{claims.source}`"
    runs = {record.run_id for record in context.records}
    results = "no result records yet"
    if context.records:
        latest = max(record.finished_at for record in context.records)
        results = (f"{len(context.records)} probe result(s) from {len(runs)} run(s), "
                   f"the latest finished {timestamp(latest)}")
    if context.left_out:
        results += f"; {len(context.left_out)} record(s) left out of the table (see Runs)"
    claimed_legend = " | ".join(f"{mark} {meaning}" for mark, meaning in claims.legend.items())
    reads = "`claimed → measured`"
    claims_line = f"Claims: {source} (sha256 `{claims.source_sha256[:12]}`, kept in `claims-source.md`)"
    if context.current is not None:
        reads = "`seed claim → current claim → measured`"
        claims_line += (f"; today's claims: `{context.current.source}` (sha256 `{context.current.source_sha256[:12]}`"
                        ", every cell with its source and the date it was checked)")
    lines = [
        "# Inference engines: claimed vs measured",
        "",
        f"{claims_line}. Results: {results}.",
        "",
        f"Each cell reads {reads}; a footnote on the measured mark holds the evidence. Verdicts are "
        "kept apart by measurement context (host class, launcher, model source, engine distribution, compute "
        "dtype): contexts that disagree show one mark each, e.g. `✅ cpu / 🌩️ gpu`. "
        f"Hosts (instruction-set level) of the counted records: {host_classes(context)}.",
        "",
        f"- Claimed: {claimed_legend}" if claimed_legend else "- Claimed: the source table's marks",
        f"- Measured: {MEASURED_LEGEND}",
        f"- Also: `{NO_CLAIM}` no claim (engine or row not in the claimed table); "
        f"`{CLAIMS_ONLY}` claims only (no probe measures this row)",
    ]
    return "\n".join(lines)


def host_classes(context: ReportContext) -> str:
    """The host classes (with their instruction-set levels) of the counted records, with record counts: a cell
    without a footnote was measured on the only one, or on those its context labels name."""
    counts = Counter(record.context().host_class for record in context.records)
    return ", ".join(f"`{host}` ({count})" for host, count in sorted(counts.items())) or "none"


def comparison_table(context: ReportContext) -> str:
    """The grid: claimed sections and rows in their order, then extra columns and rows."""
    width = len(context.engines)
    lines = ["| | " + " | ".join(table_cell(engine) for engine in context.engines) + " |",
             "|---" * (width + 1) + "|"]
    for section in [None, *context.sections]:
        if section is not None:
            lines.append(f"| **{table_cell(section)}** |" + " |" * width)
        lines += [_row(row, context) for row in context.rows if row.section == section]
    return "\n".join(lines)


def asterisk_notes(context: ReportContext) -> str:
    """The claimed table's asterisk notes, as written."""
    return "\n\n".join(note.marker + relink_refs(note.text, context.claimed_labels) for note in context.claims.notes)


def _row(row: ReportRow, context: ReportContext) -> str:
    label = relink_refs(table_cell(row.raw_label), context.claimed_labels)
    label += f" {CLAIMS_ONLY}" if row.claims_only else ""
    return f"| {label} | " + " | ".join(_cell(cell, context) for cell in row.cells) + " |"


def _cell(cell: ReportCell, context: ReportContext) -> str:
    claimed = relink_refs(table_cell(cell.claimed.raw), context.claimed_labels) if cell.claimed else ""
    claims = [claimed]
    if context.current is not None:  # seed claim → current claim (→ measured)
        current = relink_refs(table_cell(cell.current.raw), context.current_labels) if cell.current else ""
        claims = [claimed, current] if claimed or current or cell.measured is not None else [""]
    if cell.measured is None:
        return " → ".join(claims)
    return " → ".join([*(claim or NO_CLAIM for claim in claims), measured_text(cell)])


def measured_text(cell: ReportCell) -> str:
    """The measured side of a cell: one mark when its contexts agree, else `mark context / mark context`."""
    assert cell.measured is not None
    shown = cell.measured.contexts
    note = f" ({table_cell(cell.measured.note)})" if cell.measured.note and cell.measured.marks else ""
    if not cell.measured.marks:
        return UNVERIFIED
    if len(cell.measured.marks) == 1:
        return f"{cell.measured.marks[0]}{''.join(f'[^{label}]' for label in cell.footnotes)}{note}"
    labels = cell.footnotes or [""] * len(shown)
    parts = [f"{result.mark}{f'[^{label}]' if label else ''} {table_cell(result.label)}"
             for result, label in zip(shown, labels, strict=True)]
    return " / ".join(parts) + note