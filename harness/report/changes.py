"""Which cells of the table a run changed: the measured side of every cell before and after, compared."""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

from pydantic import BaseModel, Field

from harness.records.claims import load_claims, load_current_claims
from harness.report.context import ReportCell, build_context
from harness.records.layout import record_relpath
from harness.records.results import RecordWarning, load_records

UNVERIFIED = "·"
CHANGES_SHOWN = 20


def cell_summary(cell: ReportCell) -> str:
    """The measured side of a cell without footnotes: one mark, `mark label / mark label`, or · (unverified)."""
    measured = cell.measured
    if measured is None:
        return ""
    if not measured.marks:
        return UNVERIFIED
    if len(measured.marks) == 1:
        return measured.marks[0]
    return " / ".join(f"{result.mark} {result.label}".strip() for result in measured.contexts if result.mark)


class TableState(BaseModel):
    """What the table shows of the records at one moment: the measured side of every probed cell, and the
    records it leaves out (record path -> why)."""

    marks: dict[tuple[str, str], str] = Field(default_factory=dict)
    left_out: dict[str, str] = Field(default_factory=dict)


def table_state(claims_path: Path, results_dir: Path, *, include_attach: bool = False,
                allow_dirty: bool = False) -> TableState:
    """The table as the report counts it; empty without a claims file or a results folder (the report says
    what is missing)."""
    if not Path(claims_path).is_file() or not Path(results_dir).is_dir():
        return TableState()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)  # the report prints them once
        context = build_context(load_claims(Path(claims_path)), load_records(Path(results_dir)), (), "",
                                include_attach=include_attach, allow_dirty=allow_dirty,
                                current=load_current_claims(Path(claims_path)))
    return TableState(marks={(cell.engine, row.label): cell_summary(cell) for row, cell in context.cells()
                             if cell.measured is not None},
                      left_out={str(record_relpath(left.record)): left.why for left in context.left_out})


def changed_cells(before: TableState, after: TableState) -> list[str]:
    """One line per cell whose measured side differs: `engine · row: before → after`, in table order."""
    return [f"{engine} · {row}: {before.marks.get((engine, row)) or UNVERIFIED} → {mark or UNVERIFIED}"
            for (engine, row), mark in after.marks.items()
            if (before.marks.get((engine, row)) or UNVERIFIED) != (mark or UNVERIFIED)]


def describe_changes(before: TableState, after: TableState) -> list[str]:
    """What `infercheck run` prints at its end: the changed cells, and why new records do not count."""
    lines = changed_cells(before, after)
    if not lines:
        out = ["no cell of the table changed since the previous report"]
    else:
        out = [f"{len(lines)} cell(s) changed since the previous report:", *(f"  {line}" for line in lines[:CHANGES_SHOWN])]
        out += [f"  … {len(lines) - CHANGES_SHOWN} more (see the report)"] if len(lines) > CHANGES_SHOWN else []
    new_left_out = Counter(why for path, why in after.left_out.items() if path not in before.left_out)
    out += [f"{count} new record(s) left out of the table: {why}" for why, count in sorted(new_left_out.items())]
    return out
