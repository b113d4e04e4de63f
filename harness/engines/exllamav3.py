"""ExLlamaV3, served through TabbyAPI in its own image (containers/exllamav3/spec.yaml).

ExLlamaV3 succeeds ExLlamaV2 (TabbyAPI dropped the ExLlamaV2 backend on 2026-07-14); TabbyAPI is
its official server. Written from TabbyAPI's source (https://github.com/theroyallab/tabbyAPI):
common/args.py and common/config_models.py (`--host`, `--port`, `--model-dir`, `--model-name`,
`--backend exllamav3`, `--max-batch-size`, `--chunk-size`, `--tensor-parallel`, `--gpu-split-auto`,
`--draft-model-dir`, `--draft-model-name`), common/sampling.py (`json_schema`, `regex_pattern`,
`grammar_string`, `ban_eos_token` alias `ignore_eos`, `logprobs`; no beam search),
backends/exllamav3/grammar.py (llguidance: `grammar_string` is Lark or GBNF, told apart by itself),
common/auth.py (authentication on unless disabled: keys are generated into api_tokens.yml and
logged as "Your API key is: ..."; requests carry `x-api-key`). An unparsable schema is skipped
with a warning, not refused: the probes judge the output, never the status code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

from harness.engines.base import EngineAdapter, GrammarSpec, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, unsupported
from harness.engines.status import EngineStatus
from harness.engines.tabbyapi import tabby_command, tabby_json_schema_request
from harness.launch.base import EngineStartError, RunningEngine
from harness.outcomes import Unsupported
from harness.records.results import EngineIdentity
from harness.wire.request import ApiRequest

if TYPE_CHECKING:
    from harness.engines.base import RegexSpec

_API_KEY = re.compile(r"Your API key is: ([0-9a-f]{16,})")


class ExLlamaV3Adapter(ContainerEngineAdapter):
    """ExLlamaV3's generator behind TabbyAPI's OpenAI-style routes, with TabbyAPI's own API key."""

    name: ClassVar[str] = "ExLlamaV3"
    container_spec: ClassVar[str] = "exllamav3"
    status: ClassVar[EngineStatus] = EngineStatus(
        "active",
        "https://github.com/turboderp-org/exllamav3/releases (exllamav3 1.6.5 newest on PyPI; TabbyAPI is "
        "its official server)",
    )
    native_command: ClassVar[str | None] = None  # TabbyAPI runs from its own checkout inside the image
    loads_formats: ClassVar[tuple[str, ...]] = ("hf", "exl3")
    limits: ClassVar[dict[str, Limit]] = {
        "awq": unsupported(
            "ExLlamaV3 loads EXL3 and FP16/BF16 checkpoints (turboderp-org/exllamav3 README); it has no AWQ kernels"
        ),
        "exl2": unsupported(
            "TabbyAPI removed its ExLlamaV2 backend on 2026-07-14 (theroyallab/tabbyAPI c8b9a8f) and "
            "ExLlamaV3 loads EXL3 only, not EXL2"
        ),
    }
    build_notes: ClassVar[dict[str, str]] = {
        "server": "TabbyAPI (ghcr.io/theroyallab/tabbyapi): ExLlamaV3's official server, authentication on"
    }

    def __init__(self) -> None:
        super().__init__()
        self._api_key: str | None = None
        for name in dir(EngineAdapter):  # every request builder sends the key
            if name.endswith("_request"):
                setattr(self, name, self._keyed(getattr(self, name)))

    def _keyed(self, build: Callable[..., ApiRequest]) -> Callable[..., ApiRequest]:
        def keyed(*args: Any, **kwargs: Any) -> ApiRequest:
            request = build(*args, **kwargs)
            return replace(request, headers={**request.headers, **self.auth_headers()})

        return keyed

    def auth_headers(self) -> dict[str, str]:
        """`x-api-key` once the key is known (common/auth.py check_api_key)."""
        return {"x-api-key": self._api_key} if self._api_key else {}

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        return tabby_command(spec, models, port, ["--backend", "exllamav3"])

    def identity(self, running: RunningEngine) -> EngineIdentity:
        """Reads the API key TabbyAPI generated and logged at start-up, before anything is asked of it."""
        keys = _API_KEY.findall(running.log_text())
        if not keys:
            raise EngineStartError(
                "TabbyAPI logged no API key ('Your API key is: ...', common/auth.py): requests "
                "would be refused with 401"
            )
        self._api_key = keys[-1]
        return super().identity(running)

    # -- feature translation -----------------------------------------------------------
    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        return tabby_json_schema_request(model, prompt, schema, max_tokens)

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        """llguidance tells Lark from GBNF itself; the GBNF is sent as written."""
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "grammar_string": grammar.gbnf,
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
                "regex_pattern": regex.pattern,
            },
        )

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "TabbyAPI's sampler (common/sampling.py) has no beam search parameter; ExLlamaV3's "
            "generator samples one sequence per job"
        )

    def speculative_stats(self, responses: list[dict[str, Any]], metrics: str | None) -> dict[str, float]:
        raise self.no_draft_statistics()
