"""Benchmark sweeps, their records, and the report's performance section (against the null engine)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harness.bench.outputs import LEVEL_COLUMNS, accuracy_rows, ceiling_rows, write_outputs
from harness.bench.plots import pareto_frontier
from harness.bench.records import (
    BenchLevel, BenchRecord, BenchWorkload, Calibration, CalibrationPoint, PeerTool, latest_per_engine,
    load_bench_records, write_bench_record,
)
from harness.bench.report_section import PERCENTILES_PLOT, THROUGHPUT_PLOT
from harness.bench.saturation import saturation_point
from harness.bench.sweep import SweepPlan, sweep
from harness.client import EvidenceClient
from harness.engines.base import LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.launch.base import RunningEngine
from harness.loadgen import DEFINITIONS, SLO, ClientFigures, Lengths, Workload
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
        # the null engine times itself like llama-server (its speed on a busy host is not checked here)
        assert level.engine_decode_tps is not None and level.engine_decode_tps.count == 4
        assert level.stats.client is not None and level.stats.client.processes == 1


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


# -- rate levels, saturation, Pareto, outputs, calibration records -----------------------------

def test_rate_levels_report_requested_offered_and_client_figures(null_session: EngineSession) -> None:
    plan = SweepPlan(levels=[], rates=[40.0], workload=Workload(Lengths(8), Lengths(4)), requests_per_level=12,
                     warmup_requests=0, processes=2, max_error_rate=0.5)
    (level,) = sweep(null_session, plan, progress=lambda message: None)
    stats = level.stats
    assert (stats.concurrency, stats.rate, stats.completed) == (None, 40.0, 12)
    assert stats.offered_rate == pytest.approx(40.0) and stats.client and stats.client.processes == 2


def stats_level(levels: list, concurrency: int | None, rate: float | None, throughput: float,
                bound: bool = False) -> BenchLevel:
    stats = levels[0].stats.model_copy(update={"concurrency": concurrency, "rate": rate,
                                               "request_throughput": throughput})
    if bound:
        stats.client = ClientFigures(processes=1, cpu_s=1.0, cpu_ms_per_request=1.0, saturation=0.99, waiting=0.0,
                                     send_rate=None, send_lag_s=None, bound=True, reason="client-bound: busy")
    return BenchLevel(stats=stats)


def test_saturation_point_closed_and_open_loop(levels: list) -> None:
    closed = [stats_level(levels, c, None, t) for c, t in ((1, 10.0), (2, 19.0), (4, 30.0), (8, 30.5))]
    assert saturation_point(closed).stats.concurrency == 4  # type: ignore[union-attr]
    opened = [stats_level(levels, None, r, t) for r, t in ((10.0, 10.0), (20.0, 19.5), (40.0, 28.0))]
    assert saturation_point(opened).stats.rate == 20.0  # type: ignore[union-attr]
    assert saturation_point([stats_level(levels, None, 10.0, 10.0, bound=True)]) is None  # unreliable: not counted


def test_pareto_frontier_keeps_undominated_points() -> None:
    points = [(1.0, 100.0), (2.0, 90.0), (2.0, 150.0), (3.0, 140.0), (4.0, 200.0)]
    assert pareto_frontier(points) == [(1.0, 100.0), (2.0, 150.0), (4.0, 200.0)]


def test_outputs_write_csv_and_a_self_contained_html(null_session: EngineSession, levels: list,
                                                     tmp_path: Path) -> None:
    record = bench_record(null_session, levels)
    csv_path, html_path = write_outputs(record, tmp_path)
    rows = list(csv.reader(csv_path.open()))
    assert rows[1] == list(LEVEL_COLUMNS) and len(rows) == 2 + len(levels)
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "Saturation point" in page
    assert "src=" not in page and "href=\"http" not in page  # nothing external
    assert all(name in page for name in DEFINITIONS)


def calibration() -> Calibration:
    def point(tool: str, pace: str, rate: float, achieved: float, ttft: float = 101.0) -> CalibrationPoint:
        return CalibrationPoint(tool=tool, pace=pace, rate=rate, requests=100, completed=100, failed=0,  # type: ignore[arg-type]
                                achieved_rate=achieved, ttft_p50_ms=ttft, itl_p50_ms=10.0, engine_ttft_p50_ms=100.5,
                                engine_gap_p50_ms=10.0, client_cpu_ms_per_request=0.3,
                                client_bound=False if tool == "infercheck" else None)

    points = [point("infercheck", "paced", 10.0, 9.9), point("vllm bench serve", "paced", 10.0, 9.8, 102.0),
              point("infercheck", "zero", 500.0, 498.0), point("infercheck", "zero", 1000.0, 700.0),
              point("vllm bench serve", "zero", 500.0, 400.0)]
    return Calibration(ttft_ms=100.0, itl_ms=10.0, input_tokens=32, output_tokens=50, ceiling_share=0.95,
                       tools=[PeerTool(name="infercheck", version="0.1.0", status="measured"),
                              PeerTool(name="aiperf", version=None, status="not installed here")], points=points)


def test_calibration_ceiling_and_tables() -> None:
    tables = calibration()
    assert tables.ceiling("infercheck")[0] == 500.0 and tables.ceiling("infercheck")[1].rate == 1000.0  # type: ignore[union-attr]
    assert tables.ceiling("vllm bench serve") == (None, tables.points[-1])
    (ours, theirs) = accuracy_rows(tables)
    assert ours[0] == "infercheck" and ours[5] == "+1.00%" and theirs[5] == "+2.00%" and ours[-1] == "no"
    assert ceiling_rows(tables)[0][:3] == ["infercheck", "500", "700 achieved at 1000"]


def test_report_shows_the_calibration_and_the_definitions(null_session: EngineSession, levels: list) -> None:
    from harness.claims import load_claims

    record = bench_record(null_session, [], engine="load generator calibration (null engine)").model_copy(
        update={"calibration": calibration()})
    report = render_report(load_claims(REPO / "report" / "claims.json"), [], bench=[record])["comparison.md"]
    assert "### Load generator calibration" in report and "| vllm bench serve | 10 |" in report
    assert "aiperf : not installed here" not in report and "aiperf: not installed here" in report
    assert "### Metric definitions" in report and "**TTFT**" in report


def test_bench_calibrate_is_a_command() -> None:
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["bench", "calibrate", "--help"])
    assert result.exit_code == 0 and "null engine" in result.output


def test_benchmark_launch_turns_llama_servers_ram_prompt_cache_off() -> None:
    from harness.engines.base import ResolvedModels

    command = LlamaCppAdapter(server_binary=Path("llama-server")).launch_command(
        LaunchSpec(prompt_cache_ram=False), ResolvedModels(model=Path("m.gguf")), 8080)
    assert command[command.index("--cache-ram") + 1] == "0"
    assert "--cache-ram" not in LlamaCppAdapter(server_binary=Path("llama-server")).launch_command(
        LaunchSpec(), ResolvedModels(model=Path("m.gguf")), 8080)
