"""Benchmarks: concurrency sweeps recorded as bench.json with provenance, and load-generator calibration.

Modules: `records` (BenchRecord, read and write), `sweep` (run a sweep on a launched or attached
engine), `outputs`, `plots` and `saturation` (tables and figures the report's performance section
draws), `peer_calibration` (every load generator against the null engine), `calibrate_llama`
(agreement with vLLM's `bench serve` and llama-server's own timings) and `peers/` (one runner per
peer tool). The `infercheck bench` command is `harness.cli.bench`.
"""
