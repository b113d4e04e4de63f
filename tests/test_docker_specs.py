"""Container specs: every engine loads, cites its sources and pins its image; the spec holds no command (the
adapter owns it: one source of truth per launch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness.docker.specs import SpecError, all_specs, image_tag, load_spec, select_spec, spec_named
from harness.engines import adapter_classes
from harness.paths import REPO_ROOT
from harness.toolchain import llamacpp as toolchain

SEED_ENGINES = {"vLLM", "TensorRT-LLM", "llama.cpp", "TGI", "LightLLM", "Fastgen", "ExLlamaV2", "SGLang"}


def test_every_column_has_a_spec():
    assert SEED_ENGINES | {"ExLlamaV3"} <= {spec.engine for spec in all_specs()}
    columns = set(json.loads((REPO_ROOT / "report" / "claims.json").read_text())["engines"])
    assert {spec.engine for spec in all_specs()} <= columns | {"SGLang", "ExLlamaV3", "llama-cpp-python"}


@pytest.mark.parametrize("spec", all_specs(), ids=lambda spec: spec.name)
def test_spec_is_sourced_pinned_and_names_its_adapter(spec):
    assert any(source.startswith("https://") for source in spec.sources)
    assert image_tag(spec.image) not in ("latest", "main") or spec.moving_tag_reason
    assert spec.pin_checked.year >= 2026
    assert spec.engine in adapter_classes()
    if spec.build is not None:
        assert (spec.folder / spec.build.dockerfile).is_file()
    assert spec.health.startswith("/") and 0 < spec.port < 65536


def test_specs_hold_no_launch_commands():
    """The adapters build every command that runs; a spec's `launch:` section was tested but never used."""
    for spec in all_specs():
        assert "launch:" not in (spec.folder / "spec.yaml").read_text()


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


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image": "vllm/vllm-openai:latest"}, "not pinned"),
        ({"sources": ["my notes"]}, "cite"),
        ({"launch": {"base": {"args": []}}}, "Extra inputs"),
        ({"pin_checked": "yesterday"}, "pin_checked"),
        ({"color": "blue"}, "Extra inputs"),
    ],
)
def test_invalid_specs_are_rejected(tmp_path: Path, change, message):
    spec = {**yaml.safe_load((spec_named("vllm").folder / "spec.yaml").read_text()), **change}
    path = tmp_path / "broken" / "spec.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(SpecError, match=message):
        load_spec(path)
