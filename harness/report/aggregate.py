"""From result records to measured cells: which record counts, and what mark a cell gets."""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel

from harness.features import row_for
from harness.results import ResultRecord, Status

ERROR_MARK = "⚠"
MIXED_MARK = "🌩️"
_MARKS = {Status.PASS: "✅", Status.FAIL: "❌"}


class CellResult(BaseModel):
    """What the counted records say about one (engine, row) cell."""

    mark: str | None  # None: nothing measured, the cell is unverified
    records: list[ResultRecord]  # measured (pass, partial, fail, error), one per probe, by probe
    not_measured: list[ResultRecord]  # probes with only not-measured records, by probe


def counted_records(records: list[ResultRecord]) -> list[ResultRecord]:
    """One record per (engine, probe): the latest measured one (by finished_at, then run_id).

    A not-measured record says nothing about the feature, so it counts only when the probe was
    never measured for that engine (a CPU-only run must not hide an earlier GPU measurement).
    """
    best: dict[tuple[str, str], ResultRecord] = {}
    for record in records:
        key = (record.engine.name, record.probe)
        if key not in best or _rank(record) > _rank(best[key]):
            best[key] = record
    return [best[key] for key in sorted(best)]


def _rank(record: ResultRecord) -> tuple[bool, object, str]:
    return record.status != Status.NOT_MEASURED, record.finished_at, record.run_id


def measured_mark(records: list[ResultRecord]) -> str | None:
    """Combine probes: all pass ✅, all fail ❌, partial or mixed 🌩️, only errors ⚠, none measured None."""
    statuses = {record.status for record in records} - {Status.NOT_MEASURED}
    decisive = statuses - {Status.ERROR}
    if not statuses:
        return None
    if not decisive:
        return ERROR_MARK
    if len(decisive) == 1 and (status := next(iter(decisive))) in _MARKS:
        return _MARKS[status]
    return MIXED_MARK


def cell_results(counted: list[ResultRecord]) -> dict[tuple[str, str], CellResult]:
    """Counted records (see counted_records) grouped by (engine name, table row), each group combined into a mark."""
    groups: dict[tuple[str, str], list[ResultRecord]] = defaultdict(list)
    for record in counted:
        groups[(record.engine.name, row_for(record.feature))].append(record)
    results = {}
    for key, group in sorted(groups.items()):
        group.sort(key=lambda record: record.probe)
        results[key] = CellResult(mark=measured_mark(group),
                                  records=[r for r in group if r.status != Status.NOT_MEASURED],
                                  not_measured=[r for r in group if r.status == Status.NOT_MEASURED])
    return results
