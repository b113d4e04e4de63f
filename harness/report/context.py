"""The report's view of the table: every cell with its claim and its measurement side by side."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

from pydantic import BaseModel, Field

from harness.bench.records import BenchRecord
from harness.records.claims import Cell, ClaimsTable, Footnote
from harness.records.features import FEATURE_ROWS, OTHER_QUANTS, parent_row, subrow_name
from harness.report.aggregate import (
    ABSENCE_MARK, ERROR_MARK, FAIL_MARK, NOT_DECISIVE_MARK, CellResult, LeftOut, cell_results, counted_records,
    select_records,
)
from harness.records.results import ResultRecord, Status

PRESENT_MARKS = ("✅", "🟠", "🌩️")  # claimed marks that say a feature is there
BEYOND = "Beyond the 2024 table"  # section for probed rows the claimed table does not have
NO_CLAIM = "—"


class ReportCell(BaseModel):
    """One (engine, row) cell of the regenerated table."""

    engine: str
    claimed: Cell | None  # None: the engine or the row is not in the claimed table
    measured: CellResult | None  # None: no probe measures this row
    current: Cell | None = None  # today's claim (report/claims-current.md), None without one
    seed_column: bool = True  # the seed table has this engine's column (SGLang and ExLlamaV3 are newer than it)
    footnotes: list[str] = Field(default_factory=list)  # one label per shown context, holding its evidence

    @property
    def claimed_mark(self) -> str | None:
        """The claimed mark, None for free text or no claim."""
        return self.claimed.mark if self.claimed else None

    @property
    def claimed_text(self) -> str:
        """The claimed cell's text without footnote refs, or the no-claim sign."""
        return self.claimed.text if self.claimed and self.claimed.text else NO_CLAIM

    @property
    def verdict(self) -> str | None:
        """How the measurement stands against the seed claim (one of VERDICTS); None when nothing was measured."""
        return _verdict(self.claimed, self.measured)

    @property
    def current_mark(self) -> str | None:
        """Today's claimed mark (claims-current), None for free text, "?" or no current claim."""
        return self.current.mark if self.current else None

    @property
    def current_verdict(self) -> str | None:
        """How the measurement stands against today's docs; None without a current claim or a measurement."""
        return _verdict(self.current, self.measured) if self.current is not None else None

    @property
    def seed_stale(self) -> bool:
        """Today's docs claim another mark than the seed did (text claims and an unverified "?" say nothing); in a
        column the seed lacks, every mark today's docs claim is one the seed is missing."""
        if self.current_mark is None:
            return False
        if not self.seed_column:
            return True
        return self.claimed_mark is not None and self.current_mark != self.claimed_mark

    @property
    def differs(self) -> bool:
        """Measured, and a measured mark is not the claimed one (text claims never differ)."""
        return self.verdict == "differ"

    @property
    def needs_evidence(self) -> bool:
        """The cell gets footnotes unless it simply agrees with its claims in one context."""
        measured = self.measured
        if measured is None or self.verdict is None:
            return False
        return (self.verdict != "agree" or self.current_verdict not in (None, "agree") or len(measured.contexts) > 1
                or bool(measured.hidden)
                or any(r.status == Status.ERROR or r.absence_source() for r in measured.records))


VERDICTS = ("agree", "differ", "claim is not a mark", "no claim", "not decisive", "error")


def _verdict(claim: Cell | None, measured: CellResult | None) -> str | None:
    """How measured marks stand against one claim (one of VERDICTS); None when nothing was measured."""
    marks = measured.marks if measured else []
    if not marks:
        return None
    if marks == [ERROR_MARK]:
        return "error"
    if marks == [NOT_DECISIVE_MARK]:
        return "not decisive"
    if claim is None or not claim.text:
        return "no claim"
    if claim.mark is None:
        return "claim is not a mark"
    decisive = {_as_claim(mark) for mark in marks} - {ERROR_MARK}
    return "agree" if decisive == {claim.mark} else "differ"


def _as_claim(mark: str) -> str:
    """The claimed mark a measured one stands for (a documented absence is a ❌)."""
    return FAIL_MARK if mark == ABSENCE_MARK else mark


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
    current: ClaimsTable | None = None  # today's claims (report/claims-current.md), beside the seed's
    engines: list[str]
    sections: list[str]
    rows: list[ReportRow]
    records: list[ResultRecord]  # the counted records, one per (engine, probe, context)
    left_out: list[LeftOut] = Field(default_factory=list)  # records the table does not count, with why
    include_attach: bool = False
    results_href: str  # relative link from the report folder to the results folder
    bench: list[BenchRecord] = Field(default_factory=list)  # every benchmark record (harness.bench)

    def cells(self) -> Iterator[tuple[ReportRow, ReportCell]]:
        """Every cell in table order: rows top to bottom, engines left to right."""
        for row in self.rows:
            for cell in row.cells:
                yield row, cell

    def claimed_footnotes(self) -> list[tuple[str, Footnote]]:
        """Claimed footnote definitions with unique labels: `c<id>`, then `c<id>-2` for a repeated id."""
        return _labelled("c", self.claims.footnotes)

    def claimed_labels(self, footnote_id: str) -> list[str]:
        """The labels a claimed reference `[^id]` points to (every definition of that id)."""
        return [label for label, footnote in self.claimed_footnotes() if footnote.id == footnote_id]

    def current_footnotes(self) -> list[tuple[str, Footnote]]:
        """Today's claims' footnote definitions, labelled `n<id>` (then `n<id>-2` for a repeated id)."""
        return _labelled("n", self.current.footnotes if self.current else [])

    def current_labels(self, footnote_id: str) -> list[str]:
        """The labels a reference `[^id]` in today's claims points to."""
        return [label for label, footnote in self.current_footnotes() if footnote.id == footnote_id]


