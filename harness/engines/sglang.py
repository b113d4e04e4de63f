"""SGLang's server (`python -m sglang.launch_server`), run from its image (containers/sglang/spec.yaml).

An extra column beyond the seed table. Written from SGLang's docs and source
(https://github.com/sgl-project/sglang): docs/advanced_features/server_arguments.md and
python/sglang/srt/server_args.py (`--model-path`, `--served-model-name`, `--host`, `--port`,
`--tp-size`, `--pp-size`, `--quantization` (QUANTIZATION_CHOICES: awq, gptq, gguf, fp8, ...; no exl2),
`--max-running-requests`, `--chunked-prefill-size`, `--enable-metrics`, `--speculative-algorithm
STANDALONE --speculative-draft-model-path`), docs/advanced_features/structured_outputs.md
(`response_format` json_schema; `ebnf` in the GGML BNF format of XGrammar, the default backend),
python/sglang/srt/entrypoints/openai/protocol.py (`CompletionRequest`: `ebnf`, `ignore_eos`,
`stream_options`, `logprobs`; no beam-search field), docs/basic_usage/sampling_params.md (native
`/generate`: `sampling_params`, `return_logprob`, `top_logprobs_num`, `return_text_in_logprobs`;
`meta_info.spec_verify_ct` when speculating), python/sglang/srt/entrypoints/http_server.py
(`/get_server_info` with `version`, `/health`).

Two ways it runs. From its image on an NVIDIA GPU (`--launcher docker`; use_container tells the adapter). Or, with
the process launcher, SGLang's CPU path (SGLANG_USE_CPU_ENGINE=1, `--device cpu`) from the venv
harness/toolchain/sglang_cpu.py makes (`infercheck setup sglang`): `--attention-backend torch_native`, no overlap
schedule, no warmup request, float32 like the HF reference. No CPU build of sgl-kernel exists on PyPI, so no
SGLang kernel runs there: what those cells measure is SGLang's server (OpenAI layer, scheduler, radix cache,
structured-output backends) over its torch-native layers, attention and sampler ("cpu, torch-native path" in every
record's engine build, with the kernel functions that are absent and the stand-ins: none).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from harness.engines.base import GrammarSpec, GreedyOutput, LaunchSpec, RegexSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, unsupported
from harness.engines.status import EngineStatus
from harness.launch.base import RunningEngine
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import cache_dir
from harness.records.results import EngineIdentity
from harness.toolchain import sglang_cpu
from harness.toolchain.sgl_kernel_cpu_absent import ABSENT
from harness.wire.prometheus import metric_values
from harness.wire.request import ApiRequest

if TYPE_CHECKING:
    from harness.docker.specs import ContainerSpec

# the scheduler's `#running-req` (the decode batch it logs) as a gauge, and its generated-token counter
# (both in 0.5.23's /metrics on the CPU path, read 2026-12-03; no per-step counter among them)
_BATCHING_METRICS = {"batch": "sglang:num_running_reqs", "generated": "sglang:generation_tokens_total"}

SPECULATIVE_STEPS = 3  # draft tokens proposed per verification step (topk 1)
CPU_SOURCE = f"python/sglang/srt in {sglang_cpu.PACKAGE} {sglang_cpu.PACKAGE_VERSION} (SGLANG_USE_CPU_ENGINE=1)"
CPU_PATH = "cpu, torch-native path"
# without a parser it constrains tool_choice=required answers to the calls' JSON but returns them as `content`
# (serving_chat.py _tool_call_parsing_active: False without --tool-call-parser; measured on the CPU path)
TOOL_CALL_PARSER = "hermes"
CPU_KV_TOKENS = 32768  # --max-total-tokens on a shared CPU host (by default it sizes the pool from free memory)


class SglangAdapter(ContainerEngineAdapter):
    """SGLang's native `/generate` and its OpenAI-compatible routes."""

    name: ClassVar[str] = "SGLang"
    container_spec: ClassVar[str] = "sglang"
    status: ClassVar[EngineStatus] = EngineStatus(
        "active", "https://github.com/sgl-project/sglang/releases (sglang 0.5.23 newest on PyPI)"
    )
    native_command: ClassVar[str | None] = "sglang.launch_server"
    loads_formats: ClassVar[tuple[str, ...]] = ("hf", "awq")
    limits: ClassVar[dict[str, Limit]] = {
        "exl2": unsupported(
            "SGLang's --quantization choices (python/sglang/srt/server_args.py QUANTIZATION_CHOICES) "
            "include awq, gptq, gguf, fp8 and others, not exl2"
        ),
    }
    kv_budget_flag: ClassVar[str] = "--max-total-tokens"  # server_args.py: the token pool's size

    device: str = "cpu"  # "cuda" once told it runs from its GPU image (use_container)

    @property
    def startup_timeout_s(self) -> float:  # type: ignore[override]
        return 900.0 if self.device == "cuda" else 300.0  # measured on the CPU path: up in about 50 s on 2 cores

    def use_container(self, spec: ContainerSpec) -> None:
        self.device = "cuda" if spec.needs_gpu else "cpu"

    # -- the CPU path --------------------------------------------------------------------
    def prepare(self) -> None:
        if self.device == "cuda":
            return super().prepare()
        if sglang_cpu.find_install(cache_dir()) is None:
            raise FileNotFoundError(
                "SGLang's CPU path is not installed: run `infercheck setup sglang` (or run its GPU image: "
                f"--launcher docker, containers/{self.container_spec}/spec.yaml)"
            )

    def install(self, progress: Callable[[str], None]) -> None:
        sglang_cpu.ensure_install(cache_dir(), progress=progress)

    def check_launchable(self, spec: LaunchSpec, devices: int) -> None:
        if self.device == "cuda":
            return super().check_launchable(spec, devices)
        self.check_limits(spec)  # documented absences (exl2) hold on every device
        if spec.draft_model is not None:
            raise NotMeasurable(
                "speculative decoding on SGLang's CPU path calls sgl_kernel's build_tree_kernel_efficient_cpu and "
                "verify_tree_greedy_cpu (draft-tree acceptance: sampling math); PyPI has no CPU build of sgl-kernel "
                f"and a stand-in would replace that math ({CPU_SOURCE})"
            )
        if spec.flash_attention:
            raise NotMeasurable(
                "kernel-level: no SGLang attention kernel runs on this host (no CPU build of sgl-kernel on PyPI); "
                f"the CPU path uses --attention-backend torch_native ({CPU_SOURCE})"
            )
        if max(spec.tensor_parallel, spec.pipeline_parallel) > 1:
            raise NotMeasurable(
                "splits on SGLang's CPU path are not probed: without sgl-kernel its CPU bootstrap logs "
                "'init_cpu_threads_env and shared memory based AllReduce is disabled, only intel amx backend and "
                f"arm64 are supported' (srt/distributed/bootstrap.py) ({CPU_SOURCE})"
            )
        if spec.model_format not in (None, "hf"):
            raise NotMeasurable(
                f"not probed: SGLang's CPU column loads hf checkpoints only, not {spec.model_format}; quantized and "
                "GGUF checkpoints go through its quantization methods, kernel paths there (start-up warnings here: "
                "'Only CUDA, HIP and XPU support AWQ currently', 'Only CUDA, MUSA and NPU support GGUF quantization "
                f"currently') ({CPU_SOURCE})"
            )
        if spec.api_prefix or not spec.continuous_batching:
            raise NotMeasurable(f"{self.name} has no switch for this configuration ({spec.key()})")

    def compute_dtype(self, spec: LaunchSpec) -> str | None:
        """CPU: float32, as the HF reference (`--dtype float32`; its default, auto, serves float16)."""
        return "float32" if self.device == "cpu" else None

    def launch_env(self, spec: LaunchSpec) -> dict[str, str]:
        if self.device == "cuda":
            return {}
        return {"SGLANG_USE_CPU_ENGINE": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}

    def identity(self, running: RunningEngine) -> EngineIdentity:
        if self.device == "cuda":
            return super().identity(running)
        answer = httpx.get(running.base_url + "/get_server_info", timeout=10).json()
        pinned = sglang_cpu.PACKAGE_VERSION if running.launcher != "attach" else None
        return self._cpu_identity(str(answer.get("version", "unknown")), pinned)

    def installed_identity(self) -> EngineIdentity | None:
        """The CPU package at its pinned version (what identity() reports once it runs); None for the GPU image."""
        if self.device == "cuda" or sglang_cpu.find_install(cache_dir()) is None:
            return None
        return self._cpu_identity(sglang_cpu.PACKAGE_VERSION, sglang_cpu.PACKAGE_VERSION)

    def _cpu_identity(self, version: str, package_version: str | None) -> EngineIdentity:
        build = self.cpu_build()
        return EngineIdentity(
            name=self.name, version=version, package=sglang_cpu.PACKAGE, package_version=package_version, build=build
        )

    @staticmethod
    def cpu_build() -> dict[str, Any]:
        """What every CPU record says about how SGLang ran: the path, the kernels absent, the stand-ins (none)."""
        return {
            "device": "cpu",
            "path": CPU_PATH,
            "attention_backend": "torch_native",
            "torch": sglang_cpu.TORCH_PIN,
            "sgl_kernel": "absent: no CPU build on PyPI; each name below raises when called",
            "absent_kernels": list(ABSENT),
            "stand_ins": [],
            "not_measured": "SGLang's kernels (attention, RMSNorm, RoPE, MoE: sgl-kernel CPU ops)",
        }

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        if self.device == "cpu":
            return self._cpu_command(spec, models, port)
        command = [
            *self._server(models, port, "python3"),
            "--max-running-requests",
            str(spec.parallel_slots),
            "--enable-metrics",
        ]
        if spec.tensor_parallel > 1:
            command += ["--tp-size", str(spec.tensor_parallel)]
        if spec.pipeline_parallel > 1:
            command += ["--pp-size", str(spec.pipeline_parallel)]
        if spec.model_format == "awq":
            command += ["--quantization", "awq"]
        if spec.prefill_chunk_tokens is not None:
            command += ["--chunked-prefill-size", str(spec.prefill_chunk_tokens)]
        if spec.kv_cache_tokens is not None:
            command += [self.kv_budget_flag, str(spec.kv_cache_tokens)]
        if models.draft_model is not None:
            command += [
                "--speculative-algorithm",
                "STANDALONE",
                "--speculative-draft-model-path",
                str(models.draft_model),
                "--speculative-num-steps",
                str(SPECULATIVE_STEPS),
                "--speculative-eagle-topk",
                "1",
                "--speculative-num-draft-tokens",
                str(SPECULATIVE_STEPS + 1),
            ]
        if spec.tool_calling:
            command += ["--tool-call-parser", TOOL_CALL_PARSER]
        return command

    def _server(self, models: ResolvedModels, port: int, python: str) -> list[str]:
        """`python -m sglang.launch_server` serving `models` on 127.0.0.1:`port`."""
        served = ["--model-path", str(models.model), "--served-model-name", self.served_model_name(models)]
        return [python, "-m", "sglang.launch_server", *served, "--host", "127.0.0.1", "--port", str(port)]

    def _cpu_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        install = sglang_cpu.find_install(cache_dir())
        command = [
            *self._server(models, port, str(install.python) if install else "python3"),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--attention-backend",
            "torch_native",
            "--disable-overlap-schedule",
            "--skip-server-warmup",
            "--sleep-on-idle",  # without it an idle scheduler took 35% of a core here (top), on a shared 2-core host
            "--random-seed",
            "0",
            "--enable-cache-report",  # usage.prompt_tokens_details.cached_tokens (off by default)
            "--max-running-requests",
            str(spec.parallel_slots),
            self.kv_budget_flag,
            str(spec.kv_cache_tokens if spec.kv_cache_tokens is not None else CPU_KV_TOKENS),
            "--enable-metrics",
        ]
        if spec.prefill_chunk_tokens is not None:
            command += ["--chunked-prefill-size", str(spec.prefill_chunk_tokens)]
        if spec.prefix_caching is False:
            command += ["--disable-radix-cache"]
        if spec.tool_calling:
            command += ["--tool-call-parser", TOOL_CALL_PARSER]
        return command

    # -- feature translation -----------------------------------------------------------
    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        body: dict[str, Any] = {"text": prompt, "sampling_params": {"max_new_tokens": max_tokens, "temperature": 0}}
        if top_logprobs:
            body.update(return_logprob=True, top_logprobs_num=top_logprobs, return_text_in_logprobs=True)
        return ApiRequest("/generate", body)

    def parse_greedy(self, response: dict[str, Any]) -> GreedyOutput:
        """`meta_info.output_top_logprobs`: per position, [logprob, token_id, token_text] entries."""
        top = response.get("meta_info", {}).get("output_top_logprobs") or []
        return GreedyOutput(
            text=response["text"],
            top_logprobs=[{entry[2]: entry[0] for entry in position} for position in top if position],
        )

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ebnf": grammar.gbnf},
        )

    def structured_output_backend(self, running: RunningEngine) -> str:
        """`grammar_backend` from the server_args line it logs at start (xgrammar unless chosen otherwise)."""
        match = re.search(r"'grammar_backend': '([\w-]+)'", running.log_text())
        return f"SGLang grammar backend={match.group(1) if match else 'not in the log'}"

    def regex_request(self, model: str, prompt: str, regex: RegexSpec, max_tokens: int) -> ApiRequest:
        """`regex`, a top-level CompletionRequest field (entrypoints/openai/protocol.py; structured_outputs.md)."""
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "regex": regex.pattern},
        )

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "SGLang's OpenAI CompletionRequest (entrypoints/openai/protocol.py) and native sampling "
            "parameters have no beam search; n and best_of sample"
        )

    def speculative_stats(self, responses: list[dict[str, Any]], metrics: str | None) -> dict[str, float]:
        """From meta_info `spec_verify_ct`: the first token comes from the prefill, then each verification step
        emits one token of its own plus the drafts it accepted, so accepted = completion_tokens - 1 - steps."""
        metas = [response.get("meta_info") or {} for response in responses]
        counted = [meta for meta in metas if "spec_verify_ct" in meta]
        if not counted:
            raise self.no_draft_statistics()
        steps = sum(meta["spec_verify_ct"] for meta in counted)
        accepted = sum(max(0, meta.get("completion_tokens", 0) - 1 - meta["spec_verify_ct"]) for meta in counted)
        return {"draft_tokens": float(steps * SPECULATIVE_STEPS), "accepted_tokens": float(accepted)}

    def batching_counters(self, metrics: str) -> dict[str, float]:
        return metric_values(metrics, _BATCHING_METRICS)
