"""What is committed is what the code produces: the record schema and the regenerated report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from harness.paths import default_report_dir, default_results_dir
from harness.records.results import load_records, record_json_schema
from harness.report import write_report


def test_committed_schema_is_the_models_schema():
    committed = json.loads((default_results_dir() / "record.schema.json").read_text())
    assert committed == record_json_schema()


def test_committed_records_load():
    records = load_records(default_results_dir())
    assert records, "no committed result records"
    assert all(record.harness.git_commit for record in records)


def test_report_regenerates_byte_for_byte(tmp_path: Path):
    results = tmp_path / "results"
    shutil.copytree(default_results_dir(), results)
    written = write_report(default_report_dir() / "claims.json", results, tmp_path / "report")
    assert written
    for path in written:
        committed = default_report_dir() / path.relative_to(tmp_path / "report")
        assert committed.read_bytes() == path.read_bytes(), f"{committed} is stale: run `infercheck report`"
