"""Result records: the schema, the verdict vocabulary, and the atomic writer/reader."""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from harness.atomic import TMP_PREFIX, write_atomic

SCHEMA_VERSION = 1  # version 1 grew optional fields only (compute_dtype, absence_source): old records still load
BENCH_FILE = "bench.json"  # a run's benchmark record (harness.bench), beside its probe records
SAFE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$"  # a run id or probe name: one path component, never '..'
LEGACY_ABSENCE_NOTE = "documented absence (adapter), no request sent"  # how records before absence_source said it
UNKNOWN = "unknown"  # a context dimension an (older) record does not tell
NOT_STARTED = "not started"  # the engine version of a record written before the run started any engine
LEVEL_UNKNOWN = "cpu (level unknown)"  # an older record naming neither its instruction-set level nor its CPU


class RecordWarning(UserWarning):
    """A record the report leaves out or distrusts; the message names the file or record."""


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
    numbers: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "the probe's measurements; `seed_mark` (a seed-table mark such as 🟠) lowers the mark a pass shows, "
            "e.g. an engine's own kernel standing in for the one the row names"
        ),
    )
    engine_log: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    absence_source: str | None = Field(
        default=None,
        description=(
            "set when the verdict is a documented absence (no request can express the feature): the file at a "
            "version, or the docs page, that documents it; the report marks the cell apart from an observed failure"
        ),
    )


class Verdict(BaseModel):
    """What a probe concluded, before provenance is attached."""

    status: Status
    reason: str
    evidence: Evidence = Field(default_factory=Evidence)


class EngineIdentity(BaseModel):
    """Which engine build answered: as exact as the engine lets us know."""

    name: str = Field(description="the engine's column name; never a path that climbs (no '..' part, no leading '/')")
    version: str
    package: str | None = None
    package_version: str | None = None
    image: str | None = None
    image_digest: str | None = None
    build: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_stays_inside(cls, name: str) -> str:
        """An engine name names a column and (slugged) a folder: one that reads as a climbing path is refused."""
        parts = name.replace("\\", "/").split("/")
        if not name.strip() or name.startswith(("/", "\\")) or ".." in (part.strip() for part in parts):
            raise ValueError(f"engine name {name!r} would leave the results folder")
        return name


class LaunchInfo(BaseModel):
    """How the engine was started (or attached to)."""

    launcher: str
    config: str
    command: list[str] = Field(default_factory=list)
    base_url: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    ready_s: float | None = None  # seconds from the launcher's start to the first healthy answer; None when attached
    compute_dtype: str | None = Field(
        default=None,
        description=(
            "the dtype the engine computes in (float32, bfloat16, ...); part of the measurement context; null: unknown"
        ),
    )


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
    isa_level: str | None = Field(
        default=None,
        description=(
            "the instruction-set level engines compute with, part of the measurement context: avx2, avx512, "
            "avx512+amx, x86-64, arm64, arm64+sve, apple-<chip>; on a GPU host the GPU model; null in records "
            "written before it was recorded (read from `cpu`)"
        ),
    )

    def level(self) -> str:
        """The recorded level; for an older record the CPU model it names, marked as such."""
        if self.isa_level:
            return self.isa_level
        if self.accelerators:
            return _gpu_model(self.accelerators[0])
        return f"{self.cpu} (level not recorded)" if self.cpu.strip() else LEVEL_UNKNOWN


class HarnessInfo(BaseModel):
    """The harness build that produced the record."""

    version: str
    git_commit: str | None = None
    git_dirty: bool | None = None


class MeasurementContext(BaseModel, frozen=True):
    """How a verdict was obtained; verdicts from different contexts are never merged into one."""

    host_class: str  # "cpu <instruction-set level>" (cpu avx2, cpu avx512+amx, cpu apple-m3), or "gpu <count>x <model>"
    launcher: str  # process, docker or attach
    model_source: str  # synthesized, or hub
    distribution: str  # package==version, image@digest, or the engine's own version string
    compute_dtype: str  # e.g. float32; UNKNOWN when the record does not say

    def describe(self) -> str:
        """All five dimensions in one line."""
        return (
            f"{self.host_class}, {self.launcher}, {self.model_source} model, {self.distribution}, {self.compute_dtype}"
        )


