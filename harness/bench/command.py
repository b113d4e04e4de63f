"""The `infercheck bench` command: a concurrency sweep recorded as results/<engine>/<run_id>/bench.json."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from harness.paths import default_report_dir, default_results_dir


def bench_command(
    engine: str = typer.Option("llama.cpp", help="engine adapter"),
    base_url: Optional[str] = typer.Option(None, help="attach to a running server instead of launching"),
    model: str = typer.Option("llama", help="synthesized model to serve (or that the attached server serves)"),
    concurrency: str = typer.Option("1,2,4,8", help="comma-separated concurrency levels"),
    requests: Optional[int] = typer.Option(None, help="requests per level (default: max(16, 8 x concurrency))"),
    input_tokens: int = typer.Option(32, help="prompt length in tokens"),
    output_tokens: int = typer.Option(64, help="generated tokens per request (EOS ignored)"),
    range_ratio: float = typer.Option(0.0, help="lengths uniform in n*(1 +- r); 0: fixed"),
    api: str = typer.Option("completions", help="completions or chat"),
    slo_ttft_ms: Optional[float] = typer.Option(None, help="goodput SLO: time to first token (ms)"),
    slo_tpot_ms: Optional[float] = typer.Option(None, help="goodput SLO: time per output token (ms)"),
    seed: int = typer.Option(0, help="prompt and length seed"),
    results_dir: Path = typer.Option(default_results_dir(), help="where the record is written"),
    report_dir: Path = typer.Option(default_report_dir(), help="where the report is regenerated"),
    report: bool = typer.Option(True, help="regenerate the report afterwards"),
) -> None:
    """Sweep concurrency levels on one engine; record throughput, goodput and latency percentiles."""
    from harness.bench.sweep import SweepPlan, run_bench
    from harness.engines import UnknownEngineError
    from harness.engines.base import NotMeasurable, Unsupported
    from harness.launch.base import EngineStartError
    from harness.loadgen import SLO, Lengths, Workload

    try:
        levels = sorted({int(level) for level in concurrency.split(",")})
        if levels[0] < 1 or api not in ("completions", "chat"):
            raise ValueError
        workload = Workload(Lengths(input_tokens, range_ratio), Lengths(output_tokens, range_ratio), api, seed)
    except ValueError:
        raise typer.BadParameter("concurrency levels are positive integers, lengths >= 1, 0 <= range ratio < 1, "
                                 "api completions or chat") from None
    slo = None
    if slo_ttft_ms is not None or slo_tpot_ms is not None:
        slo = SLO(ttft_s=slo_ttft_ms / 1000 if slo_ttft_ms else None,
                  tpot_s=slo_tpot_ms / 1000 if slo_tpot_ms else None)
    plan = SweepPlan(levels=levels, workload=workload, requests_per_level=requests, slo=slo)
    try:
        _, path = run_bench(engine, plan, results_dir, base_url=base_url, model=model, progress=_progress)
    except (UnknownEngineError, FileNotFoundError, EngineStartError, NotMeasurable, Unsupported) as exc:
        typer.echo(f"error: {exc.args[0] if exc.args else exc}", err=True)
        raise typer.Exit(2) from None
    _progress(f"wrote {path}")
    claims = report_dir / "claims.json"
    if report and claims.exists():
        from harness.report import write_report

        for written in write_report(claims, results_dir, report_dir):
            _progress(f"wrote {written}")


def _progress(message: str) -> None:
    typer.echo(f"• {message}", err=True)
