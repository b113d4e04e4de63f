"""Install llama-cpp-python's OpenAI server (PyPI `llama-cpp-python[server]`) into its own cached virtual environment.

PyPI carries only the sdist for Linux, so pip compiles the vendored llama.cpp (about 15 minutes on 2 cores). We build
it once per version and flag set into `<cache>/llama-cpp-python/<version>-<backend>-<flags hash>/venv`:
- x86-64 targets AVX2/FMA/F16C, not `-march=native` (the same flags as our llama-server build, for the same reason:
  a native build died with SIGILL in its AMX kernels on a Xeon under KVM);
- lean: no multimodal library (`LLAVA_BUILD=OFF`; no probe sends images), no tests, tools or examples;
- `--no-binary` and `--no-cache-dir`, so pip never reuses a wheel it built earlier with other flags (its wheel cache
  is keyed by the sdist, not by CMAKE_ARGS).
The server runs as `python -m llama_cpp.server`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.toolchain.environment import VenvInstall, create_venv
from harness.toolchain.llamacpp import backend_cmake_args, compile_progress, default_backend
from harness.toolchain.logged import pip_progress, run_logged

PACKAGE = "llama-cpp-python"
PACKAGE_VERSION = "0.3.36"
LEAN_CMAKE_ARGS = (
    "-DLLAVA_BUILD=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_TOOLS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
)
DEFAULT_BUILD_JOBS = 2  # the machines this runs on in CI have 2 cores shared with other work


class LlamaCppPythonInstallError(RuntimeError):
    """The llama-cpp-python environment could not be made (an unknown backend: LlamaCppBuildError)."""


@dataclass(frozen=True)
class LlamaCppPythonInstall(VenvInstall):
    """A ready llama-cpp-python environment."""

    backend: str
    cmake_args: tuple[str, ...]


def cmake_args_for(backend: str) -> tuple[str, ...]:
    """The CMAKE_ARGS of one build flavour on this machine's architecture (ggml's flags as for llama-server)."""
    return LEAN_CMAKE_ARGS + backend_cmake_args(backend)


def install_dir(cache: Path, backend: str) -> Path:
    """The cache folder of one version and flag set."""
    flags = hashlib.sha256(" ".join(cmake_args_for(backend)).encode()).hexdigest()[:10]
    return cache / "llama-cpp-python" / f"{PACKAGE_VERSION}-{backend}-{flags}"


def find_install(cache: Path, backend: str | None = None) -> LlamaCppPythonInstall | None:
    """A finished install in the cache made with today's version and flags, or None."""
    backend = backend or default_backend()
    root = install_dir(cache, backend)
    manifest = root / "install.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    if data.get("package_version") != PACKAGE_VERSION or data.get("cmake_args") != list(cmake_args_for(backend)):
        return None
    install = LlamaCppPythonInstall(
        root=root, package_version=PACKAGE_VERSION, backend=backend, cmake_args=tuple(data["cmake_args"])
    )
    return install if install.python.exists() else None


def ensure_install(
    cache: Path, backend: str | None = None, jobs: int | None = None, progress: Callable[[str], None] = print
) -> LlamaCppPythonInstall:
    """Return the cached install, building it first if needed (about 15 minutes on 2 cores)."""
    backend = backend or default_backend()
    existing = find_install(cache, backend)
    if existing:
        return existing
    root = install_dir(cache, backend)
    root.mkdir(parents=True, exist_ok=True)
    (root / "install.json").unlink(missing_ok=True)
    cmake_args = cmake_args_for(backend)
    progress(f"creating the llama-cpp-python environment in {root}")
    python = create_venv(root)
    progress(f"building {PACKAGE}=={PACKAGE_VERSION} ({backend}) from source (about 15 minutes on 2 cores)")
    pip_lines = pip_progress(progress)
    compile_lines = _ninja_progress(progress)

    def on_line(line: str) -> None:
        pip_lines(line)
        compile_lines(line)

    command = [
        "env",
        f"CMAKE_ARGS={' '.join(cmake_args)}",
        f"CMAKE_BUILD_PARALLEL_LEVEL={jobs or DEFAULT_BUILD_JOBS}",
        python,
        "-m",
        "pip",
        "install",
        "-v",  # the build's own [step/steps] lines, for progress
        "--no-cache-dir",
        "--no-binary",
        PACKAGE,
        f"{PACKAGE}[server]=={PACKAGE_VERSION}",
    ]
    _run(command, root / "install.log", on_line)
    _run([python, "-c", "import llama_cpp, llama_cpp.server.app"], root / "import-check.log")
    (root / "install.json").write_text(
        json.dumps(
            {
                "package": PACKAGE,
                "package_version": PACKAGE_VERSION,
                "backend": backend,
                "cmake_args": list(cmake_args),
            },
            indent=2,
        )
    )
    progress(f"llama-cpp-python ready in {root / 'venv'}")
    install = find_install(cache, backend)
    assert install is not None
    return install


def _ninja_progress(progress: Callable[[str], None], step: int = 10) -> Callable[[str], None]:
    """A line handler that reports the build's `[done/all]` steps (scikit-build-core builds with Ninja) every
    `step` percent."""
    return compile_progress(progress, step, "llama.cpp for llama-cpp-python")


def _run(command: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> None:
    returncode = run_logged(command, log, on_line)
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise LlamaCppPythonInstallError(f"{' '.join(command[3:8])} … failed (exit {returncode}):\n{tail}")
