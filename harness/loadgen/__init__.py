"""Load generator: closed-loop concurrency and open-loop Poisson runs with per-token timings.

    scale = asyncio.run(measure_prompt_scale(base_url, adapter, model))  # prompt words -> engine tokens
    requests = Workload(Lengths(32), Lengths(64), prompt_scale=scale).requests(adapter, model, count=32)
    load = asyncio.run(run_load(base_url, requests, concurrency=4))   # or rate=2.0 (requests/s), processes=2
    stats = summarize(load, SLO(ttft_s=0.5, tpot_s=0.05))            # throughput, goodput, p50/p90/p99

Calibrated against the null engine (`harness.loadgen.null_engine`), whose pace is known.
"""

from harness.loadgen.runner import ClientLoad, LoadResult, RequestResult, run_load
from harness.loadgen.schedule import arrival_offsets, offered_rate
from harness.loadgen.stats import DEFINITIONS, SLO, ClientFigures, LoadStats, Percentiles, summarize
from harness.loadgen.tokens import measure_prompt_scale
from harness.loadgen.workload import Lengths, PromptScale, Workload, as_chat

__all__ = [
    "DEFINITIONS",
    "SLO",
    "ClientFigures",
    "ClientLoad",
    "Lengths",
    "LoadResult",
    "LoadStats",
    "Percentiles",
    "PromptScale",
    "RequestResult",
    "Workload",
    "arrival_offsets",
    "as_chat",
    "measure_prompt_scale",
    "offered_rate",
    "run_load",
    "summarize",
]
