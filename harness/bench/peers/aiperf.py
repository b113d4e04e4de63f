"""AIPerf 0.13.0 (`aiperf profile`) against an OpenAI completions server, for the calibration.

Flags: the completions endpoint type with `--streaming`; synthetic prompts of `--isl` tokens (stddev 0,
by the given HF tokenizer) asking for `--osl` tokens (stddev 0; sent as `max_tokens`) with
`--extra-inputs ignore_eos:true`; `--arrival-pattern poisson` at `--request-rate` for `--request-count`
requests; `--use-server-token-count`, because AIPerf otherwise counts output tokens by re-tokenizing
the streamed text with the client tokenizer, which for the null engine's " tok" pieces gives two tokens
each and halves its ITL; no server-metrics scrape, GPU telemetry or UI; a summary-only export.

AIPerf 0.13.0 loads a local tokenizer folder only when HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are
unset: in offline mode it looks the path up as a Hub repo id in the cache (`snapshot_download`) and
fails. Loading a local folder makes no network call either way.

Its result (`profile_export_aiperf.json`): `request_count.avg` (successful), `error_request_count.avg`
(absent without errors), `request_throughput.avg` (successful requests over the benchmark's duration),
`time_to_first_token.p50`, and `inter_token_latency.p50`: each request's (latency - TTFT) / (output
tokens - 1), in ms, a per-token figure (`inter_chunk_latency` is the per-chunk one); `start_time` and
`end_time` bound its profiling phase, the timed part whose CPU is reported.
"""

from __future__ import annotations

import os
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from harness.bench.peers.install import Peer
from harness.bench.peers.runner import Figures, PeerRunner, json_reader
from harness.bench.peers.traffic import INPUT_TOKENS, OUTPUT_TOKENS, Traffic
from harness.loadgen.null_engine import MODEL

TOOL = "aiperf"
RESULT_FILE = "profile_export_aiperf.json"
SEED = 0
UNITS = {"time_to_first_token": "ms", "inter_token_latency": "ms", "request_throughput": "requests/sec"}


def command(peer: Peer, tokenizer: Path, traffic: Traffic, folder: Path) -> list[str]:
    """`aiperf profile` for one rate: `traffic.requests` Poisson arrivals at `traffic.rate`, streamed."""
    return [
        str(peer.script),
        "profile",
        "--model",
        MODEL,
        "--url",
        traffic.base_url,
        "--endpoint-type",
        "completions",
        "--streaming",
        "--tokenizer",
        str(tokenizer),
        "--isl",
        str(INPUT_TOKENS),
        "--isl-stddev",
        "0",
        "--osl",
        str(OUTPUT_TOKENS),
        "--osl-stddev",
        "0",
        "--extra-inputs",
        "ignore_eos:true",
        "--use-server-token-count",
        "--request-rate",
        f"{traffic.rate:g}",
        "--arrival-pattern",
        "poisson",
        "--request-count",
        str(traffic.requests),
        "--random-seed",
        str(SEED),
        "--artifact-dir",
        str(folder),
        "--export-level",
        "summary",
        "--ui",
        "none",
        "--no-server-metrics",
        "--no-gpu-telemetry",
    ]


def environment() -> dict[str, str]:
    """Not offline (see the module's docstring); no telemetry."""
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_HUB_DISABLE_TELEMETRY": "1"}


def parse(result: dict[str, Any]) -> Figures:
    """The figures of AIPerf's summary export, in its own field names (a metric without values is absent)."""

    def value(name: str, stat: str) -> float | None:
        metric = result.get(name) or {}
        if metric and name in UNITS and metric.get("unit") != UNITS[name]:
            raise ValueError(f"AIPerf reported {name} in {metric.get('unit')!r}")
        return metric.get(stat)

    return Figures(
        completed=int(value("request_count", "avg") or 0),
        failed=int(value("error_request_count", "avg") or 0),
        achieved_rate=value("request_throughput", "avg") or 0.0,
        ttft_p50_ms=value("time_to_first_token", "p50"),
        itl_p50_ms=value("inter_token_latency", "p50"),
        window=_window(result),
    )


def _window(result: dict[str, Any]) -> tuple[float, float] | None:
    """The profiling phase's start and end: local times without a zone (`datetime.fromtimestamp`)."""
    if not result.get("start_time") or not result.get("end_time"):
        return None
    return (
        datetime.fromisoformat(result["start_time"]).timestamp(),
        datetime.fromisoformat(result["end_time"]).timestamp(),
    )


def runner(peer: Peer, tokenizer: Path) -> PeerRunner:
    """AIPerf at one rate, as a calibration point."""
    return PeerRunner(TOOL, partial(command, peer, tokenizer), environment(), json_reader(RESULT_FILE, parse))
