"""Provenance: which host and which harness build produced a record."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from functools import lru_cache

from harness import __version__
from harness.host.apple import apple_accelerators, apple_chip
from harness.paths import REPO_ROOT
from harness.records.results import HarnessInfo, HostInfo


@lru_cache(maxsize=1)
def host_info() -> HostInfo:
    """CPU, memory and accelerators of this machine."""
    return HostInfo(
        hostname=socket.gethostname(),
        platform=platform.platform(),
        cpu=_cpu_model(),
        cpu_count=os.cpu_count() or 1,
        memory_gib=round(_memory_bytes() / 2**30, 1),
        accelerators=gpu_names() or apple_accelerators(),
        isa_level=isa_level(),
    )


@lru_cache(maxsize=1)
def isa_level() -> str:
    """The instruction-set level engines compute with here (part of the measurement context): the first NVIDIA
    GPU's model on a GPU host, `apple-<chip>` on Apple silicon, else the CPU's level (`cpu_isa_level`)."""
    gpus = gpu_names()
    if gpus:
        return gpus[0].split(",")[0].strip()
    chip = apple_chip()
    if chip:
        return "apple-" + "-".join(chip.lower().removeprefix("apple").split())
    return cpu_isa_level(_cpu_flags(), platform.machine())


def cpu_isa_level(flags: set[str], machine: str) -> str:
    """`avx512+amx`, `avx512`, `avx2` or `x86-64` (older) on x86 from /proc/cpuinfo's flags; `arm64+sve` or
    `arm64` on Arm; else the machine name. AVX-512 counts from the foundation (avx512f); AMX from its tiles."""
    if machine.lower() in ("x86_64", "amd64", "i686", "i386"):
        if "avx512f" in flags:
            return "avx512+amx" if "amx_tile" in flags else "avx512"
        return "avx2" if "avx2" in flags else "x86-64"
    if machine.lower() in ("aarch64", "arm64"):
        return "arm64+sve" if "sve" in flags else "arm64"
    return machine.lower() or "cpu"


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (`flags` on x86, `Features` on Arm in /proc/cpuinfo); empty where there is none."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def harness_info() -> HarnessInfo:
    """The harness version and the git commit it runs from (dirty when its code has local edits)."""
    commit = _git("rev-parse", "HEAD")
    return HarnessInfo(version=__version__, git_commit=commit, git_dirty=None if commit is None else git_dirty())


# The harness's own outputs: edits there never make a run dirty (records, the report, logs).
OUTPUT_PATHS = ("results", "report", "logs")
# Code whose untracked files would change what a run measures.
CODE_PATHS = ("harness", "probes", "containers", "model-sets", "conftest.py", "pyproject.toml")


def git_dirty() -> bool | None:
    """Whether the tree has uncommitted changes outside the harness's outputs, or untracked code files."""
    excluded = [f":(exclude){path}" for path in OUTPUT_PATHS]
    tracked = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)
    untracked = _git("status", "--porcelain", "--untracked-files=all", "--", *CODE_PATHS)
    if tracked is None or untracked is None:
        return None
    return bool(tracked) or any(line.startswith("??") for line in untracked.splitlines())


def gpu_names() -> list[str]:
    """NVIDIA GPUs as nvidia-smi lists them (empty on a CPU-only host)."""
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _git(*args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None
