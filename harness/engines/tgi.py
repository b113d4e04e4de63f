"""Hugging Face Text Generation Inference (TGI), run from its image (containers/tgi/spec.yaml).

Written from TGI's docs and source (https://github.com/huggingface/text-generation-inference):
docs/source/reference/launcher.md (`--model-id`, `--hostname`, `--port`, `--num-shard`,
`--quantize awq|exl2|gptq|...`, `--max-batch-prefill-tokens`, `--speculate` for Medusa/n-gram only,
no pipeline parallelism), router/src/server.rs (routes `/generate`, `/v1/completions`,
`/v1/chat/completions`, `/info`, `/health`; a request `model` other than "tgi" is taken as a LoRA
adapter id), router/src/lib.rs (`GenerateParameters`: `details`, `top_n_tokens`, `best_of`,
`grammar` as `{type: json|regex|json_schema, value}`; `ChatRequest.response_format` of the same
type; `CompletionRequest` has no `ignore_eos`), docs/source/basic_tutorials/using_guidance.md,
server/text_generation_server/models/globals.py ("Using Attention = ..." log line, block sizes).
"""

from __future__ import annotations

import datetime
import re
from typing import Any, ClassVar

from harness.engines.base import GrammarSpec, GreedyOutput, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, not_probed, unsupported
from harness.engines.status import EngineStatus
from harness.launch.base import RunningEngine
from harness.outcomes import Unsupported
from harness.wire.prometheus import metric_values
from harness.wire.request import ApiRequest

SERVED_MODEL = "tgi"  # server.rs: any other `model` value is used as a LoRA adapter id
_ATTENTION = re.compile(r"Using Attention = (\S+)")
# models/globals.py: ATTENTION -> BLOCK_SIZE (flashdecoding-ipex is Intel's IPEX flash-decoding, on XPU/CPU images)
_BLOCK_SIZES = {"flashdecoding": 256, "flashdecoding-ipex": 64, "flashinfer": 1, "paged": 16}
_FLASH_BACKENDS = ("flashdecoding", "flashdecoding-ipex", "flashinfer")
# router/src/infer: one forward-duration sample per batch step (prefill and decode), generated tokens per request,
# and the current batch's size (best effort: not yet measured against a real TGI)
_BATCHING_METRICS = {
    "steps": "tgi_batch_forward_duration_count",
    "generated": "tgi_request_generated_tokens_sum",
    "batch": "tgi_batch_current_size",
}


class TgiAdapter(ContainerEngineAdapter):
    """TGI's launcher and its native and Messages APIs."""

    name: ClassVar[str] = "TGI"
    container_spec: ClassVar[str] = "tgi"
    status: ClassVar[EngineStatus] = EngineStatus(
        "maintenance",
        "https://github.com/huggingface/text-generation-inference/commit/34988476 (README notice, PR "
        "#3345: minor bug fixes only; last tag v3.3.7 on 2025-12-18)",
        since=datetime.date(2025, 12, 11),
    )
    native_command: ClassVar[str | None] = "text-generation-launcher"
    loads_formats: ClassVar[tuple[str, ...]] = ("hf", "awq", "exl2")
    limits: ClassVar[dict[str, Limit]] = {
        "draft_model": not_probed(
            "TGI speculates with Medusa heads or n-grams (--speculate, launcher.md), "
            "never with a separate draft model: the draft-model probe does not apply"
        ),
        "pipeline_parallel": unsupported(
            "TGI's launcher shards tensors only (--num-shard/--sharded, "
            "docs/source/reference/launcher.md); it has no pipeline-parallel option"
        ),
    }

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        """`--num-shard` always: left out, TGI shards over every visible GPU (launcher.md, NUM_SHARD), so a
        single-GPU probe on a 2-GPU host would measure TP=2."""
        command = [
            "text-generation-launcher",
            "--model-id",
            str(models.model),
            "--hostname",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-shard",
            str(spec.tensor_parallel),
        ]
        if spec.model_format in ("awq", "exl2"):
            command += ["--quantize", spec.model_format]
        if spec.prefill_chunk_tokens is not None:
            command += ["--max-batch-prefill-tokens", str(spec.prefill_chunk_tokens)]
        return command

    def served_model_name(self, models: ResolvedModels) -> str:
        return SERVED_MODEL

    # -- feature translation -----------------------------------------------------------
    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        parameters: dict[str, Any] = {"max_new_tokens": max_tokens, "do_sample": False, "details": True}
        if top_logprobs:
            parameters["top_n_tokens"] = top_logprobs
        return ApiRequest("/generate", {"inputs": prompt, "parameters": parameters})

    def parse_greedy(self, response: dict[str, Any]) -> GreedyOutput:
        top = (response.get("details") or {}).get("top_tokens") or []
        return GreedyOutput(
            text=response["generated_text"],
            top_logprobs=[{token["text"]: token["logprob"] for token in position} for position in top],
        )

    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "response_format": {"type": "json", "value": schema},
            },
        )

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "TGI's grammar takes {type: json|regex|json_schema} only (router/src/lib.rs GrammarType, "
            "docs/source/basic_tutorials/using_guidance.md); it has no EBNF/CFG grammar "
            "(huggingface/text-generation-inference#1050)"
        )

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "TGI has no beam search: GenerateParameters offers best_of (samples n sequences and returns "
            "the most likely one, router/src/lib.rs); maintainers point to best_of instead "
            "(huggingface/text-generation-inference#722)"
        )

    def fixed_length_request(self, model: str, prompt: str, max_tokens: int, stream: bool) -> ApiRequest:
        """TGI's CompletionRequest has no `ignore_eos` and no `stream_options`: the final streamed chunk carries
        the usage, and a model that emits EOS early ends the request early."""
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": stream},
        )

    def attention_evidence(self, running: RunningEngine) -> dict[str, Any]:
        lines = [line.strip() for line in running.log_text().splitlines() if _ATTENTION.search(line)]
        if not lines:
            return {}
        backend = _ATTENTION.search(lines[-1]).group(1)  # type: ignore[union-attr]
        block = _BLOCK_SIZES.get(backend)
        return {
            "flash_attention": "on" if backend in _FLASH_BACKENDS else None,
            "library_kernel": "flash_attention_2" if backend == "flashdecoding" else None,
            "kv_kind": None if block is None else "cells" if block == 1 else "blocks",
            "note": f"TGI reports attention backend {backend}",
            "attention_backend": backend,
            "paged_kv_cache": block is not None,
            "kv_layout": f"blocks of {block} token(s) (ATTENTION={backend})" if block else None,
            "log": lines,
        }

    def batching_counters(self, metrics: str) -> dict[str, float]:
        return metric_values(metrics, _BATCHING_METRICS)
