"""Result records: the schema, the verdict vocabulary, and the atomic writer/reader."""

from __future__ import annotations

import json
import os
import re
import tempfile
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1
BENCH_FILE = "bench.json"  # a run's benchmark record (harness.bench), beside its probe records


class Status(str, Enum):
    """A probe's verdict (see DESIGN.md, "Verdicts")."""

    PASS = "pass"
    PARTIAL = "partial"
    FAIL = "fail"
    NOT_MEASURED = "not_measured"
    ERROR = "error"


class Exchange(BaseModel):
    """One request sent to the engine and an excerpt of what came back."""

    method: str
    path: str
    request: Any = None
    status_code: int | None = None
    response: Any = None
    elapsed_s: float | None = None


class Evidence(BaseModel):
    """What a verdict rests on: the exchanges, the numbers and the engine's own words."""

    exchanges: list[Exchange] = Field(default_factory=list)
    numbers: dict[str, Any] = Field(default_factory=dict)
    engine_log: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class Verdict(BaseModel):
    """What a probe concluded, before provenance is attached."""

    status: Status
    reason: str
    evidence: Evidence = Field(default_factory=Evidence)


class EngineIdentity(BaseModel):
    """Which engine build answered: as exact as the engine lets us know."""

    name: str
    version: str
    package: str | None = None
    package_version: str | None = None
    image: str | None = None
    image_digest: str | None = None
    build: dict[str, Any] = Field(default_factory=dict)


class LaunchInfo(BaseModel):
    """How the engine was started (or attached to)."""

    launcher: str
    config: str
    command: list[str] = Field(default_factory=list)
    base_url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    ready_s: float | None = None  # seconds from the launcher's start to the first healthy answer; None when attached


class ModelInfo(BaseModel):
    """The model the probe ran on."""

    name: str
    family: str
    format: str
    sha256: str | None = None
    source: str = "synthesized"


class HostInfo(BaseModel):
    """The machine the engine ran on."""

    hostname: str
    platform: str
    cpu: str
    cpu_count: int
    memory_gib: float
    accelerators: list[str] = Field(default_factory=list)


class HarnessInfo(BaseModel):
    """The harness build that produced the record."""

    version: str
    git_commit: str | None = None
    git_dirty: bool | None = None


class ResultRecord(BaseModel):
    """One probe's result in one run, with full provenance."""

    schema_version: int = SCHEMA_VERSION
    run_id: str
    probe: str
    feature: str
    engine: EngineIdentity
    launch: LaunchInfo | None = None
    model: ModelInfo | None = None
    host: HostInfo
    harness: HarnessInfo
    status: Status
    reason: str
    evidence: Evidence = Field(default_factory=Evidence)
    started_at: datetime
    finished_at: datetime

    def file_name(self) -> str:
        """Stable file name of this record inside its run folder."""
        return f"{self.probe}.json"


def engine_slug(engine_name: str) -> str:
    """Folder name of an engine's records: lowercase, only [a-z0-9.-]."""
    return re.sub(r"[^a-z0-9.-]", "-", engine_name.lower())


def run_dir_for(results_dir: Path, engine_name: str, run_id: str) -> Path:
    """Where one run's records live: results/<engine>/<run_id>/<probe>.json."""
    return results_dir / engine_slug(engine_name) / run_id


def record_json_schema() -> dict[str, Any]:
    """The published JSON Schema of a result record."""
    return ResultRecord.model_json_schema()


def write_record(record: ResultRecord, run_dir: Path) -> Path:
    """Write one record atomically (temp file + rename); never rewrites an existing record."""
    return write_model(record, run_dir / record.file_name())


def write_model(model: BaseModel, target: Path) -> Path:
    """Write a model as indented JSON atomically (temp file + rename); never rewrites an existing file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise FileExistsError(f"result record already exists: {target}")
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=target.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(model.model_dump_json(indent=2))
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    return target


def load_records(results_dir: Path) -> list[ResultRecord]:
    """Every probe record under a results folder, in a stable order (benchmark records are not probe records)."""
    records = []
    for path in sorted(results_dir.rglob("*.json")):
        if path.name.startswith(".tmp-") or path.name in ("record.schema.json", BENCH_FILE):
            continue
        records.append(ResultRecord.model_validate(json.loads(path.read_text(encoding="utf-8"))))
    return records
