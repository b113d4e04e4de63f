"""Benchmarks: concurrency sweeps recorded as bench.json with provenance, and the report's performance section.

Modules: `records` (BenchRecord, read and write), `sweep` (run a sweep on a launched or attached
engine), `command` (the `infercheck bench` command), `plots` and `report_section` (the report),
`vllm_bench` and `calibrate` (agreement with vLLM's `bench serve` and the engine's own timings).
"""
