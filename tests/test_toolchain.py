"""The llama.cpp build cache: a build is reused only when it was made with today's flags."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from harness.toolchain import llama_cpp_python, llamacpp


def _fake_build(cache: Path, cmake_args: list[str], include: str | None = llamacpp.LEAN_PROJECT_INCLUDE) -> None:
    root = llamacpp.build_dir_for(cache, "cpu")
    (root / "bin").mkdir(parents=True)
    for target in llamacpp.TARGETS:
        (root / "bin" / target).write_text("")
    (root / "build.json").write_text(
        json.dumps({"package_version": llamacpp.PACKAGE_VERSION, "cmake_args": cmake_args, "project_include": include})
    )


def test_build_with_todays_flags_is_reused(tmp_path: Path) -> None:
    _fake_build(tmp_path, list(llamacpp.cmake_args_for("cpu")))
    build = llamacpp.find_build(tmp_path, "cpu")
    assert build is not None and build.server == llamacpp.build_dir_for(tmp_path, "cpu") / "bin" / "llama-server"


def test_build_with_other_flags_is_not_reused(tmp_path: Path) -> None:
    """A cache from an older harness (a `-march=native` build, or one without the lean project include) is rebuilt,
    not trusted."""
    _fake_build(tmp_path, list(llamacpp.BASE_CMAKE_ARGS))
    assert llamacpp.find_build(tmp_path, "cpu") is None


def test_build_without_todays_project_include_is_not_reused(tmp_path: Path) -> None:
    _fake_build(tmp_path, list(llamacpp.cmake_args_for("cpu")), include=None)
    assert llamacpp.find_build(tmp_path, "cpu") is None


def test_each_flag_set_has_its_own_folder() -> None:
    """A build with other flags goes beside the cached one (a change of flags never deletes a build in use)."""
    cache = Path("/c")
    folders = {llamacpp.build_dir_for(cache, backend) for backend in ("cpu", "cuda", "metal")}
    assert len(folders) == 3 and all(folder.parent == cache / "llama.cpp" for folder in folders)
    assert llamacpp.project_include_for("cpu") == llamacpp.LEAN_PROJECT_INCLUDE
    assert llamacpp.project_include_for("cuda") is None and "-DCMAKE_UNITY_BUILD=ON" not in llamacpp.cmake_args_for(
        "cuda"
    )


def test_build_progress_reads_make_and_ninja_steps() -> None:
    for lines in (
        [f"[{percent:3d}%] Building CXX object x.o" for percent in range(101)],
        [f"[{step}/98] Building CXX object x.o" for step in range(1, 99)],
    ):
        seen: list[str] = []
        on_line = llamacpp.compile_progress(seen.append)
        for line in lines:
            on_line(line)
        on_line("-- Configuring done")
        assert len(seen) == 10 and seen[0] == "compiling llama.cpp: 10%" and seen[-1].endswith(": 100%"), seen


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the portable flags are for x86-64")
def test_cpu_build_is_portable_on_x86() -> None:
    args = llamacpp.cmake_args_for("cpu")
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX2=ON" in args


def test_unknown_backend_is_a_clear_error() -> None:
    with pytest.raises(llamacpp.LlamaCppBuildError, match="unknown llama.cpp backend 'rocm'"):
        llamacpp.cmake_args_for("rocm")


def _fake_lcp_install(cache: Path, cmake_args: list[str]) -> Path:
    root = llama_cpp_python.install_dir(cache, "cpu")
    (root / "venv" / "bin").mkdir(parents=True)
    (root / "venv" / "bin" / "python").write_text("")
    (root / "install.json").write_text(
        json.dumps({"package_version": llama_cpp_python.PACKAGE_VERSION, "cmake_args": cmake_args})
    )
    return root


def test_llama_cpp_python_install_is_reused_only_with_todays_flags(tmp_path: Path) -> None:
    root = _fake_lcp_install(tmp_path, list(llama_cpp_python.cmake_args_for("cpu")))
    install = llama_cpp_python.find_install(tmp_path, "cpu")
    assert install is not None and install.python == root / "venv" / "bin" / "python"
    (root / "install.json").write_text(
        json.dumps({"package_version": llama_cpp_python.PACKAGE_VERSION, "cmake_args": ["-DGGML_NATIVE=ON"]})
    )
    assert llama_cpp_python.find_install(tmp_path, "cpu") is None


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the portable flags are for x86-64")
def test_llama_cpp_python_build_is_portable_and_lean() -> None:
    args = llama_cpp_python.cmake_args_for("cpu")
    assert "-DGGML_NATIVE=OFF" in args and "-DGGML_AVX2=ON" in args and "-DLLAVA_BUILD=OFF" in args
    assert llama_cpp_python.install_dir(Path("/c"), "cpu") != llama_cpp_python.install_dir(Path("/c"), "cuda")


def test_llama_cpp_python_build_progress_reads_ninja_steps() -> None:
    seen: list[str] = []
    on_line = llama_cpp_python._ninja_progress(seen.append)
    for step in range(1, 141):
        on_line(f"  [{step}/140] /usr/bin/g++ -c x.cpp")
    assert seen[0].endswith(" 10%") and seen[-1].endswith(" 100%") and len(seen) == 10
