"""The engine counters the batching, chunked-prefill and attention probes read, without an engine."""

from __future__ import annotations

from harness.engines.llamacpp import LlamaCppAdapter
from harness.engines.vllm import VllmCpuAdapter
from harness.launch.base import RunningEngine
from probes.test_continuous_batching import tokens_per_step
from tests.replica_proxy import summed_metrics

LLAMA_METRICS = """# HELP llamacpp:n_decode_total Total number of llama_decode() calls
# TYPE llamacpp:n_decode_total counter
llamacpp:n_decode_total 300
llamacpp:tokens_predicted_total 1024
llamacpp:requests_processing 4
"""


def test_llamacpp_counters_and_tokens_per_step():
    before = LlamaCppAdapter().batching_counters(LLAMA_METRICS)
    assert before == {"steps": 300.0, "generated": 1024.0, "batch": 4.0}
    after = {"steps": 556.0, "generated": 2048.0}
    assert tokens_per_step(before, after) == 4.0
    assert tokens_per_step({"batch": 1.0}, after) is None  # no step counter: no figure
    assert tokens_per_step(before, before) is None  # no step between the readings


def test_vllm_counters():
    text = (
        'vllm:iteration_tokens_total_count{engine="0",model_name="m"} 12.0\n'
        'vllm:generation_tokens_total{engine="0",model_name="m"} 40.0\n'
        'vllm:num_requests_running{engine="0",model_name="m"} 3.0\n'
        'vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.25\n'
    )
    assert VllmCpuAdapter().batching_counters(text) == {
        "steps": 12.0,
        "generated": 40.0,
        "batch": 3.0,
        "kv_usage": 0.25,
    }


def test_replica_metrics_are_summed():
    """Replicas' counters add up, so their tokens per step stay at one however many run at once."""
    one = "llamacpp:n_decode_total 257\nllamacpp:tokens_predicted_total 256\n"
    counters = LlamaCppAdapter().batching_counters(summed_metrics([one, one, "# comment\n" + one]))
    assert counters == {"steps": 771.0, "generated": 768.0}


def test_llamacpp_attention_evidence_reads_buffers_and_cells(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text(
        "llama_context: kv_unified            = true\n"
        "llama_kv_cache: size =    8.00 MiB (  2048 cells,   2 layers,  1/1 seqs), K (f16): 4.00 MiB\n"
        "sched_reserve:        CPU compute buffer size =     6.52 MiB\n"
    )
    report = LlamaCppAdapter().attention_evidence(RunningEngine(base_url="", log_path=log))
    assert report["compute_buffer_mib"] == 6.52 and report["kv_kind"] == "cells"
    assert "kv_unified = true" in report["kv_layout"]
