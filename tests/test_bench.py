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
    BenchLevel,
    BenchRecord,
    BenchWorkload,
    Calibration,
    CalibrationPoint,
    PeerTool,
    latest_per_engine,
    load_bench_records,
    write_bench_record,
)
from harness.bench.saturation import saturation_point
from harness.bench.sweep import SweepPlan, sweep
from harness.engines.base import LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.launch.base import RunningEngine
from harness.loadgen import DEFINITIONS, SLO, ClientFigures, Lengths, Workload
from harness.loadgen.null_engine import NullPace, running_null_engine
from harness.models import ModelArtifact
from harness.probing.session import EngineSession
from harness.records.results import (
    BENCH_FILE,
    EngineIdentity,
    HarnessInfo,
    HostInfo,
    LaunchInfo,
    load_records,
    run_dir_for,
)
from harness.report import render_report, write_report
from harness.report.performance import PERCENTILES_PLOT, THROUGHPUT_PLOT
from harness.wire.client import EvidenceClient

REPO = Path(__file__).resolve().parent.parent
START = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)
PLAN = SweepPlan(
    levels=[1, 2],
    workload=Workload(Lengths(8), Lengths(6)),
    requests_per_level=4,
    warmup_requests=1,
    slo=SLO(ttft_s=1.0),
)


@pytest.fixture(scope="module")
def null_session() -> Iterator[EngineSession]:
    """An engine session whose engine is the null engine."""
    with running_null_engine(NullPace(ttft_s=0.02, itl_s=0.004)) as url:
        client = EvidenceClient(url)
        yield EngineSession(
            adapter=LlamaCppAdapter(),
            spec=LaunchSpec(),
            running=RunningEngine(base_url=url, log_path=None),
            identity=EngineIdentity(name="null", version="1"),
            model=ModelArtifact(
                name="null", family="null", format="none", path=Path("null"), sha256="0", references=[]
            ),
            served_model="null",
            client=client,
            launch=LaunchInfo(launcher="attach", config="base", base_url=url),
        )
        client.close()


def bench_record(
    session: EngineSession, levels: list, engine: str = "null", run_id: str = "run-1", minute: int = 1
) -> BenchRecord:
    return BenchRecord(
        run_id=run_id,
        engine=session.identity.model_copy(update={"name": engine}),
        launch=session.launch,
        model=session.model_info(),
        host=HostInfo(hostname="box", platform="Linux", cpu="Xeon", cpu_count=2, memory_gib=8.0),
        harness=HarnessInfo(version="0.1.0", git_commit="0123456789ab", git_dirty=False),
        workload=BenchWorkload.of(PLAN.workload, PLAN.warmup_requests),
        levels=levels,
        started_at=START + timedelta(minutes=minute - 1),
        finished_at=START + timedelta(minutes=minute),
    )


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


def test_bench_record_round_trips_and_is_not_a_probe_record(
    null_session: EngineSession, levels: list, tmp_path: Path
) -> None:
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


def test_report_performance_section_is_reproducible(null_session: EngineSession, levels: list, tmp_path: Path) -> None:
    from harness.records.claims import load_claims

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

    from harness.cli.app import app

    result = CliRunner().invoke(app, ["bench", "--concurrency", "0,2", "--results-dir", str(tmp_path)])
    assert result.exit_code == 2 and not list(tmp_path.iterdir())


# -- rate levels, saturation, Pareto, outputs, calibration records -----------------------------


def test_rate_levels_report_requested_offered_and_client_figures(null_session: EngineSession) -> None:
    plan = SweepPlan(
        levels=[],
        rates=[40.0],
        workload=Workload(Lengths(8), Lengths(4)),
        requests_per_level=12,
        warmup_requests=0,
        processes=2,
        max_error_rate=0.5,
    )
    (level,) = sweep(null_session, plan, progress=lambda message: None)
    stats = level.stats
    assert (stats.concurrency, stats.rate, stats.completed) == (None, 40.0, 12)
    assert stats.offered_rate == pytest.approx(40.0) and stats.client and stats.client.processes == 2


