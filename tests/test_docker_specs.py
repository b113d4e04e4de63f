"""Container specs: all eight engines load, cite their sources, pin their images and render every configuration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from harness.docker.specs import LAUNCH_CONFIGS, SpecError, all_specs, image_tag, load_spec, select_spec, spec_named
from harness.paths import REPO_ROOT
from harness.toolchain import llamacpp as toolchain

SEED_ENGINES = {"vLLM", "TensorRT-LLM", "llama.cpp", "TGI", "LightLLM", "Fastgen", "ExLlamaV2", "SGLang"}
VALUES = {"model": "/models/llama/hf", "draft_model": "/models/llama-draft/hf", "tp": 2, "pp": 2,
          "quantization": "awq"}


def test_every_seed_engine_and_sglang_has_a_spec():
    assert SEED_ENGINES <= {spec.engine for spec in all_specs()}
    columns = set(json.loads((REPO_ROOT / "report" / "claims.json").read_text())["engines"])
    assert {spec.engine for spec in all_specs()} <= columns | {"SGLang"}


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.name)
def test_spec_is_sourced_pinned_and_renders(spec):
    assert any(source.startswith("https://") for source in spec.sources)
    assert image_tag(spec.image) not in ("latest", "main") or spec.moving_tag_reason
    if spec.build is not None:
        assert (spec.folder / spec.build.dockerfile).is_file()
    for config in LAUNCH_CONFIGS:
        variant = spec.launch[config]
        if variant.unsupported:
            with pytest.raises(SpecError, match=spec.engine):
                spec.command([config], **VALUES)
            continue
        command = spec.command([config], **VALUES)
        assert command[:len(spec.entrypoint)] == spec.entrypoint
        assert not any(re.search(r"\{[a-z_]+\}", arg) for arg in command), command
        assert "0.0.0.0" in command and str(spec.port) in command  # reachable through the published port


def test_configuration_arguments_follow_the_engines_own_flags():
    assert spec_named("vllm").command(["tensor_parallel"], **VALUES)[-2:] == ["--tensor-parallel-size", "2"]
    assert spec_named("sglang").command(["pipeline_parallel"], **VALUES)[-2:] == ["--pp-size", "2"]
    assert spec_named("tgi").command(["quantized"], **VALUES)[-2:] == ["--quantize", "awq"]
    assert json.loads(spec_named("vllm").command(["draft_model"], **VALUES)[-1])["model"] == VALUES["draft_model"]
    tabby = spec_named("exllamav2").command(["draft_model"], **VALUES)
    assert tabby[tabby.index("--draft-model-dir") + 1] == "/models/llama-draft"
    trt = spec_named("tensorrt-llm")
    assert "--extra_llm_api_options" in trt.command(["draft_model"], **VALUES)
    draft_yaml = trt.files(["draft_model"], **VALUES)["/infercheck/draft.yaml"]
    assert "speculative_model_dir: /models/llama-draft/hf" in draft_yaml
    assert "Medusa" in (spec_named("tgi").unsupported(["draft_model"]) or "")


def test_llama_cpp_images_follow_the_pinned_build():
    build_number = toolchain.PACKAGE_VERSION.split(".")[0]
    assert image_tag(spec_named("llama.cpp-cpu").image) == toolchain.PACKAGE_VERSION
    assert image_tag(spec_named("llama.cpp").image) == f"server-cuda-b{build_number}"


def test_selection_by_host():
    assert select_spec("llama.cpp", gpus=0).name == "llama.cpp-cpu"
    assert select_spec("llama.cpp", gpus=2).name == "llama.cpp"
    assert select_spec("LLAMA.CPP", gpus=2, name="llama.cpp-cpu").name == "llama.cpp-cpu"
    with pytest.raises(SpecError, match="no container spec"):
        select_spec("nonexistent", gpus=0)


@pytest.mark.parametrize("change, message", [
    ({"image": "vllm/vllm-openai:latest"}, "not pinned"),
    ({"sources": ["my notes"]}, "cite"),
    ({"launch": {"base": {"args": []}}}, "lacks configurations"),
    ({"color": "blue"}, "Extra inputs"),
])
def test_invalid_specs_are_rejected(tmp_path: Path, change, message):
    spec = {**yaml.safe_load((spec_named("vllm").folder / "spec.yaml").read_text()), **change}
    path = tmp_path / "broken" / "spec.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=message):
        load_spec(path)
