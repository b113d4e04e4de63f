"""GuideLLM 0.8.1 (`guidellm run`) against an OpenAI completions server, for the calibration.

Its 0.8 CLI takes one JSON (or key=value) object per option, validated by its own pydantic schemas:
the openai_http backend on /v1/completions (streaming is its default; it sends `ignore_eos: true`,
`stop: null` and `max_tokens` = the sampled output length, and asks for usage), one open-loop profile
at one rate, a max_requests constraint, a synthetic_text dataset of fixed prompt and output lengths
(token counts by the given HF tokenizer), and a JSON output. `sample_size: 0` keeps only the
lightweight per-request stats in that file.

The profile is `constant` (evenly spaced arrivals at the rate), not `poisson`: in 0.8.1 each of its
worker processes (10 by default) draws the exponential gaps from its own `random.Random(42)`, so every
gap comes `workers` times in a row (20 requests at 10 req/s: ten 0.10 s gaps, then ten 2.5 ms ones)
and a short run's achieved rate is mostly chance. Only one worker process would make it Poisson.

Its result (`benchmarks[0].metrics`): `request_totals` {successful, errored, incomplete},
`requests_per_second.successful.mean` (completed requests over the benchmark's duration),
`time_to_first_token_ms.successful.median`, and `inter_token_latency_ms.successful.median`: each
request's (last token - first token) / (output tokens - 1), with the output tokens the server's usage
reported (`prefer_response_metrics`), so a per-token figure even when a chunk carries several tokens.
`start_time` and `end_time` (epoch seconds) bound its requests, the timed part whose CPU is reported.
"""

from __future__ import annotations

import json
import os
from functools import partial
from pathlib import Path
from typing import Any

from harness.bench.peers.install import Peer
from harness.bench.peers.runner import Figures, PeerRunner, json_reader
from harness.bench.peers.traffic import INPUT_TOKENS, OUTPUT_TOKENS, Traffic
from harness.loadgen.null_engine import MODEL

TOOL = "guidellm"
RESULT_FILE = "benchmarks.json"
PROFILE = "constant"  # see the module's docstring


def command(peer: Peer, tokenizer: Path, traffic: Traffic, folder: Path) -> list[str]:
    """`guidellm run` for one rate: `traffic.requests` arrivals at `traffic.rate` (PROFILE), streamed."""
    options = {
        "--backend": {
            "kind": "openai_http",
            "target": traffic.base_url,
            "model": MODEL,
            "request_format": "/v1/completions",
            "stream": True,
        },
        "--profile": {"kind": PROFILE, "rate": [traffic.rate]},
        "--constraint": {"kind": "max_requests", "count": traffic.requests},
        "--tokenizer": {"kind": "huggingface_auto", "model": str(tokenizer)},
        "--data": {"kind": "synthetic_text", "prompt_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
        "--metrics": {"kind": "generative", "sample_size": 0},
        "--output": {"kind": "json", "path": str(folder / RESULT_FILE)},
    }
    arguments = [str(peer.script), "run"]
    for option, value in options.items():
        arguments += [option, json.dumps(value)]
    return [*arguments, "--disable-console"]


def environment() -> dict[str, str]:
    """Offline: the tokenizer is a local folder."""
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }


def parse(result: dict[str, Any]) -> Figures:
    """The figures of GuideLLM's JSON result (its single benchmark), in its own field names."""
    benchmark = result["benchmarks"][0]
    metrics, totals = benchmark["metrics"], benchmark["metrics"]["request_totals"]

    def median(name: str) -> float | None:
        stats = metrics[name]["successful"]
        return stats["median"] if stats["count"] else None

    return Figures(
        completed=totals["successful"],
        failed=totals["errored"] + totals["incomplete"],
        achieved_rate=metrics["requests_per_second"]["successful"]["mean"],
        ttft_p50_ms=median("time_to_first_token_ms"),
        itl_p50_ms=median("inter_token_latency_ms"),
        window=(benchmark["start_time"], benchmark["end_time"]),
    )


def runner(peer: Peer, tokenizer: Path) -> PeerRunner:
    """GuideLLM at one rate, as a calibration point."""
    return PeerRunner(TOOL, partial(command, peer, tokenizer), environment(), json_reader(RESULT_FILE, parse))
