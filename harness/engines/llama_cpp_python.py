"""llama-cpp-python's own OpenAI-compatible server (`python -m llama_cpp.server`, PyPI `llama-cpp-python[server]`).

A column of its own, distinct from llama-server: the same ggml kernels (vendored llama.cpp), but its own server
(FastAPI), OpenAI layer, sampler chain, grammar handling, logprobs, `echo` and function calling.
Flags and fields follow the pinned package's source (0.3.36):
- llama_cpp/server/settings.py: `--model`, `--model_alias`, `--n_ctx`, `--n_batch`, `--n_ubatch`, `--n_threads`,
  `--flash_attn`, `--chat_format`, `--draft_model` ("prompt-lookup-decoding" only: no separate draft model);
  one model context serving one request at a time (app.py: `llama_outer_lock` / `llama_inner_lock`).
- llama_cpp/server/types.py: completions take `grammar` (GBNF), `logit_bias`, `logprobs`, `echo`, `min_tokens`,
  `repeat_penalty` (default 1.1), `top_k` (40), `min_p` (0.05); chat takes `response_format`
  `{"type": "json_object", "schema": ...}` (llama_types.py: no "json_schema" type), `tools`, `tool_choice`.
  Unknown fields (`ignore_eos`, `stream_options`, `return_token_ids`) are dropped by pydantic without an error.
- There is no /health: /v1/models answers once the model is loaded (the app loads it before serving).
The adapter asks as an OpenAI client would (temperature 0, no engine-specific penalties switched off): the
engine's own defaults, e.g. repeat_penalty 1.1 applied before its greedy sampler (llama.py `_init_sampler`), are
part of what is measured.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, ClassVar

import httpx

from harness.engines.base import EngineAdapter, GrammarSpec, LaunchSpec, RegexSpec, ResolvedModels, ToolCall
from harness.engines.llamacpp import LlamaCppAdapter
from harness.engines.status import EngineStatus
from harness.launch.base import RunningEngine
from harness.models.sets import GGUF_FORMATS
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import cache_dir
from harness.records.results import EngineIdentity
from harness.toolchain import llama_cpp_python as toolchain
from harness.wire.request import ApiRequest

SOURCE = (
    f"llama_cpp/server/settings.py and llama_cpp/server/types.py in {toolchain.PACKAGE} {toolchain.PACKAGE_VERSION}"
)
TOOL_CHAT_FORMAT = "chatml-function-calling"  # the documented chat format for OpenAI `tools` (docs/server.md)


@lru_cache(maxsize=8)
def gguf_token_bytes(path: Path) -> dict[bytes, list[int]]:
    """Every token of a GGUF vocabulary by the bytes it decodes to (byte-level BPE `gpt2` or SentencePiece
    `llama` vocabularies), for turning the per-token texts of a logprobs answer back into token ids."""
    from gguf import GGUFReader

    reader = GGUFReader(path)
    model_field = reader.fields["tokenizer.ggml.model"]
    model = bytes(model_field.parts[model_field.data[0]]).decode()
    tokens_field = reader.fields["tokenizer.ggml.tokens"]
    pieces = [bytes(tokens_field.parts[index]).decode("utf-8", errors="replace") for index in tokens_field.data]
    types_field = reader.fields.get("tokenizer.ggml.token_type")
    types = [int(types_field.parts[index][0]) for index in types_field.data] if types_field else [1] * len(pieces)
    decode = _byte_level_decoder() if model == "gpt2" else _sentencepiece_decode if model == "llama" else None
    if decode is None:
        raise NotMeasurable(f"{path.name}: no decoder for its {model!r} vocabulary to recover token ids")
    table: dict[bytes, list[int]] = {}
    for token_id, (piece, kind) in enumerate(zip(pieces, types)):
        if kind == 1:  # normal tokens only: control, unknown and unused ones never come back as text
            table.setdefault(decode(piece), []).append(token_id)
    return table


def _byte_level_decoder() -> Callable[[str], bytes]:
    """GPT-2's byte-to-unicode table, inverted."""
    visible = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    codes = visible[:]
    extra = 0
    for byte in range(256):
        if byte not in visible:
            visible.append(byte)
            codes.append(256 + extra)
            extra += 1
    inverse = {chr(code): byte for byte, code in zip(visible, codes)}
    return lambda piece: bytes(inverse.get(char, 0) for char in piece)


def _sentencepiece_decode(piece: str) -> bytes:
    if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
        return bytes([int(piece[3:5], 16)])
    return piece.replace("▁", " ").encode()


