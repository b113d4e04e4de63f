"""Benchmark sweeps, their records, and the report's performance section (against the null engine)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harness.bench.records import BenchRecord, BenchWorkload, latest_per_engine, load_bench_records, write_bench_record
from harness.bench.report_section import PERCENTILES_PLOT, THROUGHPUT_PLOT
from harness.bench.sweep import SweepPlan, sweep
from harness.client import EvidenceClient
from harness.engines.base import LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.launch.base import RunningEngine
from harness.loadgen import SLO, Lengths, Workload
from harness.loadgen.null_engine import NullPace, running_null_engine
from harness.models import ModelArtifact
from harness.report import render_report, write_report
from harness.results import BENCH_FILE, EngineIdentity, HarnessInfo, HostInfo, LaunchInfo, load_records, run_dir_for
from harness.session import EngineSession

REPO = Path(__file__).resolve().parent.parent
START = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
PLAN = SweepPlan(levels=[1, 2], workload=Workload(Lengths(8), Lengths(6)), requests_per_level=4, warmup_requests=1,
                 slo=SLO(ttft_s=1.0))


@pytest.fixture(scope="module")
def null_session() -> Iterator[EngineSession]:
    """An engine session whose engine is the null engine."""
    with running_null_engine(NullPace(ttft_s=0.02, itl_s=0.004)) as url:
        client = EvidenceClient(url)
        yield EngineSession(
            adapter=LlamaCppAdapter(), spec=LaunchSpec(), running=RunningEngine(base_url=url, log_path=None),
            identity=EngineIdentity(name="null", version="1"),
            model=ModelArtifact(name="null", family="null", format="none", path=Path("null"), sha256="0",
                                references=[]),
            served_model="null", client=client, launch=LaunchInfo(launcher="attach", config="base", base_url=url))
        client.close()


def bench_record(session: EngineSession, levels: list, engine: str = "null", run_id: str = "run-1",
                 minute: int = 1) -> BenchRecord:
    return BenchRecord(
        run_id=run_id, engine=session.identity.model_copy(update={"name": engine}), launch=session.launch,
        model=session.model_info(), host=HostInfo(hostname="box", platform="Linux", cpu="Xeon", cpu_count=2,
                                                  memory_gib=8.0),
        harness=HarnessInfo(version="0.1.0", git_commit="0123456789ab", git_dirty=False),
        workload=BenchWorkload.of(PLAN.workload, PLAN.warmup_requests), levels=levels,
        started_at=START + timedelta(minutes=minute - 1), finished_at=START + timedelta(minutes=minute))


@pytest.fixture(scope="module")
def levels(null_session: EngineSession) -> list:
    return sweep(null_session, PLAN, progress=lambda message: None)


def test_sweep_runs_each_level(levels: list) -> None:
    assert [level.stats.concurrency for level in levels] == [1, 2]
    for level in levels:
        stats = level.stats
        assert (stats.requests, stats.completed, stats.output_tokens) == (4, 4, 24)
        assert stats.goodput == pytest.approx(stats.request_throughput)  # every request within a 1 s TTFT
        # the null engine times itself like llama-server: 6 tokens over 5 gaps of 4 ms
        assert level.engine_decode_tps is not None and 200 < level.engine_decode_tps.p50 < 400
    assert levels[1].stats.output_throughput > levels[0].stats.output_throughput


def test_bench_record_round_trips_and_is_not_a_probe_record(null_session: EngineSession, levels: list,
                                                            tmp_path: Path) -> None:
    record = bench_record(null_session, levels)
    path = write_bench_record(record, run_dir_for(tmp_path, "null", "run-1"))
    assert path == tmp_path / "null" / "run-1" / BENCH_FILE
    assert load_bench_records(tmp_path) == [record]
    assert load_records(tmp_path) == []
    with pytest.raises(FileExistsError):
        write_bench_record(record, path.parent)


def test_latest_record_per_engine(null_session: EngineSession, levels: list) -> None:
    old, new = bench_record(null_session, levels, minute=1), bench_record(null_session, levels, run_id="r2", minute=2)
    other = bench_record(null_session, levels, engine="alpha")
    assert latest_per_engine([new, other, old]) == [other, new]


def test_report_performance_section_is_reproducible(null_session: EngineSession, levels: list,
                                                    tmp_path: Path) -> None:
    from harness.claims import load_claims

    claims = load_claims(REPO / "report" / "claims.json")
    records = [bench_record(null_session, levels), bench_record(null_session, levels, engine="alpha")]
    files = render_report(claims, [], bench=records)
    again = render_report(claims, [], bench=list(reversed(records)))
    assert files == again
    report = files["comparison.md"]
    assert "## Performance" in report and f"]({THROUGHPUT_PLOT})" in report and "### alpha" in report
    assert "../results/null/run-1/bench.json" in report
    assert report.index("### alpha") < report.index("### null")
    for plot in (THROUGHPUT_PLOT, PERCENTILES_PLOT):
        assert files[plot].startswith("<?xml") and "<dc:date>" not in files[plot]
    assert "## Performance" not in render_report(claims, [])["comparison.md"]


def test_write_report_reads_bench_records(null_session: EngineSession, levels: list, tmp_path: Path) -> None:
    results = tmp_path / "results"
    write_bench_record(bench_record(null_session, levels), run_dir_for(results, "null", "run-1"))
    written = write_report(REPO / "report" / "claims.json", results, tmp_path / "report")
    assert tmp_path / "report" / THROUGHPUT_PLOT in written
    first = {path: path.read_bytes() for path in written}
    write_report(REPO / "report" / "claims.json", results, tmp_path / "report")
    assert first == {path: path.read_bytes() for path in written}


def test_bench_command_rejects_bad_levels(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["bench", "--concurrency", "0,2", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and not list(tmp_path.iterdir())
