"""Contract tests: every launch command and request body an adapter builds, checked against the engine's own code.

- vLLM (the cached vLLM CPU environment, the release the GPU image pins): commands by vLLM's own
  `make_arg_parser(FlexibleArgumentParser())`, bodies by its OpenAI protocol models; an unknown field counts
  as refused, since vLLM ignores it and runs the request unconstrained (its removed `guided_*` fields).
- SGLang (the pinned wheel in a cached environment, tests/contracts/envs.py): `ServerArgs.add_cli_args` and
  its OpenAI protocol models; native `/generate` bodies are reported as not checked when `io_struct` cannot
  import on a CPU.
- TensorRT-LLM (no CPU wheel): the `serve` command's options and `CompletionRequest`'s fields transcribed
  from its source with their URLs (tests/contracts/tensorrt_llm_serve.json); its models forbid extra fields.
Each engine's checks run in one subprocess per session; a control command and body that must be refused
prove every check can fail.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from harness.docker.specs import spec_named
from harness.engines import base, get_adapter
from harness.engines.base import EngineAdapter, GrammarSpec, LaunchSpec, ResolvedModels
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import REPO_ROOT, cache_dir
from harness.toolchain import vllm_cpu
from harness.wire.request import ApiRequest
from tests.contracts.envs import EnvUnavailable, sglang_python, vllm_python

CONTRACTS = REPO_ROOT / "tests" / "contracts"
CHECKER = CONTRACTS / "check_in_venv.py"
TRT = json.loads((CONTRACTS / "tensorrt_llm_serve.json").read_text())
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
GRAMMAR = GrammarSpec(gbnf='root ::= "a" [0-9]\n', lark='start: "a" /[0-9]/\n')
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "add",
            "parameters": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]},
        },
    }
]
LAUNCHES: dict[str, dict[str, Any]] = {
    "base": {},
    "draft": {"draft_model": "llama-draft"},
    "tp2": {"tensor_parallel": 2},
    "pp2": {"pipeline_parallel": 2},
    "chunked": {"prefill_chunk_tokens": 64},
    "awq": {"model_format": "awq"},
    "flash_on": {"flash_attention": True},
    "flash_off": {"flash_attention": False},
    "kv_budget": {"kv_cache_tokens": 512},
    "no_prefix_cache": {"prefix_caching": False},
}
BAD_COMMAND = ["--model", "/m", "--no-such-option-anywhere", "1"]  # control: must be refused
BAD_BODY = ApiRequest("/v1/completions", {"model": "m", "prompt": "p", "guided_json": SCHEMA})  # removed field


def _builder_calls() -> dict[str, list[tuple[Any, ...]]]:
    calls: dict[str, list[tuple[Any, ...]]] = {
        "greedy_request": [("m", "p", 8, 5)],
        "json_schema_request": [("m", "p", SCHEMA, 8)],
        "grammar_request": [("m", "p", GRAMMAR, 8)],
        "fixed_length_request": [("m", "p", 8, True), ("m", "p", 8, False)],
        "beam_search_request": [("m", "p", 3, 8)],
        "echo_logprobs_request": [("m", "p")],
        "logit_bias_request": [("m", "p", {5: 10.0}, 8)],
        "prefix_cache_request": [("m", "p", True), ("m", "p", False)],
        "tool_call_request": [("m", "p", TOOLS, 8)],
    }
    regex = getattr(base, "RegexSpec", None)
    if regex is not None:
        calls["regex_request"] = [("m", "p", regex(pattern="a[0-9]", gbnf='root ::= "a" [0-9]\n'), 8)]
    return calls


def launch_specs(adapter: EngineAdapter) -> dict[str, LaunchSpec]:
    """Every sample launch the adapter accepts (on 8 GPUs), plus its beam-search launch."""
    known = {field.name for field in fields(LaunchSpec)}
    specs = {name: LaunchSpec(**values) for name, values in LAUNCHES.items() if set(values) <= known}
    specs["beam"] = adapter.beam_search_launch(LaunchSpec(), 3)
    accepted = {}
    for name, spec in specs.items():
        try:
            adapter.check_launchable(spec, 8)
            accepted[name] = spec
        except (Unsupported, NotMeasurable):
            pass
    return accepted


def commands(adapter: EngineAdapter, tmp: Path) -> dict[str, list[str]]:
    """Each accepted launch's arguments, from the first option on (the executable is the image's entrypoint)."""
    models = ResolvedModels(model=tmp / "llama" / "hf", draft_model=tmp / "llama-draft" / "hf")
    built = {}
    for name, spec in launch_specs(adapter).items():
        resolved = models if spec.draft_model else replace(models, draft_model=None)
        command = adapter.launch_command(spec, resolved, 8000)
        built[name] = command[next(i for i, token in enumerate(command) if token.startswith("--")) :]
    return built


def bodies(adapter: EngineAdapter) -> dict[str, ApiRequest]:
    """Every request the adapter builds (documented absences left out)."""
    built = {}
    for name, calls in _builder_calls().items():
        build = getattr(adapter, name, None)
        for index, args in enumerate(calls if build else ()):
            try:
                built[f"{name}#{index}"] = build(*args)
            except (Unsupported, NotMeasurable):
                pass
    return built


def _check(python: Path, engine: str, argvs: list[list[str]], requests: list[ApiRequest]) -> dict[str, Any]:
    task = {"engine": engine, "commands": argvs, "bodies": [{"path": r.path, "body": r.body} for r in requests]}
    result = subprocess.run(
        [str(python), str(CHECKER)], input=json.dumps(task), capture_output=True, text=True, timeout=300, cwd=REPO_ROOT
    )
    if result.returncode != 0:
        pytest.skip(f"{engine}'s own code could not be loaded here: {result.stderr.strip().splitlines()[-1:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _refusals(names: list[str], verdicts: list[dict[str, Any]]) -> list[str]:
    return [
        f"{name}: {'; '.join(verdict.get('error') or [])}"
        for name, verdict in zip(names, verdicts)
        if verdict["ok"] is False
    ]


@pytest.fixture(scope="module")
def vllm_verdicts(tmp_path_factory) -> dict[str, Any]:
    try:
        python = vllm_python(cache_dir())
    except EnvUnavailable as exc:
        pytest.skip(str(exc))
    cpu, gpu = get_adapter("vLLM"), get_adapter("vLLM")
    gpu.use_container(spec_named("vllm"))
    tmp = tmp_path_factory.mktemp("vllm-contract")
    argvs = {
        **{f"cpu/{k}": v for k, v in commands(cpu, tmp).items()},
        **{f"gpu/{k}": v for k, v in commands(gpu, tmp).items()},
    }
    requests = {**{f"cpu/{k}": v for k, v in bodies(cpu).items()}, **{f"gpu/{k}": v for k, v in bodies(gpu).items()}}
    verdicts = _check(python, "vllm", [*argvs.values(), BAD_COMMAND], [*requests.values(), BAD_BODY])
    return {
        "commands": dict(zip([*argvs, "control"], verdicts["commands"])),
        "bodies": dict(zip([*requests, "control"], verdicts["bodies"])),
    }


@pytest.fixture(scope="module")
def sglang_verdicts(tmp_path_factory) -> dict[str, Any]:
    package = spec_named("sglang").package
    assert package is not None
    try:
        python = sglang_python(cache_dir(), package.version)
    except EnvUnavailable as exc:
        pytest.skip(str(exc))
    cpu, gpu = get_adapter("SGLang"), get_adapter("SGLang")  # its CPU path (process launcher) and its GPU image
    gpu.use_container(spec_named("sglang"))
    tmp = tmp_path_factory.mktemp("sglang-contract")
    argvs = {
        **{f"cpu/{k}": v for k, v in commands(cpu, tmp).items()},
        **{f"gpu/{k}": v for k, v in commands(gpu, tmp).items()},
    }
    requests = {name: request for name, request in bodies(gpu).items() if request.path.startswith("/v1/")}
    verdicts = _check(python, "sglang", [*argvs.values(), BAD_COMMAND], [*requests.values(), BAD_BODY])
    return {
        "commands": dict(zip([*argvs, "control"], verdicts["commands"])),
        "bodies": dict(zip([*requests, "control"], verdicts["bodies"])),
    }


def test_contract_versions_are_the_pinned_ones():
    assert spec_named("vllm").package.version == vllm_cpu.PACKAGE_VERSION  # type: ignore[union-attr]
    assert spec_named("vllm").image.endswith(f":v{vllm_cpu.PACKAGE_VERSION}")
    sglang = spec_named("sglang")
    assert sglang.image.endswith(f":v{sglang.package.version}")  # type: ignore[union-attr]
    trt = spec_named("tensorrt-llm")
    assert trt.image.endswith(f":{TRT['pinned_release']}") and trt.package.version == TRT["pinned_release"]  # type: ignore[union-attr]


def test_every_request_builder_has_a_contract_sample():
    builders = {name for name in dir(EngineAdapter) if name.endswith("_request")}
    assert builders <= set(_builder_calls()), f"add a sample call for {sorted(builders - set(_builder_calls()))}"


def test_vllm_accepts_every_launch_command(vllm_verdicts):
    found = vllm_verdicts["commands"]
    assert found.pop("control")["ok"] is False  # the parser does refuse what it does not know
    assert {"cpu/base", "gpu/base", "gpu/flash_on", "cpu/draft"} <= set(found)
    assert not _refusals(list(found), list(found.values()))


def test_vllm_models_accept_every_request_body(vllm_verdicts):
    found = vllm_verdicts["bodies"]
    control = found.pop("control")
    assert control["ok"] is False and control["unknown"] == ["guided_json"]
    assert len(found) >= 8
    assert not _refusals(list(found), list(found.values()))


def test_sglang_accepts_every_launch_command(sglang_verdicts):
    found = sglang_verdicts["commands"]
    assert found.pop("control")["ok"] is False
    assert {"cpu/base", "gpu/base", "gpu/draft", "gpu/tp2", "gpu/pp2"} <= set(found)
    assert not _refusals(list(found), list(found.values()))


def test_sglang_openai_models_accept_every_request_body(sglang_verdicts):
    found = sglang_verdicts["bodies"]
    assert found.pop("control")["ok"] is False
    assert found, "no OpenAI-route body to check"
    assert not _refusals(list(found), list(found.values()))


def _trt_command_problems(argv: list[str]) -> list[str]:
    """What trtllm-serve's `serve` (click: options, flags, one MODEL argument) would refuse in `argv`."""
    serve = TRT["serve"]
    problems, positional, index = [], [], 0
    while index < len(argv):
        token = argv[index]
        if token in serve["flags"]:
            index += 1
        elif token in serve["options"]:
            value = argv[index + 1] if index + 1 < len(argv) else None
            if value is None:
                problems.append(f"{token} needs a value")
            elif token in serve["choices"] and value not in serve["choices"][token]:
                problems.append(f"{token} {value}: not one of {serve['choices'][token]}")
            index += 2
        elif token.startswith("--"):
            problems.append(f"no such option {token}")
            index += 1
        else:
            positional.append(token)
            index += 1
    if len(positional) != len(serve["positional"]):
        problems.append(f"expected {len(serve['positional'])} positional argument(s), got {positional}")
    return problems


