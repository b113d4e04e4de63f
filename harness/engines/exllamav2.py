"""ExLlamaV2, served through TabbyAPI in its image (containers/exllamav2/spec.yaml).

ExLlamaV2 is a library with no server of its own (https://github.com/turboderp/exllamav2 README points
to TabbyAPI for an OpenAI-style API). The container runs TabbyAPI pinned at commit 79126f9 (2026-06-27),
the head of its `exl2-checkpoint` branch: TabbyAPI removed the ExLlamaV2 backend from main in c8b9a8f
(2026-07-14), and that branch is the last TabbyAPI that drives ExLlamaV2's dynamic generator (exllamav2
0.3.2 from its `cu12` extra); every record says so in `engine.build`. Written from TabbyAPI's source at
that commit (https://github.com/theroyallab/tabbyAPI): common/config_models.py and common/args.py
(`--host`, `--port`, `--disable-auth`, `--model-dir`, `--model-name`, `--max-batch-size`, `--chunk-size`,
`--tensor-parallel`, `--gpu-split-auto`, `--draft-model-dir`, `--draft-model-name`), common/model.py (no
`--backend`: a model that is not EXL3 selects exllamav2), common/sampling.py (`json_schema`,
`regex_pattern`, `grammar_string`, `ban_eos_token` alias `ignore_eos`, `logprobs`; no beam search),
backends/exllamav2/grammar.py (`grammar_string` is KBNF, formatron's dialect, whose start rule is
`start`; a schema, regex or grammar formatron cannot parse is skipped with a logged error and the request
runs unconstrained), endpoints/core/router.py (`/health`, `/v1/models`).
"""

from __future__ import annotations

import datetime
import re
from typing import Any, ClassVar

from harness.engines.base import GrammarSpec, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter, Limit, unsupported
from harness.engines.status import EngineStatus
from harness.engines.tabbyapi import tabby_command, tabby_json_schema_request
from harness.outcomes import Unsupported
from harness.wire.request import ApiRequest

TABBY_COMMIT = "79126f904c2e00aece026b36bb70bbb87e4892b2"  # head of TabbyAPI's exl2-checkpoint branch
_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\[(?:\\.|[^\]\\])*\]|\{\d+(?:,\d*)?\}|[()|*+?]|[A-Za-z_][\w-]*|\S')


def _units(tokens: list[str]) -> list[str]:
    """GBNF body tokens as KBNF: groups kept whole, character classes as regexes, {m,n} spelled out."""
    out: list[str] = []
    index = 0
    while index < len(tokens):
        token = tokens[index]
        if token == "(":
            depth, end = 1, index + 1
            while depth:
                depth += {"(": 1, ")": -1}.get(tokens[end], 0)
                end += 1
            out.append("(" + " ".join(_units(tokens[index + 1 : end - 1])) + ")")
            index = end
            continue
        if token.startswith("{") and out:
            low, _, high = token[1:-1].partition(",")
            unit = out.pop()
            group = unit if unit.startswith("(") else f"({unit})"
            out += [unit] * int(low)
            out += [group + "*"] if high == "" and "," in token else [group + "?"] * (int(high or low) - int(low))
        elif token in "*+?" and out:
            out[-1] += token
        else:
            out.append(f'#"{token}"' if token.startswith("[") else token)
        index += 1
    return out


def kbnf_from_gbnf(gbnf: str) -> str:
    """A GBNF grammar (one rule per line) in KBNF: `;` ends each rule and `root` becomes `start`."""
    rules = []
    for line in gbnf.strip().splitlines():
        name, _, body = line.partition("::=")
        name = "start" if name.strip() == "root" else name.strip()
        tokens = ["start" if token == "root" else token for token in _TOKEN.findall(body)]
        rules.append(f"{name} ::= {' '.join(_units(tokens))};")
    return "\n".join(rules) + "\n"


class ExLlamaV2Adapter(ContainerEngineAdapter):
    """ExLlamaV2's generator behind TabbyAPI's OpenAI-style routes."""

    name: ClassVar[str] = "ExLlamaV2"
    container_spec: ClassVar[str] = "exllamav2"
    status: ClassVar[EngineStatus] = EngineStatus(
        "superseded",
        "https://github.com/theroyallab/tabbyAPI/commit/c8b9a8f (TabbyAPI removed its ExLlamaV2 backend); "
        "https://github.com/turboderp-org/exllamav2 (last release v0.3.2 on 2025-07-13; ExLlamaV3 succeeds it)",
        since=datetime.date(2026, 7, 14),
    )
    native_command: ClassVar[str | None] = None  # TabbyAPI runs from its own checkout inside the image
    loads_formats: ClassVar[tuple[str, ...]] = ("hf", "exl2")
    limits: ClassVar[dict[str, Limit]] = {
        "awq": unsupported(
            "ExLlamaV2 loads EXL2, GPTQ and fp16 safetensors checkpoints (turboderp/exllamav2 "
            "README); it has no AWQ kernels"
        ),
    }
    build_notes: ClassVar[dict[str, str]] = {
        "server": f"TabbyAPI {TABBY_COMMIT[:7]}: ExLlamaV2 has no server of its own; TabbyAPI drives its dynamic "
        "generator behind an OpenAI-style HTTP API"
    }

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        return tabby_command(spec, models, port, ["--disable-auth", "true"])

    # -- feature translation -----------------------------------------------------------
    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        return tabby_json_schema_request(model, prompt, schema, max_tokens)

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "grammar_string": kbnf_from_gbnf(grammar.gbnf),
            },
        )

    def beam_search_request(self, model: str, prompt: str, beams: int, max_tokens: int) -> ApiRequest:
        raise Unsupported(
            "TabbyAPI's sampler (common/sampling.py) has no beam search parameter and ExLlamaV2's "
            "dynamic generator samples one sequence per job"
        )

    def completion_text(self, response: dict[str, Any]) -> list[str]:
        """Without the one newline TabbyAPI's formatter puts after constrained output (formatron
        FormatterBuilder.append_line, used by backends/exllamav2/grammar.py): it is not part of the grammar."""
        return [text.removesuffix("\n") for text in super().completion_text(response)]

    def speculative_stats(self, responses: list[dict[str, Any]], metrics: str | None) -> dict[str, float]:
        raise self.no_draft_statistics()
