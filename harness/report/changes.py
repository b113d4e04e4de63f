"""Which cells of the table a run changed: the measured side of every cell before and after, compared."""

from __future__ import annotations

import warnings
from pathlib import Path

from harness.claims import load_claims, load_current_claims
from harness.report.context import ReportCell, build_context
from harness.results import RecordWarning, load_records

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


def table_marks(claims_path: Path, results_dir: Path, *, include_attach: bool = False,
                allow_dirty: bool = False) -> dict[tuple[str, str], str]:
    """(engine, row) -> the measured side of every probed cell, counted as the report counts; {} without a
    claims file or a results folder (the report says what is missing)."""
    if not Path(claims_path).is_file() or not Path(results_dir).is_dir():
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecordWarning)  # the report prints them once
        context = build_context(load_claims(Path(claims_path)), load_records(Path(results_dir)), (), "",
                                include_attach=include_attach, allow_dirty=allow_dirty,
                                current=load_current_claims(Path(claims_path)))
    return {(cell.engine, row.label): cell_summary(cell) for row, cell in context.cells() if cell.measured is not None}


def changed_cells(before: dict[tuple[str, str], str], after: dict[tuple[str, str], str]) -> list[str]:
    """One line per cell whose measured side differs: `engine · row: before → after`, in table order."""
    return [f"{engine} · {row}: {before.get((engine, row)) or UNVERIFIED} → {mark or UNVERIFIED}"
            for (engine, row), mark in after.items() if (before.get((engine, row)) or UNVERIFIED) != (mark or UNVERIFIED)]


def describe_changes(lines: list[str]) -> list[str]:
    """What `infercheck run` prints at its end."""
    if not lines:
        return ["no cell of the table changed since the previous report"]
    shown = [f"  {line}" for line in lines[:CHANGES_SHOWN]]
    more = [f"  … {len(lines) - CHANGES_SHOWN} more (see the report)"] if len(lines) > CHANGES_SHOWN else []
    return [f"{len(lines)} cell(s) changed since the previous report:", *shown, *more]