class ResultRecord(BaseModel):
    """One probe's result in one run, with full provenance.

    The report keeps verdicts apart by measurement context (host class from host.accelerators, launch.launcher,
    model.source, the engine's package or image, launch.compute_dtype); it leaves out attach-mode records and
    records whose harness.git_dirty is true unless asked (`infercheck report --include-attach --allow-dirty`)."""

    schema_version: int = SCHEMA_VERSION
    run_id: str = Field(pattern=SAFE_NAME, description="the run's id: one path component (results/<engine>/<run_id>/)")
    probe: str = Field(pattern=SAFE_NAME, description="the probe's name: one path component (<probe>.json)")
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

    def context(self) -> MeasurementContext:
        """The measurement context, derived from the host, launch, model and engine fields."""
        gpus = self.host.accelerators
        level = self.host.level()
        host_class = (
            f"gpu {len(gpus)}x {_gpu_model(gpus[0])}" if gpus else level if level == LEVEL_UNKNOWN else f"cpu {level}"
        )
        return MeasurementContext(
            host_class=host_class,
            launcher=self.launch.launcher if self.launch else UNKNOWN,
            model_source=self.model.source if self.model else UNKNOWN,
            distribution=_distribution(self.engine),
            compute_dtype=(self.launch.compute_dtype if self.launch else None) or UNKNOWN,
        )

    def absence_source(self) -> str | None:
        """Where a documented absence is documented; None when the verdict was observed."""
        if self.evidence.absence_source:
            return self.evidence.absence_source
        return "not recorded (adapter assertion)" if LEGACY_ABSENCE_NOTE in self.evidence.notes else None


def _gpu_model(accelerator: str) -> str:
    """`NVIDIA H100 80GB HBM3, 81559 MiB, 550.54` (nvidia-smi csv) -> `NVIDIA H100 80GB HBM3`."""
    return accelerator.split(",")[0].strip()


def _distribution(engine: EngineIdentity) -> str:
    if engine.image:
        return f"{engine.image}@{engine.image_digest}" if engine.image_digest else engine.image
    if engine.package:
        return f"{engine.package}=={engine.package_version}" if engine.package_version else engine.package
    return UNKNOWN if engine.version == NOT_STARTED else f"{engine.name} {engine.version}"


def engine_slug(engine_name: str) -> str:
    """Folder name of an engine's records: lowercase, only [a-z0-9.-], never starting with a dot."""
    return re.sub(r"[^a-z0-9.-]", "-", engine_name.lower()).lstrip(".") or "engine"


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
    """Write a model as indented JSON atomically (harness.atomic); never rewrites an existing file."""
    try:
        return write_atomic(target, (model.model_dump_json(indent=2) + "\n").encode("utf-8"), replace=False)
    except FileExistsError:
        raise FileExistsError(f"result record already exists: {target}") from None


MAX_RECORD_BYTES = 4 << 20  # a probe record is kilobytes; anything this big is not one of ours


def load_records(results_dir: Path) -> list[ResultRecord]:
    """Every probe record under a results folder, in a stable order (benchmark records are not probe records).

    A file that is not a readable record of a schema this harness knows (unparsable, truncated, too big,
    a newer schema_version, a symlink or other non-regular file) is skipped with a RecordWarning naming it."""
    records = []
    for path in sorted(results_dir.rglob("*.json")):
        if path.name.startswith(TMP_PREFIX) or path.name in ("record.schema.json", BENCH_FILE):
            continue
        try:
            records.append(_read_record(path))
        except (OSError, ValueError, RecursionError) as exc:
            warnings.warn(f"skipped {path}: {str(exc).splitlines()[0][:300]}", RecordWarning, stacklevel=2)
    return records


def read_json_file(path: Path, max_bytes: int) -> Any:
    """The JSON in a regular file of at most `max_bytes` (lstat first: a symlink, FIFO or device is never opened);
    ValueError (or OSError) otherwise, or when it is not UTF-8 JSON."""
    info = path.lstat()
    if not stat.S_ISREG(info.st_mode):
        raise ValueError("not a regular file")
    if info.st_size > max_bytes:
        raise ValueError(f"{info.st_size} bytes, more than a record's {max_bytes}")
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)  # swapped after lstat: no hang
    fd = os.open(path, flags)
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ValueError("not a regular file")
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"more than a record's {max_bytes} bytes")
    return json.loads(data.decode("utf-8"))


def _read_record(path: Path) -> ResultRecord:
    """One record file; ValueError (or OSError) when it is not one this harness can trust."""
    data = read_json_file(path, MAX_RECORD_BYTES)
    version = data.get("schema_version", SCHEMA_VERSION) if isinstance(data, dict) else SCHEMA_VERSION
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise ValueError(f"schema_version {version!r} is newer than this harness reads ({SCHEMA_VERSION})")
    try:
        return ResultRecord.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "record"
        raise ValueError(f"{where}: {first['msg']} ({exc.error_count()} error(s))") from None