class LlamaCppPythonAdapter(EngineAdapter):
    """Adapter for llama-cpp-python's server, installed by `infercheck setup llama-cpp-python`."""

    name: ClassVar[str] = "llama-cpp-python"
    status: ClassVar[EngineStatus] = EngineStatus(
        "active", f"https://pypi.org/project/llama-cpp-python/ ({toolchain.PACKAGE_VERSION} newest on PyPI)"
    )
    native_format: ClassVar[str] = "f16"
    health_path: ClassVar[str] = "/v1/models"
    startup_timeout_s: ClassVar[float] = 120.0
    threads: ClassVar[int] = 2
    context_tokens: ClassVar[int] = 2048  # the synthesized models' context

    def __init__(self) -> None:
        self._model_path: Path | None = None  # the GGUF file last launched (its vocabulary gives token ids)

    # -- launching -----------------------------------------------------------------
    def prepare(self) -> None:
        if toolchain.find_install(cache_dir()) is None:
            raise FileNotFoundError("llama-cpp-python is not installed: run `infercheck setup llama-cpp-python`")

    def install(self, progress: Callable[[str], None]) -> None:
        toolchain.ensure_install(cache_dir(), progress=progress)

    def check_launchable(self, spec: LaunchSpec, devices: int) -> None:
        if spec.model_format not in (None, *GGUF_FORMATS):
            raise Unsupported(
                f"llama-cpp-python loads GGUF files only, not {spec.model_format!r}: Llama(model_path=...) "
                "hands the file to llama.cpp's llama_model_load_from_file",
                source=f"llama_cpp/llama.py in {toolchain.PACKAGE} {toolchain.PACKAGE_VERSION}",
            )
        if spec.draft_model is not None:
            raise Unsupported(
                "no separate draft model: the server's --draft_model takes only 'prompt-lookup-decoding' "
                "(llama_speculative.LlamaPromptLookupDecoding)",
                source=SOURCE,
            )
        if spec.api_prefix:
            raise Unsupported("llama-cpp-python serves its OpenAI API under /v1 only", source=SOURCE)
        split = max(spec.tensor_parallel, spec.pipeline_parallel)
        if split > 1 and devices < split:
            raise NotMeasurable(
                f"its --split_mode / --tensor_split split a model over GPUs; this host has {devices}, and the build "
                "has no RPC backend for CPU processes"
            )
        if spec.prefix_caching is False:
            raise NotMeasurable(
                "no switch turns off its reuse of the previous prompt's KV prefix (Llama.generate keeps the longest "
                "common prefix); --cache only adds a second, RAM/disk state cache, off by default"
            )

    def compute_dtype(self, spec: LaunchSpec) -> str | None:
        """ggml's CPU backend dequantizes f16 and quantized GGUF weights and computes in float32."""
        return "float32"

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        self._model_path = models.model
        install = toolchain.find_install(cache_dir())  # None under --launcher docker: the image's python runs it
        python = str(install.python) if install else "python3"
        command = [
            python,
            "-m",
            "llama_cpp.server",
            "--model",
            str(models.model),
            "--model_alias",
            self.served_model_name(models),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            str(spec.kv_cache_tokens if spec.kv_cache_tokens is not None else self.context_tokens),
            "--n_threads",
            str(self.threads),
            "--n_threads_batch",
            str(self.threads),
        ]
        if spec.prefill_chunk_tokens is not None:
            command += ["--n_batch", str(spec.prefill_chunk_tokens), "--n_ubatch", str(spec.prefill_chunk_tokens)]
        if spec.flash_attention is not None:
            command += ["--flash_attn", "true" if spec.flash_attention else "false"]
        if spec.tool_calling:
            command += ["--chat_format", TOOL_CHAT_FORMAT]
        if spec.prefix_caching:
            command += ["--cache", "true"]
        return command

    def launch_env(self, spec: LaunchSpec) -> dict[str, str]:
        return {"OMP_NUM_THREADS": str(self.threads)}

    def identity(self, running: RunningEngine) -> EngineIdentity:
        """The version FastAPI reports (create_app passes llama_cpp.__version__), and the flags of the cached build."""
        info = httpx.get(running.base_url + "/openapi.json", timeout=10).json().get("info", {})
        version = str(info.get("version", "unknown"))
        install = toolchain.find_install(cache_dir()) if running.launcher == "process" else None
        build: dict[str, Any] = {"python": running.command[0] if running.command else None}
        if install is not None:
            build.update(backend=install.backend, cmake_args=list(install.cmake_args))
        return EngineIdentity(
            name=self.name,
            version=version,
            package=toolchain.PACKAGE,
            package_version=toolchain.PACKAGE_VERSION if running.launcher != "attach" else None,
            build=build,
        )

    def served_model_name(self, models: ResolvedModels) -> str:
        return models.model.name

    # -- feature translation -----------------------------------------------------------
    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        """Its JSON mode: `response_format` of type json_object with a `schema` (llama_types.py allows only
        "text" and "json_object"; the schema goes through llama_grammar.json_schema_to_gbnf)."""
        request = super().json_schema_request(model, prompt, schema, max_tokens)
        return ApiRequest(request.path, {**request.body, "response_format": {"type": "json_object", "schema": schema}})

    def fixed_length_request(self, model: str, prompt: str, max_tokens: int, stream: bool) -> ApiRequest:
        """`min_tokens` is its way to keep EOS away (server/app.py: MinTokensLogitsProcessor): no `ignore_eos`, and
        no `stream_options` (both dropped unread), so they are not sent."""
        request = super().fixed_length_request(model, prompt, max_tokens, stream)
        body = {key: value for key, value in request.body.items() if key not in ("ignore_eos", "stream_options")}
        return ApiRequest(request.path, {**body, "min_tokens": max_tokens})

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "grammar": grammar.gbnf},
        )

    def regex_request(self, model: str, prompt: str, regex: RegexSpec, max_tokens: int) -> ApiRequest:
        """No regex field (server/types.py): the same language goes as a GBNF `grammar`."""
        return self.grammar_request(model, prompt, GrammarSpec(gbnf=regex.gbnf, lark=""), max_tokens)

    def regex_note(self) -> str:
        return "no regex field: sent as the equivalent GBNF grammar"

    def structured_output_backend(self, running: RunningEngine) -> str:
        return "llama-cpp-python json_schema_to_gbnf (llama_grammar.py) into llama.cpp's GBNF sampler"

    def logit_bias_request(self, model: str, prompt: str, bias: dict[int, float], max_tokens: int) -> ApiRequest:
        """`logit_bias` by token id, `min_tokens` for exactly `max_tokens` tokens, and `logprobs` for the tokens
        (its answers carry no token ids: generated_token_ids maps the per-token texts back by the vocabulary)."""
        body = self.fixed_length_request(model, prompt, max_tokens, stream=False).body
        bias_by_id = {str(token): value for token, value in bias.items()}
        return ApiRequest("/v1/completions", {**body, "logit_bias": bias_by_id, "logprobs": 1})

    def generated_token_ids(self, response: dict[str, Any]) -> list[int]:
        """The ids of `logprobs.tokens` (each token's own text), by the served GGUF's vocabulary; a text that
        several tokens share, or none, cannot be mapped back."""
        if self._model_path is None:
            raise NotMeasurable("llama-cpp-python's answers carry no token ids, and the served GGUF is not known")
        table = gguf_token_bytes(self._model_path)
        texts = ((response["choices"][0].get("logprobs") or {}).get("tokens")) or []
        ids = []
        for text in texts:
            candidates = table.get(text.encode(), [])
            if len(candidates) != 1:
                raise NotMeasurable(
                    f"llama-cpp-python's answers carry no token ids, and the token text {text!r} matches "
                    f"{len(candidates)} tokens of {self._model_path.name}'s vocabulary"
                )
            ids.append(candidates[0])
        return ids

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "no beam search field, and the completions route drops `n` and `best_of` before calling the model "
            "(server/app.py: exclude = {'n', 'best_of', ...})",
            source=f"llama_cpp/server/app.py and llama_cpp/server/types.py in {toolchain.PACKAGE} "
            f"{toolchain.PACKAGE_VERSION}",
        )

    def parse_tool_calls(self, response: dict[str, Any]) -> list[ToolCall]:
        """`tool_calls`, or the legacy `function_call` some of its chat handlers answer with."""
        calls = super().parse_tool_calls(response)
        legacy = response["choices"][0]["message"].get("function_call")
        if not calls and legacy:
            return [ToolCall(name=legacy["name"], arguments=legacy["arguments"])]
        return calls

    def attention_evidence(self, running: RunningEngine) -> dict[str, Any]:
        """Its verbose start-up log is llama.cpp's own (the vendored library logs through the bindings:
        `sched_reserve: CPU compute buffer size`, `llama_kv_cache: ... cells`), read as for llama-server."""
        return LlamaCppAdapter().attention_evidence(running)
