"""LightLLM's API server (`python -m lightllm.server.api_server`), run from its image (containers/lightllm).

Written from LightLLM's source (https://github.com/ModelTC/lightllm): lightllm/server/api_cli.py
(`--model_dir`, `--host`, `--port`, `--tp`, `--running_max_req_size`, `--chunked_prefill_size`,
`--output_constraint_mode outlines|xgrammar|none` (default none), `--quant_type` for online weight
quantization; speculative decoding only as DeepSeek-V3 MTP, `--mtp_mode`), lightllm/server/api_http.py
(routes `/generate`, `/v1/completions`, `/v1/chat/completions`, `/health`; no `/v1/models`),
lightllm/server/api_lightllm.py (`/generate` takes `inputs` and `parameters`, `return_details` adds
each token's `logprob`), lightllm/server/core/objs/sampling_params.py (`do_sample`, `ignore_eos`,
`guided_grammar`, `guided_json`; `temperature` must be > 0), lightllm/server/api_openai.py (chat
`response_format` is read as `{"schema": ...}` and becomes `guided_json`; chat always samples),
lightllm/common/quantization/awq_quant.py (AWQ checkpoints read through their quantization config).
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.engines.base import GrammarSpec, GreedyOutput, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, unsupported
from harness.engines.status import EngineStatus
from harness.outcomes import Unsupported
from harness.wire.request import ApiRequest


class LightLlmAdapter(ContainerEngineAdapter):
    """LightLLM's native `/generate` API and its OpenAI-style routes."""

    name: ClassVar[str] = "LightLLM"
    container_spec: ClassVar[str] = "lightllm"
    status: ClassVar[EngineStatus] = EngineStatus(
        "active", "https://github.com/ModelTC/LightLLM/releases (v1.2.0 on 2026-08-10; 20-34 commits a month)"
    )
    native_command: ClassVar[str | None] = "lightllm.server.api_server"
    loads_formats: ClassVar[tuple[str, ...]] = ("hf", "awq")
    limits: ClassVar[dict[str, Limit]] = {
        "draft_model": unsupported(
            "LightLLM's only speculative decoding is DeepSeek-V3 MTP (--mtp_mode deepseekv3, "
            "--mtp_draft_model_dir in lightllm/server/api_cli.py); no generic draft model"
        ),
        "pipeline_parallel": unsupported(
            "lightllm/server/api_cli.py offers tensor (--tp), data (--dp) and "
            "multi-node options, no pipeline parallelism"
        ),
        "exl2": unsupported(
            "LightLLM has no EXL2 loader: lightllm/common/quantization registers ppl, torchao, "
            "vLLM w8a8/fp8, triton fp8, deepgemm and AWQ methods only"
        ),
    }

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        command = [
            "python3",
            "-m",
            "lightllm.server.api_server",
            "--model_dir",
            str(models.model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--running_max_req_size",
            str(spec.parallel_slots),
            "--output_constraint_mode",
            "xgrammar",
        ]
        if spec.tensor_parallel > 1:
            command += ["--tp", str(spec.tensor_parallel)]
        if spec.prefill_chunk_tokens is not None:
            command += ["--chunked_prefill_size", str(spec.prefill_chunk_tokens)]
        return command

    # -- feature translation -----------------------------------------------------------
    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        """Native `/generate`: `return_details` gives the chosen token's log-probability only (no top-n)."""
        return ApiRequest(
            "/generate",
            {
                "inputs": prompt,
                "parameters": {"max_new_tokens": max_tokens, "do_sample": False, "return_details": True},
            },
        )

    def parse_greedy(self, response: dict[str, Any]) -> GreedyOutput:
        return GreedyOutput(
            text=self.completion_text(response)[0],
            top_logprobs=[{token["text"]: token["logprob"]} for token in response.get("tokens", [])],
        )

    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        """Chat always samples (api_openai.py sets do_sample) and rejects temperature 0, so greedy is top_k 1."""
        return ApiRequest(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "top_k": 1,
                "response_format": {"type": "json_schema", "schema": schema},
            },
        )

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/generate",
            {
                "inputs": prompt,
                "parameters": {"max_new_tokens": max_tokens, "do_sample": False, "guided_grammar": grammar.gbnf},
            },
        )

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        raise Unsupported("LightLLM has no beam search: sampling_params.py has n == best_of sampling only")

    def fixed_length_request(self, model: str, prompt: str, max_tokens: int, stream: bool) -> ApiRequest:
        """Completions default to do_sample false (greedy); temperature 0 would be rejected."""
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "stream": stream},
        )

    def completion_text(self, response: dict[str, Any]) -> list[str]:
        """Native `/generate` answers `generated_text` (a list); the OpenAI routes answer `choices`."""
        if "generated_text" in response:
            text = response["generated_text"]
            return list(text) if isinstance(text, list) else [text]
        return super().completion_text(response)