def _trt_body_problems(request: ApiRequest) -> list[str]:
    allowed = TRT["models"].get(request.path)
    if allowed is None:
        return []
    problems = [f"unknown field {name} (extra='forbid')" for name in sorted(set(request.body) - set(allowed))]
    response_format = request.body.get("response_format")
    if response_format:
        spec = TRT["models"]["response_format"]
        problems += [f"response_format.{key} unknown" for key in set(response_format) - set(spec["fields"])]
        if response_format.get("type") not in spec["type"]:
            problems.append(f"response_format.type {response_format.get('type')!r} unknown")
    return problems


def test_trtllm_serve_accepts_every_launch_command(tmp_path):
    adapter = get_adapter("TensorRT-LLM")
    built = commands(adapter, tmp_path)
    assert _trt_command_problems(BAD_COMMAND[2:] + ["/m"]), "the control must be refused"
    assert "--max_beam_width" in built["beam"] and "--max_beam_width" not in built["base"]
    problems = {
        name: _trt_command_problems(argv[1:] if argv[:1] == ["serve"] else argv) for name, argv in built.items()
    }
    assert not {name: found for name, found in problems.items() if found}


def test_trtllm_completion_bodies_have_only_fields_its_models_define():
    adapter = get_adapter("TensorRT-LLM")
    assert _trt_body_problems(BAD_BODY) == ["unknown field guided_json (extra='forbid')"]
    checked = {name: request for name, request in bodies(adapter).items() if request.path == "/v1/completions"}
    assert len(checked) >= 4
    problems = {name: _trt_body_problems(request) for name, request in checked.items()}
    assert not {name: found for name, found in problems.items() if found}