def stats_level(
    levels: list, concurrency: int | None, rate: float | None, throughput: float, bound: bool = False
) -> BenchLevel:
    stats = levels[0].stats.model_copy(
        update={"concurrency": concurrency, "rate": rate, "request_throughput": throughput}
    )
    if bound:
        stats.client = ClientFigures(
            processes=1,
            cpu_s=1.0,
            cpu_ms_per_request=1.0,
            saturation=0.99,
            waiting=0.0,
            send_rate=None,
            send_lag_s=None,
            bound=True,
            reason="client-bound: busy",
        )
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


def test_outputs_write_csv_and_a_self_contained_html(null_session: EngineSession, levels: list, tmp_path: Path) -> None:
    record = bench_record(null_session, levels)
    csv_path, html_path = write_outputs(record, tmp_path)
    rows = list(csv.reader(csv_path.open()))
    assert rows[1] == list(LEVEL_COLUMNS) and len(rows) == 2 + len(levels)
    page = html_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and "Saturation point" in page
    assert "src=" not in page and 'href="http' not in page  # nothing external
    assert all(name in page for name in DEFINITIONS)


def calibration() -> Calibration:
    def point(tool: str, pace: str, rate: float, achieved: float, ttft: float = 101.0) -> CalibrationPoint:
        return CalibrationPoint(
            tool=tool,
            pace=pace,
            rate=rate,
            requests=100,
            completed=100,
            failed=0,  # type: ignore[arg-type]
            achieved_rate=achieved,
            ttft_p50_ms=ttft,
            itl_p50_ms=10.0,
            engine_ttft_p50_ms=100.5,
            engine_gap_p50_ms=10.0,
            client_cpu_ms_per_request=0.3,
            client_bound=False if tool == "infercheck" else None,
        )

    points = [
        point("infercheck", "paced", 10.0, 9.9),
        point("vllm bench serve", "paced", 10.0, 9.8, 102.0),
        point("infercheck", "zero", 500.0, 498.0),
        point("infercheck", "zero", 1000.0, 700.0),
        point("vllm bench serve", "zero", 500.0, 400.0),
    ]
    return Calibration(
        ttft_ms=100.0,
        itl_ms=10.0,
        input_tokens=32,
        output_tokens=50,
        ceiling_share=0.95,
        tools=[
            PeerTool(name="infercheck", version="0.1.0", status="measured"),
            PeerTool(name="aiperf", version=None, status="not installed here"),
        ],
        points=points,
    )


def test_calibration_ceiling_and_tables() -> None:
    tables = calibration()
    assert tables.ceiling("infercheck")[0] == 500.0 and tables.ceiling("infercheck")[1].rate == 1000.0  # type: ignore[union-attr]
    assert tables.ceiling("vllm bench serve") == (None, tables.points[-1])
    (ours, theirs) = accuracy_rows(tables)
    assert ours[0] == "infercheck" and ours[5] == "+1.00%" and theirs[5] == "+2.00%" and ours[-1] == "no"
    assert ceiling_rows(tables)[0][:3] == ["infercheck", "500", "700 achieved at 1000"]


def test_report_shows_the_calibration_and_the_definitions(null_session: EngineSession, levels: list) -> None:
    from harness.records.claims import load_claims

    record = bench_record(null_session, [], engine="load generator calibration (null engine)").model_copy(
        update={"calibration": calibration()}
    )
    report = render_report(load_claims(REPO / "report" / "claims.json"), [], bench=[record])["comparison.md"]
    assert "### Load generator calibration" in report and "| vllm bench serve | 10 |" in report
    assert "aiperf : not installed here" not in report and "aiperf: not installed here" in report
    assert "### Metric definitions" in report and "**TTFT**" in report


def test_bench_calibrate_is_a_command() -> None:
    from typer.testing import CliRunner

    from harness.cli.app import app

    result = CliRunner().invoke(app, ["bench", "calibrate", "--help"], terminal_width=200)
    assert result.exit_code == 0 and "null engine" in result.output
    assert "--out-dir" in result.output and "--report-dir" not in result.output  # one name per option


