"""What the pages show of the report model: links, the marks each context gives, nothing re-aggregated."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

from pydantic import BaseModel

from harness.records.layout import record_relpath
from harness.records.results import ResultRecord, engine_slug
from harness.report.aggregate import ContextResult
from harness.report.context import NO_CLAIM, ReportCell, ReportContext, ReportRow

RECORDS_DIR = "records"  # raw record copies, at their results/ layout
CELLS_DIR = "cells"


class ContextMark(BaseModel):
    """One measurement context of a cell as the context switch sees it."""

    host: str  # host kind: "cpu" or "gpu"
    launcher: str
    mark: str | None
    label: str
    describe: str
    shown: bool  # the table shows it (an error-only or not-measured-only context beside a verdict does not)


def host_kind(result: ContextResult) -> str:
    """ "cpu", or "gpu" for any GPU host class."""
    return result.context.host_class.split(" ", 1)[0]


def record_href(record: ResultRecord) -> str:
    """The raw record's copy, relative to the site root."""
    return str(PurePosixPath(RECORDS_DIR) / record_relpath(record))


def context_marks(cell: ReportCell) -> list[ContextMark]:
    """Every context of a measured cell, shown ones first."""
    if cell.measured is None:
        return []
    return [
        ContextMark(
            host=host_kind(result),
            launcher=result.context.launcher,
            mark=result.mark,
            label=result.label,
            describe=result.context.describe(),
            shown=shown,
        )
        for shown, results in ((True, cell.measured.contexts), (False, cell.measured.hidden))
        for result in results
    ]


SHORT_CLAIM = 24  # characters of a text claim the table shows (its page shows it whole)


def claim_text(cell: ReportCell, current: bool = False) -> str:
    """The seed (or today's) claim as the table shows it: its mark, else its text cut short, else the no-claim sign."""
    claim = cell.current if current else cell.claimed
    if claim is None or not claim.text:
        return NO_CLAIM
    if claim.mark:
        return claim.mark
    return claim.text if len(claim.text) <= SHORT_CLAIM else claim.text[: SHORT_CLAIM - 1] + "…"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "row"


def cell_pages(context: ReportContext) -> dict[tuple[str, str], str]:
    """(engine, row label) -> the page of every probed cell, relative to the site root, each path unique."""
    pages: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for row, cell in context.cells():
        if cell.measured is None:
            continue
        base = f"{CELLS_DIR}/{engine_slug(cell.engine)}/{_slug(row.label)}"
        path, number = f"{base}.html", 1
        while path in taken:
            number += 1
            path = f"{base}-{number}.html"
        taken.add(path)
        pages[(cell.engine, row.label)] = path
    return pages


def context_options(context: ReportContext) -> dict[str, list[str]]:
    """The values the context switch offers per dimension (host kind, launcher), from every measured cell."""
    hosts: set[str] = set()
    launchers: set[str] = set()
    for _, cell in context.cells():
        for mark in context_marks(cell):
            hosts.add(mark.host)
            launchers.add(mark.launcher)
    return {"host": sorted(hosts), "launcher": sorted(launchers)}


def rows_by_section(context: ReportContext) -> list[tuple[str | None, list[ReportRow]]]:
    """The table's rows grouped by section, in the table's order (rows without a section first)."""
    return [(section, [row for row in context.rows if row.section == section]) for section in [None, *context.sections]]
