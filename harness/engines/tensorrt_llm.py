"""NVIDIA TensorRT-LLM's OpenAI-compatible `trtllm-serve`, run from its NGC image (containers/tensorrt-llm).

Written from TensorRT-LLM's docs and source (https://github.com/NVIDIA/TensorRT-LLM):
tensorrt_llm/commands/serve.py (`trtllm-serve MODEL --host --port --backend pytorch --max_batch_size
--max_beam_width --max_num_tokens --tp_size --pp_size --enable_chunked_prefill
--extra_llm_api_options YAML`), tensorrt_llm/serve/openai_protocol.py (`CompletionRequest`:
`use_beam_search`, `n`, `logprobs`, `ignore_eos`, `top_k`; `response_format` types `json` (with
`schema`) and `ebnf` (with `ebnf`); choices carry `avg_decoded_tokens_per_iter`), the guided-decoding
page https://nvidia.github.io/TensorRT-LLM/features/guided-decoding.html ("specifying
guided_decoding_backend with xgrammar ... in the YAML configuration file"), and
docs/source/features/speculative-decoding.md (`speculative_config.decoding_type: DraftTarget`).
The PyTorch backend rejects every request whose beam width differs from the launch's `max_beam_width`
(NVIDIA/TensorRT-LLM#7368), so the base launch keeps the default width 1 and only the beam-search
probe's launch (`LaunchSpec.beam_width`) sets it. Flags are checked against the pinned release's own
`serve` command by tests/test_contracts.py.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar

import yaml

from harness.engines.base import GrammarSpec, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, unsupported
from harness.engines.status import EngineStatus
from harness.outcomes import NotMeasurable
from harness.paths import cache_dir
from harness.wire.request import ApiRequest

MAX_DRAFT_LEN = 4


def llm_api_options(draft_model: Path | None) -> dict[str, Any]:
    """The LLM API settings trtllm-serve takes only from its YAML file: grammar backend and draft model."""
    options: dict[str, Any] = {"guided_decoding_backend": "xgrammar"}
    if draft_model is not None:
        options["speculative_config"] = {
            "decoding_type": "DraftTarget",
            "max_draft_len": MAX_DRAFT_LEN,
            "speculative_model_dir": str(draft_model),
        }
        options["disable_overlap_scheduler"] = True
    return options


def write_options(models: ResolvedModels) -> Path:
    """Write the YAML into the cache (never the model folder). It names host paths: the Docker launcher
    mounts a copy whose paths are mapped like the command's (harness.docker.runner.config_files)."""
    text = yaml.safe_dump(llm_api_options(models.draft_model), sort_keys=True)
    path = cache_dir() / "trtllm" / f"llm-api-{hashlib.sha256(text.encode()).hexdigest()[:12]}.yaml"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


class TensorRtLlmAdapter(ContainerEngineAdapter):
    """trtllm-serve with the PyTorch backend (loads HF checkpoints, no engine build)."""

    name: ClassVar[str] = "TensorRT-LLM"
    container_spec: ClassVar[str] = "tensorrt-llm"
    status: ClassVar[EngineStatus] = EngineStatus(
        "active", "https://github.com/NVIDIA/TensorRT-LLM/releases (tensorrt-llm 1.2.1 newest on PyPI)"
    )
    native_command: ClassVar[str | None] = "trtllm-serve"
    loads_formats: ClassVar[tuple[str, ...]] = ("hf", "awq")
    limits: ClassVar[dict[str, Limit]] = {
        "exl2": unsupported(
            "trtllm-serve loads HF checkpoints (ModelOpt FP8/NVFP4/INT4-AWQ quantized) or "
            "TensorRT engines (serve.py: 'MODEL: model name | HF checkpoint path | TensorRT "
            "engine path'); it has no EXL2 loader"
        ),
    }
    model_id_from_server: ClassVar[bool] = True  # the model id is the MODEL argument as the server saw it

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        """`serve` named, MODEL last (click takes options before it): the Docker launcher keeps the arguments
        from the first option on, so a leading MODEL would be dropped with the executable."""
        command = [
            "trtllm-serve",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend",
            "pytorch",
            "--max_batch_size",
            str(spec.parallel_slots),
            "--extra_llm_api_options",
            str(write_options(models)),
        ]
        if spec.beam_width is not None:
            command += ["--max_beam_width", str(spec.beam_width)]
        if spec.tensor_parallel > 1:
            command += ["--tp_size", str(spec.tensor_parallel)]
        if spec.pipeline_parallel > 1:
            command += ["--pp_size", str(spec.pipeline_parallel)]
        if spec.prefill_chunk_tokens is not None:
            command += ["--enable_chunked_prefill", "--max_num_tokens", str(spec.prefill_chunk_tokens)]
        return [*command, str(models.model)]

    # -- feature translation -----------------------------------------------------------
    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "response_format": {"type": "json", "schema": schema},
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
                "response_format": {"type": "ebnf", "ebnf": grammar.gbnf},
            },
        )

    def logit_bias_request(self, model: str, prompt: str, bias: dict[int, float], max_tokens: int) -> ApiRequest:
        """The probe reads the generated token ids, and CompletionRequest has no field asking for them: its models
        forbid extra fields, so `return_token_ids` would be refused with HTTP 400 (tests/test_contracts.py)."""
        raise NotMeasurable(
            "TRT-LLM's CompletionRequest (serve/openai_protocol.py, extra='forbid') has no field that "
            "returns the generated token ids the logit-bias probe compares"
        )

    def beam_search_launch(self, spec: LaunchSpec, beams: int) -> LaunchSpec:
        """Beam search needs a server launched with exactly that width (#7368)."""
        return replace(spec, beam_width=beams)

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "use_beam_search": True,
                "n": beams,
                "best_of": beams,
                "logprobs": 1,
            },
        )

    def speculative_stats(self, responses: list[dict[str, Any]], metrics: str | None) -> dict[str, float]:
        """From each choice's `avg_decoded_tokens_per_iter`: a step that decodes k tokens accepted k-1 drafts."""
        drafted = accepted = 0.0
        for response in responses:
            per_step = (response.get("choices") or [{}])[0].get("avg_decoded_tokens_per_iter")
            tokens = (response.get("usage") or {}).get("completion_tokens")
            if not per_step or not tokens:
                continue
            steps = tokens / per_step
            drafted += steps * MAX_DRAFT_LEN
            accepted += tokens - steps
        if not drafted:
            raise self.no_draft_statistics()
        return {"draft_tokens": round(drafted), "accepted_tokens": round(accepted)}
