"""Benchmark records: one sweep of one engine, with the same provenance as a probe record."""

from __future__ import annotations

import warnings
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from harness.loadgen import LoadStats, Percentiles, Workload
from harness.records.results import (
    BENCH_FILE,
    EngineIdentity,
    HarnessInfo,
    HostInfo,
    LaunchInfo,
    ModelInfo,
    RecordWarning,
    read_json_file,
    write_model,
)

BENCH_SCHEMA_VERSION = 1


class BenchWorkload(BaseModel):
    """What every level of the sweep sent: EOS-ignoring requests of these lengths (uniform in n*(1 +- r))."""

    api: Literal["completions", "chat"]
    input_tokens: int
    input_range_ratio: float
    output_tokens: int
    output_range_ratio: float
    seed: int
    warmup_requests: int

    @classmethod
    def of(cls, workload: Workload, warmup_requests: int) -> BenchWorkload:
        """The record of a load generator workload."""
        return cls(
            api=workload.api,
            input_tokens=workload.input_tokens.mean,
            input_range_ratio=workload.input_tokens.range_ratio,
            output_tokens=workload.output_tokens.mean,
            output_range_ratio=workload.output_tokens.range_ratio,
            seed=workload.seed,
            warmup_requests=warmup_requests,
        )


class BenchLevel(BaseModel):
    """One level of the sweep: the load generator's figures and the engine's own."""

    stats: LoadStats
    engine_decode_tps: Percentiles | None = None  # per-request decode tokens/s the engine reported, if it did


Pace = Literal["paced", "zero"]  # paced: the calibration's TTFT/ITL; zero: no delay at all (the ceiling runs)


class CalibrationPoint(BaseModel):
    """One tool at one requested open-loop rate against the null engine."""

    tool: str
    pace: Pace
    rate: float  # requested, requests/s
    requests: int
    completed: int
    failed: int
    achieved_rate: float  # completed requests/s, as the tool computes it
    ttft_p50_ms: float | None
    itl_p50_ms: float | None
    engine_ttft_p50_ms: float | None  # the null engine's own record of the same requests
    engine_gap_p50_ms: float | None
    client_cpu_ms_per_request: float | None  # the tool's CPU over its timed part, per request
    client_bound: bool | None = None  # infercheck's own verdict (peers give none)


class PeerTool(BaseModel):
    """A load generator the calibration ran, or why it did not."""

    name: str
    version: str | None
    status: str  # "measured", or why not


class Calibration(BaseModel):
    """Every installed load generator against the null engine in one run: accuracy and ceiling."""

    ttft_ms: float
    itl_ms: float
    input_tokens: int
    output_tokens: int
    ceiling_share: float  # a rate is sustained when achieved >= this share of requested
    tools: list[PeerTool]
    points: list[CalibrationPoint]

    def ceiling(self, tool: str) -> tuple[float | None, CalibrationPoint | None]:
        """The highest zero-delay rate the tool sustained, and its first point past it (if measured)."""
        runs = sorted((p for p in self.points if p.tool == tool and p.pace == "zero"), key=lambda p: p.rate)
        sustained = [p for p in runs if p.achieved_rate >= self.ceiling_share * p.rate]
        best = max((p.rate for p in sustained), default=None)
        past = next((p for p in runs if best is None or p.rate > best), None)
        return best, past


class BenchRecord(BaseModel):
    """A concurrency or rate sweep of one engine in one run, or a calibration of the load generators."""

    schema_version: int = BENCH_SCHEMA_VERSION
    run_id: str
    engine: EngineIdentity
    launch: LaunchInfo | None = None
    model: ModelInfo | None = None
    host: HostInfo
    harness: HarnessInfo
    workload: BenchWorkload
    levels: list[BenchLevel]
    calibration: Calibration | None = None
    started_at: datetime
    finished_at: datetime


def write_bench_record(record: BenchRecord, run_dir: Path) -> Path:
    """Write the run's bench.json atomically; never rewrites one."""
    return write_model(record, run_dir / BENCH_FILE)


MAX_BENCH_BYTES = 32 << 20  # a sweep record is at most megabytes; anything this big is not one of ours


def load_bench_records(results_dir: Path) -> list[BenchRecord]:
    """Every benchmark record under a results folder, in a stable order. As probe records are read: a file that is
    not a readable record (a symlink, FIFO or other non-regular file, too big, truncated, invalid, a newer schema)
    is skipped with a RecordWarning naming it, never opened when not a regular file."""
    records = []
    for path in sorted(Path(results_dir).rglob(BENCH_FILE)):
        try:
            data = read_json_file(path, MAX_BENCH_BYTES)
            version = data.get("schema_version", BENCH_SCHEMA_VERSION) if isinstance(data, dict) else None
            if not isinstance(version, int) or version > BENCH_SCHEMA_VERSION:
                raise ValueError(f"schema_version {version!r} is not one this harness reads ({BENCH_SCHEMA_VERSION})")
            records.append(BenchRecord.model_validate(data))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "record"
            warnings.warn(f"skipped {path}: {where}: {first['msg']}", RecordWarning, stacklevel=2)
        except (OSError, ValueError, RecursionError) as exc:
            warnings.warn(f"skipped {path}: {str(exc).splitlines()[0][:300]}", RecordWarning, stacklevel=2)
    return records


def latest_per_engine(records: list[BenchRecord]) -> list[BenchRecord]:
    """The latest record of each engine (by finished time, then run id), sorted by engine name."""
    latest: dict[str, BenchRecord] = {}
    for record in records:
        current = latest.get(record.engine.name)
        if current is None or (record.finished_at, record.run_id) > (current.finished_at, current.run_id):
            latest[record.engine.name] = record
    return [latest[name] for name in sorted(latest)]
