"""A cell's history: every record of its engine and row, oldest to newest, and what changed at each."""

from __future__ import annotations

from collections import defaultdict

from pydantic import BaseModel

from harness.records.features import parent_row, record_feature, row_for
from harness.records.layout import record_relpath
from harness.records.results import MeasurementContext, ResultRecord
from harness.report.aggregate import record_mark, resolved_contexts


class HistoryEntry(BaseModel):
    """One record in a cell's history."""

    record: ResultRecord
    mark: str | None
    series: str  # the context without the engine's distribution: a new version continues the same series
    counted: bool  # the table counts it (the newest decisive record of its probe and context)
    left_out: str | None  # why the table leaves it out (attach, dirty tree, ...), None when it is eligible
    changes: list[str]  # what differs from the previous record of the same probe and series
    verdict_changed: bool  # the mark or status differs from the previous record's


def record_row(record: ResultRecord) -> str | None:
    """The table row a record measures; None for a feature the table does not know."""
    try:
        return row_for(record_feature(record.feature, record.probe))
    except KeyError:
        return None


def _series(context: MeasurementContext) -> str:
    return f"{context.host_class}, {context.launcher}, {context.model_source} model, {context.compute_dtype}"


def cell_history(
    records: list[ResultRecord], engine: str, row: str, counted: set[str], left_out: dict[str, str]
) -> list[HistoryEntry]:
    """Every record of (engine, row or one of its sub-rows), oldest first. `counted` and `left_out` are keyed
    by record path (harness.records.layout.record_relpath) and come from the report's own selection."""
    own = [
        record
        for record in records
        if record.engine.name == engine
        and (found := record_row(record)) is not None
        and row in (found, parent_row(found))
    ]
    contexts = resolved_contexts([record for record in records if record.engine.name == engine])
    own.sort(key=lambda record: (record.finished_at, record.run_id, record.probe))
    previous: dict[tuple[str, str], ResultRecord] = {}
    entries = []
    for record in own:
        series = _series(contexts[id(record)])
        before = previous.get((record.probe, series))
        entries.append(
            HistoryEntry(
                record=record,
                mark=record_mark(record),
                series=series,
                counted=str(record_relpath(record)) in counted,
                left_out=left_out.get(str(record_relpath(record))),
                changes=_changes(before, record),
                verdict_changed=before is not None
                and (record_mark(before), before.status) != (record_mark(record), record.status),
            )
        )
        previous[(record.probe, series)] = record
    return entries


def _changes(before: ResultRecord | None, record: ResultRecord) -> list[str]:
    if before is None:
        return ["first record of this probe here"]
    changes = []
    if record_mark(before) != record_mark(record) or before.status != record.status:
        changes.append(
            f"verdict {before.status.value} {record_mark(before) or ''} → "
            f"{record.status.value} {record_mark(record) or ''}".replace("  ", " ")
        )
    if before.engine.version != record.engine.version:
        changes.append(f"engine {before.engine.version} → {record.engine.version}")
    distribution = (before.engine.package_version, before.engine.image_digest)
    if distribution != (record.engine.package_version, record.engine.image_digest):
        changes.append("engine package or image changed")
    if before.harness.git_commit != record.harness.git_commit:
        changes.append(f"harness {(before.harness.git_commit or '?')[:10]} → {(record.harness.git_commit or '?')[:10]}")
    return changes


def history_by_cell(
    records: list[ResultRecord], cells: list[tuple[str, str]], counted: list[ResultRecord], left_out: dict[str, str]
) -> dict[tuple[str, str], list[HistoryEntry]]:
    """The history of each (engine, row) cell."""
    counted_paths = {str(record_relpath(record)) for record in counted}
    by_engine: dict[str, list[ResultRecord]] = defaultdict(list)
    for record in records:
        by_engine[record.engine.name].append(record)
    return {
        (engine, row): cell_history(by_engine.get(engine, []), engine, row, counted_paths, left_out)
        for engine, row in cells
    }