def _labelled(prefix: str, footnotes: list[Footnote]) -> list[tuple[str, Footnote]]:
    seen: dict[str, int] = {}
    labelled = []
    for footnote in footnotes:
        seen[footnote.id] = seen.get(footnote.id, 0) + 1
        suffix = f"-{seen[footnote.id]}" if seen[footnote.id] > 1 else ""
        labelled.append((f"{prefix}{footnote.id}{suffix}", footnote))
    return labelled


def build_context(claims: ClaimsTable, records: list[ResultRecord], extra_engines: Sequence[str],
                  results_href: str, bench: Sequence[BenchRecord] = (), *, include_attach: bool = False,
                  allow_dirty: bool = False, now: datetime | None = None,
                  current: ClaimsTable | None = None) -> ReportContext:
    """Combine claims and records; extra engines, sub-rows and unclaimed probed rows are added, sorted.

    `now` (default: the current time) bounds the records' dates: one finished later than a day ahead is
    left out with a warning."""
    selected, left_out = select_records(records, include_attach=include_attach, allow_dirty=allow_dirty,
                                        now=now or datetime.now(timezone.utc))
    counted = counted_records(selected)
    results = cell_results(counted, claimed_formats(current))
    beyond_seed = {*extra_engines, *(engine for engine, _ in results), *(current.engines if current else [])}
    engines = claims.engines + sorted(beyond_seed - set(claims.engines))
    current_rows = {row.label: row.cells for row in current.rows} if current else {}
    probed = set(FEATURE_ROWS.values()) | {parent for label in FEATURE_ROWS.values() if (parent := parent_row(label))}

    def cells(label: str, claimed: dict[str, Cell]) -> list[ReportCell]:
        return [ReportCell(engine=engine, claimed=claimed.get(engine), current=current_rows.get(label, {}).get(engine),
                           seed_column=engine in claims.engines,
                           measured=(results.get((engine, label)) or _unmeasured()) if label in probed else None)
                for engine in engines]

    measured_rows = {label for _, label in results}
    claimed_labels = {row.label for row in claims.rows}
    rows = []
    for row in claims.rows:
        rows.append(ReportRow(label=row.label, raw_label=row.raw_label, section=row.section,
                              claims_only=row.label not in probed, cells=cells(row.label, row.cells)))
        rows += [ReportRow(label=label, raw_label=f"↳ {subrow_name(label)}", section=row.section, claims_only=False,
                           cells=cells(label, {}))
                 for label in sorted(measured_rows) if parent_row(label) == row.label]
    unclaimed = sorted(label for label in (measured_rows | set(current_rows)) - claimed_labels
                       if parent_row(label) not in claimed_labels)
    rows += [ReportRow(label=label, raw_label=label, section=BEYOND, claims_only=label not in probed,
                       cells=cells(label, {})) for label in unclaimed]
    sections = claims.sections + ([BEYOND] if unclaimed and BEYOND not in claims.sections else [])
    context = ReportContext(claims=claims, current=current, engines=engines, sections=sections, rows=rows, records=counted,
                            left_out=left_out, include_attach=include_attach, results_href=results_href,
                            bench=list(bench))
    evidenced = [cell for _, cell in context.cells() if cell.needs_evidence]
    for number, cell in enumerate(evidenced, start=1):
        shown = cell.measured.contexts if cell.measured else []
        cell.footnotes = [f"m{number}"] if len(shown) <= 1 else [f"m{number}-{k}" for k in range(1, len(shown) + 1)]
    return context


def claimed_formats(current: ClaimsTable | None) -> dict[str, set[str]] | None:
    """Per engine, the Other Quants sub-rows today's claims mark as there (✅ 🟠 🌩️); an engine whose format
    cells carry no mark at all ("?", text) is left out: which formats it claims is not known."""
    if current is None:
        return None
    rows = [row for row in current.rows if parent_row(row.label) == OTHER_QUANTS]
    return {engine: {row.label for row in rows if row.cells[engine].mark in PRESENT_MARKS}
            for engine in current.engines if any(row.cells[engine].mark for row in rows)}


def _unmeasured() -> CellResult:
    return CellResult(contexts=[])
