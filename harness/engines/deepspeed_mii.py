"""DeepSpeed-MII / FastGen's OpenAI-compatible server, run from its image (containers/deepspeed-mii).

Written from DeepSpeed-MII's source (https://github.com/deepspeedai/DeepSpeed-MII):
mii/entrypoints/openai_api_server.py (`--model` (also the only model id requests may name),
`--host`, `--port`, `--tensor-parallel`, `--replica-num`; routes `/v1/models`, `/v1/completions`,
`/v1/chat/completions`, `/health`; generation always samples, answers `logprobs=None` and sends no
usage while streaming), mii/entrypoints/data_models.py (`CompletionRequest`: `top_k`, `min_tokens`,
`max_tokens`, `stream`; no `response_format`, no grammar; `use_beam_search` is accepted but never
passed to generation), README.md (Dynamic SplitFuse is always on; no quantization, draft-model or
pipeline option), issues #254 (no speculative decoding) and #286 (no beam search).
"""

from __future__ import annotations

import datetime
from typing import Any, ClassVar

from harness.engines.base import GrammarSpec, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, unsupported
from harness.engines.status import EngineStatus
from harness.outcomes import NotMeasurable, Unsupported
from harness.wire.request import ApiRequest

_NO_QUANTIZATION = (
    "openai_api_server.py exposes no quantization option; FastGen serves fp16/bf16 HF checkpoints "
    "(DeepSpeed-MII README)"
)


class DeepSpeedMiiAdapter(ContainerEngineAdapter):
    """FastGen behind mii.entrypoints.openai_api_server (the table's "Fastgen" column)."""

    name: ClassVar[str] = "Fastgen"
    container_spec: ClassVar[str] = "deepspeed-mii"
    status: ClassVar[EngineStatus] = EngineStatus(
        "dormant",
        "https://github.com/deepspeedai/DeepSpeed-MII/commits/main (last release v0.3.3 on 2025-03-25, last "
        "commit 2025-07-01; no deprecation notice)",
        since=datetime.date(2025, 7, 1),
    )
    native_command: ClassVar[str | None] = "mii.entrypoints.openai_api_server"
    loads_formats: ClassVar[tuple[str, ...]] = ("hf",)
    limits: ClassVar[dict[str, Limit]] = {
        "draft_model": unsupported(
            "FastGen has no speculative decoding: openai_api_server.py takes no draft "
            "model (deepspeedai/DeepSpeed-MII#254)"
        ),
        "pipeline_parallel": unsupported(
            "openai_api_server.py offers --tensor-parallel and --replica-num only, "
            "no pipeline parallelism (deepspeedai/DeepSpeed-MII#329)"
        ),
        "awq": unsupported(_NO_QUANTIZATION),
        "exl2": unsupported(_NO_QUANTIZATION),
    }
    model_id_from_server: ClassVar[bool] = True  # requests must name exactly the --model value

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        """Dynamic SplitFuse is FastGen's only prefill mode, so `prefill_chunk_tokens` has no flag to set."""
        command = [
            "python3",
            "-m",
            "mii.entrypoints.openai_api_server",
            "--model",
            str(models.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        if spec.tensor_parallel > 1:
            command += ["--tensor-parallel", str(spec.tensor_parallel)]
        return command

    # -- feature translation -----------------------------------------------------------
    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        """Generation always samples, so greedy is `top_k: 1`; the server never returns log-probabilities."""
        if top_logprobs:
            raise NotMeasurable(
                "FastGen's OpenAI server answers logprobs=None (openai_api_server.py): the "
                "reference comparison needs log-probabilities"
            )
        return ApiRequest("/v1/completions", {"model": model, "prompt": prompt, "max_tokens": max_tokens, "top_k": 1})

    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "FastGen's OpenAI server has no response_format or schema field (mii/entrypoints/data_models.py)"
        )

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        raise Unsupported("FastGen's OpenAI server has no grammar field (mii/entrypoints/data_models.py)")

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "FastGen has no beam search: data_models.py accepts use_beam_search but "
            "openai_api_server.py never passes it on (deepspeedai/DeepSpeed-MII#286)"
        )

    def fixed_length_request(self, model: str, prompt: str, max_tokens: int, stream: bool) -> ApiRequest:
        """No `ignore_eos` (the server pins it false): `min_tokens` equal to `max_tokens` fixes the length."""
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "min_tokens": max_tokens,
                "top_k": 1,
                "stream": stream,
            },
        )
