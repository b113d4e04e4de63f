"""Synthetic models: deterministic, cached, and reproduced exactly by a real llama-server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch
from gguf import GGUFReader
from transformers import AutoModelForCausalLM, AutoTokenizer

from harness.launch.base import free_port
from harness.launch.process import ProcessLauncher
from harness.models import ModelArtifact, ensure_models, find_artifact
from harness.models.cache import MANIFEST, recipe_version
from harness.models.recipe import MODEL_SPECS, NEW_TOKENS, PROMPTS_PER_MODEL, QUANT_TYPES, SLIDING_WINDOW
from harness.toolchain.llamacpp import LlamaCppBuild

MODEL_NAMES = [spec.name for spec in MODEL_SPECS]
WINDOWED = {spec.name for spec in MODEL_SPECS if "sliding_window" in spec.overrides}
TOKENIZER_SAMPLES = (
    '{"name": "alice", "age": 31, "tags": ["red", "blue"]}',
    "Hello,  World!\n\n  12345 67.89",
    "ünïcode ✓ 日本 it's we'll",
    '   leading spaces\ttab [1,2,3]{}":,',
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def artifacts(cache: Path, llama_build: LlamaCppBuild) -> list[ModelArtifact]:
    return ensure_models(cache, llama_build.quantize)


def test_every_model_has_hf_and_f16_with_references(artifacts: list[ModelArtifact]) -> None:
    for name in MODEL_NAMES:
        hf, f16 = find_artifact(artifacts, name, "hf"), find_artifact(artifacts, name, "f16")
        assert (hf.path / "model.safetensors").is_file() and f16.path.is_file()
        assert hf.references == f16.references
        assert len(hf.references) == PROMPTS_PER_MODEL
        for case in hf.references:
            assert len(case.greedy_ids) == NEW_TOKENS and len(set(case.greedy_ids)) > 1
            assert len(case.top_logprobs) == len(case.top_token_ids)


def test_cache_is_reused(cache: Path, artifacts: list[ModelArtifact], llama_build: LlamaCppBuild) -> None:
    manifest = cache / "models" / recipe_version() / MANIFEST
    written = manifest.stat().st_mtime_ns
    started = time.monotonic()
    again = ensure_models(cache, llama_build.quantize)
    assert time.monotonic() - started < 2
    assert again == artifacts
    assert manifest.stat().st_mtime_ns == written


def test_synthesis_is_deterministic_and_half_built_cache_is_rebuilt(
    tmp_path: Path, artifacts: list[ModelArtifact]
) -> None:
    leftover = tmp_path / "models" / recipe_version() / "leftover"
    leftover.mkdir(parents=True)
    rebuilt = ensure_models(tmp_path, None)
    assert not leftover.exists()
    assert {(a.name, a.format, a.sha256) for a in rebuilt} == {
        (a.name, a.format, a.sha256) for a in artifacts if a.format not in QUANT_TYPES
    }
    assert [a.references for a in rebuilt] == [a.references for a in artifacts if a.format not in QUANT_TYPES]


def test_find_artifact_names_what_exists(artifacts: list[ModelArtifact]) -> None:
    with pytest.raises(KeyError, match="llama/f16"):
        find_artifact(artifacts, "llama", "q2_k")


@contextmanager
def _server(server: Path, model: Path, log: Path) -> Iterator[httpx.Client]:
    """A llama-server on `model`, ready, as an HTTP client; stopped afterwards."""
    launcher = ProcessLauncher()
    port = free_port()
    running = launcher.start(
        [str(server), "-m", str(model), "--port", str(port), "--host", "127.0.0.1", "-c", "512"],
        port,
        "/health",
        log,
        timeout_s=30,
    )
    try:
        with httpx.Client(base_url=running.base_url, timeout=30) as client:
            yield client
    finally:
        launcher.stop()


def _greedy(client: httpx.Client, prompt: str) -> dict:
    body = {"prompt": prompt, "n_predict": NEW_TOKENS, "temperature": 0, "top_k": 1, "cache_prompt": False}
    return client.post("/completion", json=body | {"return_tokens": True}).json()


@pytest.mark.engine_integration
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_llama_server_reproduces_f16_reference(
    artifacts: list[ModelArtifact], name: str, llama_build: LlamaCppBuild, tmp_path: Path
) -> None:
    artifact = find_artifact(artifacts, name, "f16")
    tokenizer = AutoTokenizer.from_pretrained(find_artifact(artifacts, name, "hf").path)
    with _server(llama_build.server, artifact.path, tmp_path / "server.log") as client:
        for text in TOKENIZER_SAMPLES:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            assert client.post("/tokenize", json={"content": text}).json()["tokens"] == ids, text
        for case in artifact.references:
            assert client.post("/tokenize", json={"content": case.prompt}).json()["tokens"] == case.prompt_ids
            if name not in WINDOWED:  # llama.cpp's "llama" arch has no sliding window: the model-family probe's finding
                assert _greedy(client, case.prompt)["content"] == case.greedy_text, case.prompt


def test_mistral_window_is_shorter_than_its_prompts_and_in_the_gguf(artifacts: list[ModelArtifact]) -> None:
    hf = find_artifact(artifacts, "mistral", "hf")
    assert json.loads((hf.path / "config.json").read_text())["sliding_window"] == SLIDING_WINDOW
    assert all(len(case.prompt_ids) > 3 * SLIDING_WINDOW for case in hf.references)
    fields = GGUFReader(find_artifact(artifacts, "mistral", "f16").path).fields
    assert int(fields["llama.attention.sliding_window"].contents()) == SLIDING_WINDOW
    assert "llama.attention.sliding_window" not in GGUFReader(find_artifact(artifacts, "llama", "f16").path).fields


def test_mixtral_routes_to_all_eight_experts(artifacts: list[ModelArtifact]) -> None:
    model = AutoModelForCausalLM.from_pretrained(find_artifact(artifacts, "mixtral", "hf").path)
    case = find_artifact(artifacts, "mixtral", "hf").references[0]
    assert (model.config.num_local_experts, model.config.num_experts_per_tok) == (8, 2)
    with torch.no_grad():
        routers = model(input_ids=torch.tensor([case.prompt_ids + case.greedy_ids]), output_router_logits=True)
    chosen = {int(expert) for layer in routers.router_logits for expert in layer.topk(2, dim=-1).indices.flatten()}
    assert len(chosen) == 8


def test_bad_draft_never_predicts_what_the_draft_does(artifacts: list[ModelArtifact]) -> None:
    good, bad = (
        AutoModelForCausalLM.from_pretrained(find_artifact(artifacts, name, "hf").path)
        for name in ("llama-draft", "llama-draft-bad")
    )
    case = find_artifact(artifacts, "llama", "hf").references[0]
    ids = torch.tensor([case.prompt_ids + case.greedy_ids])
    with torch.no_grad():
        assert not (good(input_ids=ids).logits.argmax(-1) == bad(input_ids=ids).logits.argmax(-1)).any()


def test_dtype_spread_is_measured(artifacts: list[ModelArtifact]) -> None:
    for name in ("llama", "mistral", "mixtral"):
        spread = find_artifact(artifacts, name, "hf").dtype_spread
        assert set(spread) == {"bfloat16", "float16"}
        assert all(0 < value.max_logprob_diff < 1 and value.prompts == PROMPTS_PER_MODEL for value in spread.values())


@pytest.mark.engine_integration
@pytest.mark.parametrize("fmt", sorted(QUANT_TYPES))
def test_quantized_models_load_and_keep_the_tokenizer(
    artifacts: list[ModelArtifact], fmt: str, llama_build: LlamaCppBuild, tmp_path: Path
) -> None:
    for name in MODEL_NAMES:
        artifact = find_artifact(artifacts, name, fmt)
        with _server(llama_build.server, artifact.path, tmp_path / f"{name}.log") as client:
            case = artifact.references[0]
            assert client.post("/tokenize", json={"content": case.prompt}).json()["tokens"] == case.prompt_ids
            assert len(_greedy(client, case.prompt)["tokens"]) == NEW_TOKENS
