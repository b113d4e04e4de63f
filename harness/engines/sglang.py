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
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.engines.base import GrammarSpec, GreedyOutput, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, unsupported
from harness.engines.status import EngineStatus
from harness.outcomes import Unsupported
from harness.wire.prometheus import metric_values
from harness.wire.request import ApiRequest

# the scheduler's `#running-req` (the decode batch it logs) as a gauge, and its generated-token counter
# (best effort: not yet measured against a real SGLang; it exports no per-step counter)
_BATCHING_METRICS = {"batch": "sglang:num_running_reqs", "generated": "sglang:generation_tokens_total"}

SPECULATIVE_STEPS = 3  # draft tokens proposed per verification step (topk 1)


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

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        command = [
            "python3",
            "-m",
            "sglang.launch_server",
            "--model-path",
            str(models.model),
            "--served-model-name",
            self.served_model_name(models),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
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
