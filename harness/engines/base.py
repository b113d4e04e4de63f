"""The engine adapter interface: how to launch an engine and how each feature is asked for.

Probes speak the neutral vocabulary below (LaunchSpec, ApiRequest builders); an adapter
translates it into its engine's own command line and API. The defaults speak the
OpenAI-compatible API that most engines serve; adapters override what differs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.engines.stages import Stage
from harness.engines.status import EngineStatus
from harness.launch.base import RunningEngine
from harness.outcomes import NotMeasurable, Unsupported
from harness.records.results import EngineIdentity
from harness.wire.request import ApiRequest

if TYPE_CHECKING:
    from harness.docker.specs import ContainerSpec


@dataclass(frozen=True)
class LaunchSpec:
    """A launch configuration in neutral terms; each distinct spec starts the engine once."""

    model: str = "llama"
    model_format: str | None = None  # None: the adapter's native format
    draft_model: str | None = None
    parallel_slots: int = 4
    continuous_batching: bool = True
    flash_attention: bool | None = None  # None: engine default
    prefill_chunk_tokens: int | None = None  # None: engine default
    kv_cache_tokens: int | None = None  # None: engine default; else the KV cache holds this many tokens in all
    tensor_parallel: int = 1
    pipeline_parallel: int = 1
    api_prefix: str = ""
    beam_width: int | None = None  # None: engine default; engines that fix the beam width at launch (TRT-LLM)
    prefix_caching: bool | None = None  # None: engine default; False: launched with its prefix cache off
    prompt_cache_ram: bool | None = None  # None: engine default; False: no host-memory prompt cache (benchmarks)
    tool_calling: bool | None = None  # None: engine default; False: launched without its tool-call support

    def key(self) -> str:
        """A short, stable name for records and log folders."""
        defaults = LaunchSpec()
        parts = [f"{name}={value}" for name, value in sorted(asdict(self).items()) if value != getattr(defaults, name)]
        return ",".join(parts) or "base"


@dataclass(frozen=True)
class GrammarSpec:
    """One context-free language written in the dialects engines accept."""

    gbnf: str
    lark: str


@dataclass(frozen=True)
class RegexSpec:
    """A regular language: a regex (Python `re` syntax, matched in full) and the same language in GBNF."""

    pattern: str
    gbnf: str  # for engines whose only constraint language is a grammar


@dataclass(frozen=True)
class ToolCall:
    """One tool call from a chat answer: the function's name and its arguments as the engine sent them."""

    name: str
    arguments: str


@dataclass
class GreedyOutput:
    """Greedy text plus the top log-probabilities at each generated position."""

    text: str
    top_logprobs: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class ResolvedModels:
    """File system paths of the models a launch spec names."""

    model: Path
    draft_model: Path | None = None


