"""Load generator: closed-loop concurrency and open-loop Poisson runs with per-token timings.

    requests = Workload(Lengths(32), Lengths(64)).requests(adapter, model, count=32)
    load = asyncio.run(run_load(base_url, requests, concurrency=4))   # or rate=2.0 (requests/s)
    stats = summarize(load, SLO(ttft_s=0.5, tpot_s=0.05))            # throughput, goodput, p50/p90/p99

Calibrated against the null engine (`harness.loadgen.null_engine`), whose pace is known.
"""

from harness.loadgen.runner import LoadResult, RequestResult, run_load
from harness.loadgen.schedule import arrival_offsets
from harness.loadgen.stats import SLO, LoadStats, Percentiles, summarize
from harness.loadgen.workload import Lengths, Workload, as_chat

__all__ = ["SLO", "Lengths", "LoadResult", "LoadStats", "Percentiles", "RequestResult", "Workload",
           "arrival_offsets", "as_chat", "run_load", "summarize"]
