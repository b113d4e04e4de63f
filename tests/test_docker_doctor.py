"""`infercheck doctor` without the Docker SDK, and on a (faked) Apple Silicon Mac; the Metal build arguments."""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Iterator

import pytest

from harness.cli import doctor
from harness.host import apple, provenance
from harness.toolchain import llamacpp as toolchain


def test_doctor_reports_everything_without_the_docker_sdk(monkeypatch):
    for name in [name for name in sys.modules if name == "docker" or name.startswith(("docker.", "harness.docker."))]:
        if name != "harness.docker.specs":
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "docker", None)  # `import docker` raises ImportError
    report = doctor.diagnose()
    docker_check = next(check for check in report.checks if check.name == "docker")
    assert not docker_check.ok and docker_check.detail == doctor.NO_SDK
    assert {check.name for check in report.checks} >= {"docker", "gpus", "nvidia runtime", "disk for images"}
    assert all(
        not verdict.runnable and any(doctor.NO_SDK in note for note in verdict.notes)
        for verdict in report.engines
        if verdict.how.startswith("docker:")
    )
    assert "llama.cpp" in {verdict.engine for verdict in report.engines if verdict.how == "process"}


@pytest.fixture
def apple_mac(monkeypatch) -> Iterator[None]:
    """This host as an M3 Max Mac with Metal 3 (platform and the system tools faked)."""
    monkeypatch.setattr(platform, "system", lambda: "Darwin")
    monkeypatch.setattr(platform, "machine", lambda: "arm64")
    answers = {
        "sysctl": "Apple M3 Max",
        "system_profiler": json.dumps(
            {
                "SPDisplaysDataType": [
                    {"sppci_model": "Apple M3 Max", "spdisplays_mtlgpufamilysupport": "spdisplays_metal3"}
                ]
            }
        ),
    }
    monkeypatch.setattr(apple, "_run", lambda command: answers.get(command[0]))
    monkeypatch.delenv("INFERCHECK_LLAMA_BACKEND", raising=False)
    cached = (provenance.host_info, provenance.isa_level)  # this host's facts, cached by earlier tests
    for function in cached:
        function.cache_clear()
    yield
    for function in cached:
        function.cache_clear()


def test_apple_silicon_chip_and_metal_in_provenance(apple_mac, monkeypatch):
    monkeypatch.setattr(provenance, "gpu_names", lambda: [])
    assert apple.apple_chip() == "Apple M3 Max" and apple.metal_family() == "metal3"
    assert provenance.host_info().accelerators == ["Apple M3 Max GPU (Metal metal3, unified memory)"]


def test_llama_cpp_builds_with_metal_on_apple_silicon(apple_mac):
    assert toolchain.default_backend() == "metal"
    args = toolchain.cmake_args_for("metal")
    assert "-DGGML_METAL=ON" in args and "-DGGML_METAL_EMBED_LIBRARY=ON" in args
    assert not any(arg.startswith("-DGGML_AVX") for arg in args)  # no x86 flags on arm64


def test_doctor_on_apple_silicon_names_the_chip_and_points_to_the_process_launcher(apple_mac, monkeypatch):
    monkeypatch.setattr(doctor, "gpu_names", lambda: [])
    report = doctor.diagnose()
    checks = {check.name: check for check in report.checks}
    assert "Apple M3 Max" in checks["apple silicon"].detail and "metal" in checks["apple silicon"].detail
    assert checks["metal"].ok and checks["metal"].detail == "metal3"
    vllm = next(verdict for verdict in report.engines if verdict.how == "docker:vllm")
    assert any("process launcher" in note for note in vllm.notes)


def test_apple_checks_are_absent_elsewhere(monkeypatch):
    monkeypatch.setattr(platform, "system", lambda: "Linux")
    assert apple.apple_chip() is None and apple.apple_accelerators() == [] and doctor._apple_checks() == []