def test_bench_takes_the_report_folder_as_out_dir() -> None:
    from typer.testing import CliRunner

    from harness.cli.app import app

    for command in (["bench"], ["bench", "calibrate"]):
        result = CliRunner().invoke(app, [*command, "--report-dir", "x", "--help"])
        assert result.exit_code == 2, command  # the old name is gone
        result = CliRunner().invoke(app, [*command, "--help"], terminal_width=200)
        assert "--out-dir" in result.output, command


def test_benchmark_launch_turns_llama_servers_ram_prompt_cache_off() -> None:
    from harness.engines.base import ResolvedModels

    command = LlamaCppAdapter(server_binary=Path("llama-server")).launch_command(
        LaunchSpec(prompt_cache_ram=False), ResolvedModels(model=Path("m.gguf")), 8080
    )
    assert command[command.index("--cache-ram") + 1] == "0"
    assert "--cache-ram" not in LlamaCppAdapter(server_binary=Path("llama-server")).launch_command(
        LaunchSpec(), ResolvedModels(model=Path("m.gguf")), 8080
    )


# -- the peer load generators (GuideLLM, AIPerf): their result formats and real runs ------------

PEER_SAMPLES = REPO / "tests" / "contracts" / "peers"  # trimmed copies of real result files (see its README)


def _peer_sample(name: str) -> dict:
    import json

    return json.loads((PEER_SAMPLES / name).read_text())


def test_guidellm_result_is_read_in_its_own_field_names() -> None:
    from harness.bench.peers import guidellm

    ok = guidellm.parse(_peer_sample("guidellm.json"))  # 20 sent; GuideLLM left the last one out of its counts
    assert (ok.completed, ok.failed) == (19, 0) and ok.achieved_rate == pytest.approx(7.94, abs=0.01)
    assert ok.ttft_p50_ms == pytest.approx(101.23, abs=0.01) and ok.itl_p50_ms == pytest.approx(10.003, abs=0.001)
    assert ok.window is not None and ok.window[1] - ok.window[0] == pytest.approx(2.393, abs=0.001)
    errors = guidellm.parse(_peer_sample("guidellm_errors.json"))  # a null engine failing every 4th request
    assert (errors.completed, errors.failed) == (15, 5) and errors.ttft_p50_ms is not None


def test_aiperf_result_is_read_in_its_own_field_names() -> None:
    from harness.bench.peers import aiperf

    ok = aiperf.parse(_peer_sample("aiperf.json"))
    assert (ok.completed, ok.failed) == (20, 0) and ok.achieved_rate == pytest.approx(8.43, abs=0.01)
    assert ok.ttft_p50_ms == pytest.approx(101.06, abs=0.01) and ok.itl_p50_ms == pytest.approx(10.012, abs=0.001)
    assert ok.window is not None and 2.0 < ok.window[1] - ok.window[0] < 3.0
    errors = aiperf.parse(_peer_sample("aiperf_errors.json"))
    assert (errors.completed, errors.failed) == (15, 5)
    with pytest.raises(ValueError, match="in 's'"):
        aiperf.parse({**_peer_sample("aiperf.json"), "time_to_first_token": {"unit": "s", "p50": 0.1}})


def test_peer_point_counts_requests_the_tool_left_out_as_failed(tmp_path: Path) -> None:
    import sys

    from harness.bench.peers import guidellm
    from harness.bench.peers.runner import PeerRunner
    from harness.bench.peers.traffic import Traffic

    run = PeerRunner(
        "guidellm",
        lambda traffic, folder: [sys.executable, "-c", "pass"],
        {},
        lambda folder: guidellm.parse(_peer_sample("guidellm.json")),
    )
    point = run(Traffic("http://127.0.0.1:1", 10.0, 20), "paced")
    assert (point.completed, point.failed) == (19, 1)
    assert point.client_cpu_ms_per_request is None  # the sample's benchmark window is not this process's


