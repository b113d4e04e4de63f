"""The report's view of the table: every cell with its claim and its measurement side by side."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from pydantic import BaseModel, Field

from harness.bench.records import BenchRecord
from harness.claims import Cell, ClaimsTable, Footnote
from harness.features import FEATURE_ROWS
from harness.report.aggregate import CellResult, cell_results, counted_records
from harness.results import ResultRecord, Status

MEASURED_ONLY = "Measured only"  # section for probed rows missing from the claimed table
NO_CLAIM = "—"


class ReportCell(BaseModel):
    """One (engine, row) cell of the regenerated table."""

    engine: str
    claimed: Cell | None  # None: the engine or the row is not in the claimed table
    measured: CellResult | None  # None: no probe measures this row
    footnote: str | None = None  # label of the footnote holding the measured evidence

    @property
    def claimed_mark(self) -> str | None:
        """The claimed mark, None for free text or no claim."""
        return self.claimed.mark if self.claimed else None

    @property
    def claimed_text(self) -> str:
        """The claimed cell's text without footnote refs, or the no-claim sign."""
        return self.claimed.text if self.claimed and self.claimed.text else NO_CLAIM

    @property
    def differs(self) -> bool:
        """Measured, and the measured mark is not the claimed one."""
        return (self.measured is not None and self.measured.mark is not None
                and self.measured.mark != self.claimed_mark)

    @property
    def needs_evidence(self) -> bool:
        """Differs from its claim, or a probe errored: the cell gets a footnote."""
        return self.differs or (self.measured is not None
                                and any(r.status == Status.ERROR for r in self.measured.records))


class ReportRow(BaseModel):
    """One feature row of the regenerated table."""

    label: str
    raw_label: str
    section: str | None
    claims_only: bool  # no probe measures this row
    cells: list[ReportCell]


class ReportContext(BaseModel):
    """Everything a report section needs: claims, counted records and the combined grid."""

    claims: ClaimsTable
    engines: list[str]
    sections: list[str]
    rows: list[ReportRow]
    records: list[ResultRecord]  # the counted records, one per (engine, probe)
    results_href: str  # relative link from the report folder to the results folder
    bench: list[BenchRecord] = Field(default_factory=list)  # every benchmark record (harness.bench)

    def cells(self) -> Iterator[tuple[ReportRow, ReportCell]]:
        """Every cell in table order: rows top to bottom, engines left to right."""
        for row in self.rows:
            for cell in row.cells:
                yield row, cell

    def claimed_footnotes(self) -> list[tuple[str, Footnote]]:
        """Claimed footnote definitions with unique labels: `c<id>`, then `c<id>-2` for a repeated id."""
        seen: dict[str, int] = {}
        labelled = []
        for footnote in self.claims.footnotes:
            seen[footnote.id] = seen.get(footnote.id, 0) + 1
            suffix = f"-{seen[footnote.id]}" if seen[footnote.id] > 1 else ""
            labelled.append((f"c{footnote.id}{suffix}", footnote))
        return labelled

    def claimed_labels(self, footnote_id: str) -> list[str]:
        """The labels a claimed reference `[^id]` points to (every definition of that id)."""
        return [label for label, footnote in self.claimed_footnotes() if footnote.id == footnote_id]


def build_context(claims: ClaimsTable, records: list[ResultRecord], extra_engines: Sequence[str],
                  results_href: str, bench: Sequence[BenchRecord] = ()) -> ReportContext:
    """Combine claims and records; extra engines and unclaimed probed rows are appended, sorted."""
    counted = counted_records(records)
    results = cell_results(counted)
    engines = claims.engines + sorted({*extra_engines, *(engine for engine, _ in results)} - set(claims.engines))
    probed = set(FEATURE_ROWS.values())

    def cells(label: str, claimed: dict[str, Cell]) -> list[ReportCell]:
        return [ReportCell(engine=engine, claimed=claimed.get(engine),
                           measured=(results.get((engine, label)) or _unmeasured()) if label in probed else None)
                for engine in engines]

    rows = [ReportRow(label=row.label, raw_label=row.raw_label, section=row.section,
                      claims_only=row.label not in probed, cells=cells(row.label, row.cells))
            for row in claims.rows]
    unclaimed = sorted({label for _, label in results} - {row.label for row in claims.rows})
    rows += [ReportRow(label=label, raw_label=label, section=MEASURED_ONLY, claims_only=False, cells=cells(label, {}))
             for label in unclaimed]
    sections = claims.sections + ([MEASURED_ONLY] if unclaimed and MEASURED_ONLY not in claims.sections else [])
    context = ReportContext(claims=claims, engines=engines, sections=sections, rows=rows,
                            records=counted, results_href=results_href, bench=list(bench))
    evidenced = [cell for _, cell in context.cells() if cell.needs_evidence]
    for number, cell in enumerate(evidenced, start=1):
        cell.footnote = f"m{number}"
    return context


def _unmeasured() -> CellResult:
    return CellResult(mark=None, records=[], not_measured=[])