class EngineAdapter(ABC):
    """One engine column: launching, identity, and feature translation."""

    name: ClassVar[str]  # the column name in the comparison table
    native_format: ClassVar[str]  # model format it loads: "f16" (GGUF) or "hf"
    health_path: ClassVar[str] = "/health"
    startup_timeout_s: ClassVar[float] = 120.0
    status: ClassVar[EngineStatus]  # the project's own state (active, maintenance, ...), with its source

    # -- launching -----------------------------------------------------------------
    @abstractmethod
    def prepare(self) -> None:
        """Make sure the engine is installed here; raise FileNotFoundError with a clear message if not."""

    def install(self, progress: Callable[[str], None]) -> None:
        """Install the engine on this host (cached); engines run only in containers have nothing to do."""

    @abstractmethod
    def check_launchable(self, spec: LaunchSpec, devices: int) -> None:
        """Raise Unsupported or NotMeasurable when this spec cannot run on this host."""

    @abstractmethod
    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        """The command line that serves `models` on 127.0.0.1:`port`."""

    @abstractmethod
    def identity(self, running: RunningEngine) -> EngineIdentity:
        """The exact engine build answering at `running`."""

    def use_container(self, spec: ContainerSpec) -> None:
        """Told, before any launch, that the engine runs from `spec`'s image (--launcher docker)."""

    def launch_env(self, spec: LaunchSpec) -> dict[str, str]:
        """Extra environment variables for the engine process."""
        return {}

    def served_model_name(self, models: ResolvedModels) -> str:
        """The model name clients must send."""
        return models.model.stem

    def compute_dtype(self, spec: LaunchSpec) -> str | None:
        """The dtype the engine computes in for this spec (part of the measurement context); None: unknown."""
        return None

    def installed_identity(self) -> EngineIdentity | None:
        """The identity known without starting the engine (an installed package at its pinned version), for a record
        written before any launch of the run; None when only a running engine can tell."""
        return None

    # -- feature translation (OpenAI-compatible defaults) ----------------------------
    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        """Greedy completion of a plain-text prompt with top log-probabilities."""
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "logprobs": top_logprobs},
        )

    def parse_greedy(self, response: dict[str, Any]) -> GreedyOutput:
        """Text and per-position top log-probabilities from a greedy_request response."""
        choice = response["choices"][0]
        top = (choice.get("logprobs") or {}).get("top_logprobs") or []
        return GreedyOutput(text=choice["text"], top_logprobs=[dict(t) for t in top])

    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        """A chat request whose answer must follow `schema`."""
        return ApiRequest(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "response_format": {"type": "json_schema", "json_schema": {"name": "probe", "schema": schema}},
            },
        )

    def fixed_length_request(self, model: str, prompt: str, max_tokens: int, stream: bool) -> ApiRequest:
        """A greedy completion that generates exactly `max_tokens` tokens (EOS ignored)."""
        body: dict[str, Any] = {
            "model": model,
            "prompt": prompt,
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": stream,
        }
        if stream:
            body["stream_options"] = {"include_usage": True}
        return ApiRequest("/v1/completions", body)

    @abstractmethod
    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        """A completion constrained by a context-free grammar."""

    def beam_search_launch(self, spec: LaunchSpec, beams: int) -> LaunchSpec:
        """The launch a beam search of `beams` needs: `spec` itself unless the engine fixes the width at launch."""
        return spec

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        """A beam search asking for all `beams` beams back, with their log-probabilities."""
        raise Unsupported(f"{self.name} has no beam search parameter in its API")

    def regex_request(self, model: str, prompt: str, regex: RegexSpec, max_tokens: int) -> ApiRequest:
        """A completion whose whole output must match `regex`."""
        raise Unsupported(f"{self.name} has no regex constraint in its API")

    def beam_search_note(self) -> str:
        """What a claim of beam search for this engine referred to, when not its server (empty: nothing to say)."""
        return ""

    def regex_note(self) -> str:
        """How regex_request expresses the regex, when not as a regex (empty: as a regex)."""
        return ""

    def structured_output_backend(self, running: RunningEngine) -> str:
        """The structured-output backend that turns schemas into constraints, as far as the engine says."""
        return f"{self.name} (backend not reported)"

    def echo_logprobs_request(self, model: str, prompt: str) -> ApiRequest:
        """A completion that echoes the prompt with each prompt token's log-probability (lm-eval's loglikelihood)."""
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0, "echo": True, "logprobs": 1},
        )

    def parse_prompt_logprobs(self, response: dict[str, Any]) -> list[tuple[str, float | None]]:
        """(token text, log-probability) of every echoed position, prompt first (the first has none)."""
        logprobs = response["choices"][0].get("logprobs") or {}
        return list(zip(logprobs.get("tokens") or [], logprobs.get("token_logprobs") or []))

    def logit_bias_request(self, model: str, prompt: str, bias: dict[int, float], max_tokens: int) -> ApiRequest:
        """A greedy completion of exactly `max_tokens` tokens with `bias` added to those token ids' logits,
        answering with the generated token ids."""
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "ignore_eos": True,
                "logit_bias": {str(token): value for token, value in bias.items()},
                "return_token_ids": True,
            },
        )

    def generated_token_ids(self, response: dict[str, Any]) -> list[int]:
        """The token ids a logit_bias_request generated."""
        return [int(token) for token in response["choices"][0]["token_ids"]]

    def prefix_cache_request(self, model: str, prompt: str, use_cache: bool) -> ApiRequest:
        """A one-token completion of `prompt`; with use_cache=False the engine must not reuse cached prefixes."""
        if not use_cache:
            raise NotMeasurable(f"{self.name}'s API has no per-request switch for its prefix cache")
        return ApiRequest("/v1/completions", {"model": model, "prompt": prompt, "max_tokens": 1, "temperature": 0})

    def cached_prompt_tokens(self, response: dict[str, Any], metrics_delta: dict[str, float]) -> float | None:
        """Prompt tokens the engine says it took from its prefix cache (None: it does not say).

        `metrics_delta` is how much each Prometheus counter grew while the request ran.
        """
        details = (response.get("usage") or {}).get("prompt_tokens_details") or {}
        return details.get("cached_tokens")

    def tool_call_request(self, model: str, prompt: str, tools: list[dict[str, Any]], max_tokens: int) -> ApiRequest:
        """An OpenAI `tools` chat request with tool_choice="required"."""
        return ApiRequest(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "tools": tools,
                "tool_choice": "required",
            },
        )

    def parse_tool_calls(self, response: dict[str, Any]) -> list[ToolCall]:
        """The tool calls of a tool_call_request's answer."""
        calls = response["choices"][0]["message"].get("tool_calls") or []
        return [ToolCall(name=call["function"]["name"], arguments=call["function"]["arguments"]) for call in calls]

    def completion_text(self, response: dict[str, Any]) -> list[str]:
        """Every choice's text from a completions or chat response."""
        texts = []
        for choice in response["choices"]:
            texts.append(choice["message"]["content"] if "message" in choice else choice["text"])
        return texts

    def speculative_stats(self, responses: list[dict[str, Any]], metrics: str | None) -> dict[str, float]:
        """Draft tokens proposed and accepted over `responses`, as the engine reports them."""
        return {}

    def attention_evidence(self, running: RunningEngine) -> dict[str, Any]:
        """What the engine itself says about its attention kernel and KV-cache layout."""
        return {}

    def prefill_batches(self, running: RunningEngine) -> dict[str, Any]:
        """What the engine's own log says about how it batched prompts: `n_batch` (tokens per forward pass), and
        how many prompt chunks went in a pass beside decode tokens (`mixed`) or alone (`alone`); {} when it does
        not say."""
        return {}

    def split_holdings(self, running: RunningEngine) -> str | None:
        """What each stage of a split holds by the engine's own load report: "whole layers" (a layer or pipeline
        split) or "shards of every layer" (a tensor split); None when it does not say."""
        return None

    def sliding_window_evidence(self, running: RunningEngine) -> dict[str, Any]:
        """What the engine's own start-up log says about the model's sliding attention window: `window_ignored`
        (True when it read the window from the file and ran without one), `statement` (the lines, quoted), `log`."""
        return {}

    def stages(self, running: RunningEngine) -> list[Stage]:
        """The rank or stage processes of a split engine, with the weights each holds by the engine's own load
        log; [] when the engine runs as one process, or its processes are not visible (attach mode, a container)."""
        return []

    def batching_counters(self, metrics: str) -> dict[str, float]:
        """The engine's own batching figures from its `/metrics` text: `steps` (forward passes so far) and
        `generated` (tokens generated so far), counters whose growth over a span gives the mean number of
        sequences one step decoded; `batch` (sequences in the running batch now), a gauge. Absent: not reported."""
        return {}
