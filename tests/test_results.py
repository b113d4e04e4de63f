"""Result records: atomic, never rewritten, and described by a JSON Schema."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import jsonschema
import pytest

from harness.host.provenance import harness_info, host_info
from harness.records.results import (
    EngineIdentity,
    ResultRecord,
    Status,
    load_records,
    record_json_schema,
    run_dir_for,
    write_record,
)


def _record(probe: str = "json_schema") -> ResultRecord:
    now = datetime.now(timezone.utc)
    return ResultRecord(
        run_id="r1",
        probe=probe,
        feature="json_schema",
        engine=EngineIdentity(name="llama.cpp", version="b1"),
        host=host_info(),
        harness=harness_info(),
        status=Status.PASS,
        reason="ok",
        started_at=now,
        finished_at=now,
    )


def test_write_and_load_roundtrip(tmp_path: Path):
    run_dir = run_dir_for(tmp_path, "llama.cpp", "r1")
    path = write_record(_record(), run_dir)
    assert path == tmp_path / "llama.cpp" / "r1" / "json_schema.json"
    assert load_records(tmp_path) == [
        _record().model_copy(
            update={
                "started_at": load_records(tmp_path)[0].started_at,
                "finished_at": load_records(tmp_path)[0].finished_at,
            }
        )
    ]
    assert not list(run_dir.glob(".tmp-*"))


def test_records_are_never_rewritten(tmp_path: Path):
    write_record(_record(), tmp_path)
    with pytest.raises(FileExistsError):
        write_record(_record(), tmp_path)


def test_record_validates_against_published_schema(tmp_path: Path):
    import json

    path = write_record(_record(), tmp_path)
    jsonschema.validate(json.loads(path.read_text()), record_json_schema())


def test_engine_slug():
    assert run_dir_for(Path("r"), "TensorRT-LLM", "x") == Path("r/tensorrt-llm/x")
