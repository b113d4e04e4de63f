"""SGLang's CPU path (SGLANG_USE_CPU_ENGINE=1, torch-native attention), installed by harness/toolchain/sglang_cpu.py.

The first tests need no engine: the install's two workarounds (torchvision's guarded fake-op registrations, the
`sgl_kernel` module whose names all raise) and what the adapter refuses on the CPU path, with why. The engine tests
share one launch (about a minute on 2 cores; the install, a few minutes, is cached): a probe that passes there, and
the same probe failing on a launch without the feature (`--grammar-backend none`).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.docker.specs import spec_named
from harness.engines.base import LaunchSpec, ResolvedModels
from harness.engines.sglang import CPU_PATH, SglangAdapter
from harness.launch.base import RunningEngine
from harness.models import ModelArtifact
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import cache_dir
from harness.probing.session import EnginePool
from harness.records.results import Status
from harness.toolchain import sgl_kernel_cpu_absent, sglang_cpu
from probes.test_grammar import check_grammar
from probes.test_model_families import check_matches_reference

# torchvision 0.28.0's _meta_registrations.py, the lines the guard rewrites and one it leaves (already guarded)
TORCHVISION_META = """@register_meta("roi_align")
def meta_roi_align(input, rois):
    pass


@torch.library.register_fake("torchvision::nms")
def meta_nms(dets, scores, iou_threshold):
    pass


@torch.library.register_fake("torchvision::qnms")
def meta_qnms(dets, scores, iou_threshold):
    pass
"""


def test_torchvision_fake_registrations_are_guarded():
    patched, count = sglang_cpu.guard_torchvision_meta(TORCHVISION_META)
    assert count == 2
    assert patched.count("if torchvision.extension._has_ops() else (lambda fn: fn))") == 2
    assert '@register_meta("roi_align")' in patched
    assert sglang_cpu.guard_torchvision_meta(patched)[1] == 0  # guarding twice changes nothing


def test_the_installed_sgl_kernel_computes_nothing():
    """Installed as `sgl_kernel`: every name the CPU path imports is there, and each raises when called, naming
    what it would compute; it registers no torch.ops.sgl_kernel op (so SGLang's AMX check stays false)."""
    spec = importlib.util.spec_from_file_location("sgl_kernel", sgl_kernel_cpu_absent.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "verify_tree_greedy_cpu" in sgl_kernel_cpu_absent.ABSENT
    for name in sgl_kernel_cpu_absent.ABSENT:
        with pytest.raises(NotImplementedError, match=f"sgl_kernel.{name} .*no CPU build on PyPI, and no stand-in"):
            getattr(module, name)(None)
    assert "sgl_kernel" not in sys.modules


def test_cpu_path_refuses_what_needs_kernels(tmp_path: Path):
    adapter = SglangAdapter()
    assert adapter.device == "cpu"
    with pytest.raises(NotMeasurable, match="verify_tree_greedy_cpu.*sampling math"):
        adapter.check_launchable(LaunchSpec(draft_model="llama-draft"), devices=0)
    with pytest.raises(NotMeasurable, match="kernel-level.*torch_native"):
        adapter.check_launchable(LaunchSpec(flash_attention=True), devices=0)
    with pytest.raises(NotMeasurable, match="AWQ"):
        adapter.check_launchable(LaunchSpec(model_format="awq"), devices=0)
    with pytest.raises(Unsupported, match="not exl2"):  # the documented absence holds on the CPU path too
        adapter.check_launchable(LaunchSpec(model_format="exl2"), devices=0)
    adapter.check_launchable(LaunchSpec(), devices=0)
    command = adapter.launch_command(LaunchSpec(prefix_caching=False), ResolvedModels(model=tmp_path), 8000)
    assert command[command.index("--device") + 1] == "cpu"
    assert command[command.index("--attention-backend") + 1] == "torch_native"
    assert command[command.index("--dtype") + 1] == "float32" == adapter.compute_dtype(LaunchSpec())
    assert "--disable-radix-cache" in command and "--enable-cache-report" in command and "--sleep-on-idle" in command
    assert adapter.launch_env(LaunchSpec())["SGLANG_USE_CPU_ENGINE"] == "1"
    build = adapter.cpu_build()
    assert build["path"] == CPU_PATH and build["stand_ins"] == []
    assert build["absent_kernels"] == list(sgl_kernel_cpu_absent.ABSENT)
    adapter.use_container(spec_named("sglang"))  # its GPU image: the container path, GPUs counted
    with pytest.raises(NotMeasurable, match="needs an NVIDIA GPU"):
        adapter.check_launchable(LaunchSpec(), devices=0)


def test_grammar_backend_from_the_logged_server_args(tmp_path: Path):
    log = tmp_path / "sglang.log"
    log.write_text("[2026-12-03 13:58:45] server_args={'model_path': 'm', 'grammar_backend': 'xgrammar', 'x': 1}\n")
    running = RunningEngine(base_url="http://127.0.0.1:9", log_path=log)
    assert SglangAdapter().structured_output_backend(running) == "SGLang grammar backend=xgrammar"


class NoGrammarBackendAdapter(SglangAdapter):
    """SGLang's CPU path launched with `--grammar-backend none`: no structured-output backend."""

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        return [*super().launch_command(spec, models, port), "--grammar-backend", "none"]


def _pool(adapter: SglangAdapter, artifacts: list[ModelArtifact], folder: Path) -> EnginePool:
    sglang_cpu.ensure_install(cache_dir(), progress=lambda message: None)
    return EnginePool(adapter, artifacts, folder)


@pytest.fixture(scope="module")
def sglang_pool(artifacts: list[ModelArtifact], tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnginePool]:
    pool = _pool(SglangAdapter(), artifacts, tmp_path_factory.mktemp("sglang-cpu"))
    yield pool
    pool.close()


@pytest.mark.engine_integration
@pytest.mark.engine
def test_identity_says_cpu_torch_native(sglang_pool):
    session = sglang_pool.session(LaunchSpec())
    assert (session.identity.version, session.identity.package_version) == (sglang_cpu.PACKAGE_VERSION,) * 2
    assert session.identity.build["path"] == CPU_PATH and session.identity.build["stand_ins"] == []


@pytest.mark.engine_integration
@pytest.mark.engine
def test_grammar(sglang_pool):
    """xgrammar (its default backend) holds the ebnf grammars, judged against the reference's constrained argmax."""
    verdict = check_grammar(sglang_pool.session(LaunchSpec()))
    assert verdict.status is Status.PASS, verdict.evidence.numbers


@pytest.mark.engine_integration
@pytest.mark.engine
def test_model_llama_matches_the_reference(sglang_pool):
    session = sglang_pool.session(LaunchSpec())
    verdict = check_matches_reference(session, session.model.references)
    assert verdict.status is Status.PASS, verdict.evidence.numbers


@pytest.mark.engine_integration
@pytest.mark.engine
def test_grammar_without_a_grammar_backend(artifacts, tmp_path):
    """Measured: with `--grammar-backend none` every ebnf request is refused (HTTP 400)."""
    pool = _pool(NoGrammarBackendAdapter(), artifacts, tmp_path)
    try:
        verdict = check_grammar(pool.session(LaunchSpec()))
    finally:
        pool.close()
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