def test_peer_process_tree_cpu_and_deadline(tmp_path: Path) -> None:
    import os
    import sys
    import time

    from harness.bench.peers.runner import run_tool

    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    parent = f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn!r}])"
    run = run_tool([sys.executable, "-c", parent], dict(os.environ), tmp_path, timeout_s=30)
    assert run.returncode == 0 and run.cpu_s >= 0.3  # the grandchild's CPU counts
    assert run.cpu_between(run.cpu_samples[0][0], run.cpu_samples[-1][0]) == pytest.approx(
        run.cpu_samples[-1][1] - run.cpu_samples[0][1]
    )
    with pytest.raises(RuntimeError, match="did not finish within 1 s"):
        run_tool(["sh", "-c", "sleep 30 & echo $! > child; wait"], dict(os.environ), tmp_path, timeout_s=1)
    child, deadline = int((tmp_path / "child").read_text()), time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:  # the whole group went, the background child too
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_calibration_records_a_failed_tool_and_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.bench import peer_calibration as calibration
    from harness.bench.peers.traffic import Traffic

    def fine(traffic: Traffic, pace: str) -> CalibrationPoint:
        return CalibrationPoint(
            tool="infercheck",
            pace=pace,
            rate=traffic.rate,  # type: ignore[arg-type]
            requests=traffic.requests,
            completed=traffic.requests,
            failed=0,
            achieved_rate=traffic.rate,
            ttft_p50_ms=100.0,
            itl_p50_ms=10.0,
            engine_ttft_p50_ms=None,
            engine_gap_p50_ms=None,
            client_cpu_ms_per_request=0.1,
        )

    def broken(traffic: Traffic, pace: str) -> CalibrationPoint:
        raise RuntimeError("aiperf failed (exit 1): Failed to load tokenizer")

    tools = [
        PeerTool(name="infercheck", version="0.1.0", status="measured"),
        PeerTool(name="aiperf", version="0.13.0", status="measured"),
    ]
    monkeypatch.setattr(calibration, "peer_tools", lambda: ({"infercheck": fine, "aiperf": broken}, tools))
    monkeypatch.setattr(calibration, "ACCURACY_RATES", (10.0,))
    monkeypatch.setattr(calibration, "CEILING_RATES", (250.0, 500.0))
    result = calibration.calibrate(progress=lambda message: None)
    failed = [point for point in result.points if point.tool == "aiperf"]
    assert [(p.pace, p.rate, p.completed, p.failed) for p in failed] == [
        ("paced", 10.0, 0, 30),
        ("zero", 250.0, 0, 500),
    ]
    assert len([point for point in result.points if point.tool == "infercheck"]) == 3
    assert result.tools[1].status == (
        "measured; failed first at 10 req/s (paced): aiperf failed (exit 1): Failed to load tokenizer"
    )


@pytest.mark.parametrize("name", ["guidellm", "aiperf"])
def test_peer_runs_against_the_null_engine(name: str) -> None:
    """20 requests at 10 req/s from the installed peer; skipped where it is not installed (the suite installs
    nothing: `infercheck bench calibrate` does)."""
    import importlib

    from harness.bench.peer_calibration import hf_tokenizer
    from harness.bench.peers import find_peer
    from harness.bench.peers.traffic import Traffic
    from harness.paths import cache_dir

    peer = find_peer(cache_dir(), name)
    if peer is None:
        pytest.skip(f"{name} is not installed here (infercheck bench calibrate installs it)")
    run = importlib.import_module(f"harness.bench.peers.{name}").runner(peer, hf_tokenizer())
    with running_null_engine(NullPace(ttft_s=0.1, itl_s=0.01)) as url:
        point = run(Traffic(url, 10.0, 20), "paced")
    # GuideLLM 0.8.1 at times ends its benchmark with the last request in flight and leaves it out of its counts
    assert point.completed == 20 or (name == "guidellm" and (point.completed, point.failed) == (19, 1))
    assert point.ttft_p50_ms is not None and 99.0 < point.ttft_p50_ms < 130.0
    assert point.itl_p50_ms is not None and 9.5 < point.itl_p50_ms < 11.0  # per token, the server's token count
    assert point.client_cpu_ms_per_request is not None and point.client_cpu_ms_per_request > 0
    assert 5.0 < point.achieved_rate < 20.0
