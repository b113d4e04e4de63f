"""The `infercheck bench` commands: a sweep recorded as results/<engine>/<run_id>/bench.json (with a CSV
and a self-contained HTML page beside it), and `bench calibrate`, the load generators against the null engine."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import typer

from harness.paths import default_report_dir, default_results_dir

if TYPE_CHECKING:
    from harness.bench.records import BenchRecord

bench_app = typer.Typer(
    help="Benchmarks: sweeps of one engine, and the calibration of the load generators.", invoke_without_command=True
)


@bench_app.callback()
def bench_command(
    context: typer.Context,
    engine: str = typer.Option("llama.cpp", help="engine adapter"),
    base_url: str | None = typer.Option(None, help="attach to a running server instead of launching"),
    model: str = typer.Option("llama", help="synthesized model to serve (or that the attached server serves)"),
    concurrency: str = typer.Option("1,2,4,8", help="comma-separated closed-loop concurrency levels ('' for none)"),
    rates: str = typer.Option("", help="comma-separated open-loop Poisson rates, requests/s"),
    requests: int | None = typer.Option(
        None, help="requests per level (default: max(16, 8 x concurrency), or 8 s of a rate's traffic)"
    ),
    input_tokens: int = typer.Option(32, help="prompt length in tokens"),
    output_tokens: int = typer.Option(64, help="generated tokens per request (EOS ignored)"),
    range_ratio: float = typer.Option(0.0, help="lengths uniform in n*(1 +- r); 0: fixed"),
    api: str = typer.Option("completions", help="completions or chat"),
    slo_ttft_ms: float | None = typer.Option(None, help="goodput SLO: time to first token (ms)"),
    slo_tpot_ms: float | None = typer.Option(None, help="goodput SLO: time per output token (ms)"),
    slo_itl_ms: float | None = typer.Option(None, help="goodput SLO: a request's largest inter-token gap (ms)"),
    slo_e2e_ms: float | None = typer.Option(None, help="goodput SLO: end-to-end latency (ms)"),
    processes: int = typer.Option(1, help="load-generating processes (timestamps merge on one clock)"),
    max_error_rate: float | None = typer.Option(
        None, help="stop a level once this share of its finished requests failed (the rest count as cancelled)"
    ),
    seed: int = typer.Option(0, help="prompt and length seed"),
    results_dir: Path = typer.Option(default_results_dir(), help="where the record is written"),
    out_dir: Path = typer.Option(default_report_dir(), help="the report folder, regenerated afterwards"),
    report: bool = typer.Option(True, help="regenerate the report afterwards"),
) -> None:
    """Sweep concurrency levels and/or request rates on one engine; record throughput, goodput, latency
    percentiles, the saturation point, and whether the client itself limited any level."""
    if context.invoked_subcommand is not None:
        return
    from harness.bench.sweep import SweepPlan, run_bench
    from harness.engines import UnknownEngineError
    from harness.launch.base import EngineStartError
    from harness.loadgen import SLO, Lengths, Workload
    from harness.outcomes import NotMeasurable, Unsupported

    try:
        levels = sorted({int(level) for level in concurrency.split(",") if level.strip()})
        rate_levels = sorted({float(rate) for rate in rates.split(",") if rate.strip()})
        if (not levels and not rate_levels) or (levels and levels[0] < 1) or (rate_levels and rate_levels[0] <= 0):
            raise ValueError
        if api not in ("completions", "chat") or processes < 1 or not 0 <= (max_error_rate or 0) <= 1:
            raise ValueError
        kind: Literal["completions", "chat"] = "chat" if api == "chat" else "completions"
        workload = Workload(Lengths(input_tokens, range_ratio), Lengths(output_tokens, range_ratio), kind, seed)
    except ValueError:
        raise typer.BadParameter(
            "concurrency levels are positive integers and rates positive numbers (at least "
            "one of either), lengths >= 1, 0 <= range ratio < 1, api completions or chat, "
            "processes >= 1, 0 <= max error rate <= 1"
        ) from None
    limits = {"ttft_s": slo_ttft_ms, "tpot_s": slo_tpot_ms, "itl_s": slo_itl_ms, "e2e_s": slo_e2e_ms}
    slo = (
        SLO(**{key: ms / 1000 for key, ms in limits.items() if ms is not None})
        if any(ms is not None for ms in limits.values())
        else None
    )
    plan = SweepPlan(
        levels=levels,
        workload=workload,
        requests_per_level=requests,
        slo=slo,
        rates=rate_levels,
        processes=processes,
        max_error_rate=max_error_rate,
    )
    try:
        with _live() as progress:
            record, path = run_bench(engine, plan, results_dir, base_url=base_url, model=model, progress=progress)
    except (UnknownEngineError, FileNotFoundError, EngineStartError, NotMeasurable, Unsupported) as exc:
        typer.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
        raise typer.Exit(2) from None
    _finish(record, path, results_dir, out_dir, report)


@bench_app.command("calibrate")
def calibrate_command(
    install_peers: bool = typer.Option(
        True,
        help="first install GuideLLM and AIPerf (pinned) where they are "
        "missing, each in its own cached environment (pip, time-boxed)",
    ),
    results_dir: Path = typer.Option(default_results_dir(), help="where the record is written"),
    out_dir: Path = typer.Option(default_report_dir(), help="the report folder, regenerated afterwards"),
    report: bool = typer.Option(True, help="regenerate the report afterwards"),
) -> None:
    """Every installed load generator (infercheck, vllm bench serve, GuideLLM, AIPerf) against the null
    engine in one run: TTFT/ITL accuracy at 10 to 640 req/s and each tool's ceiling."""
    import time

    from harness.bench.peer_calibration import run_calibration
    from harness.bench.peers import INSTALL_TIMEOUT_S, PEER_VERSIONS, find_peer, install_peer
    from harness.paths import cache_dir

    with _live() as progress:
        for name, version in PEER_VERSIONS.items():
            if find_peer(cache_dir(), name):
                progress(f"{name} {version}: installed")
            elif install_peers:
                progress(f"installing {name}=={version} (pip, at most {INSTALL_TIMEOUT_S:.0f} s)")
                started = time.monotonic()
                outcome = install_peer(cache_dir(), name)
                progress(
                    f"{name}: {outcome if isinstance(outcome, str) else 'installed'} "
                    f"({time.monotonic() - started:.0f} s)"
                )
        record, path = run_calibration(results_dir, progress)
    _finish(record, path, results_dir, out_dir, report)


def _finish(record: BenchRecord, path: Path, results_dir: Path, out_dir: Path, report: bool) -> None:
    """Write the CSV and HTML beside the record, then regenerate the report."""
    from harness.bench.outputs import write_outputs

    for written in [path, *write_outputs(record, path.parent)]:
        _progress(f"wrote {written}")
    claims = out_dir / "claims.json"
    if report and claims.exists():
        from harness.report import write_report

        for written in write_report(claims, results_dir, out_dir):
            _progress(f"wrote {written}")


@contextmanager
def _live() -> Iterator[Callable[[str], None]]:
    """Live progress: a rich status line with the latest message, every message also kept on stderr."""
    from rich.console import Console

    console = Console(stderr=True)
    with console.status("starting") as status:

        def progress(message: str) -> None:
            console.print(f"• {message}", highlight=False, soft_wrap=True)
            status.update(message)

        yield progress


def _progress(message: str) -> None:
    typer.echo(f"• {message}", err=True)
