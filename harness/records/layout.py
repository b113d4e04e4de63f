"""Where a result record lives, relative to the results folder: the one place that knows the layout."""

from __future__ import annotations

from pathlib import PurePosixPath

from harness.records.results import ResultRecord, engine_slug


def record_relpath(record: ResultRecord) -> PurePosixPath:
    """`<engine_name_slug>/<run_id>/<probe>.json`, the path `write_record` gives it under results/."""
    return PurePosixPath(engine_slug(record.engine.name), record.run_id, record.file_name())
