"""Provenance: which host and which harness build produced a record."""

from __future__ import annotations

import os
import platform
import shutil
import socket
import subprocess
from functools import lru_cache

from harness import __version__
from harness.host.apple import apple_accelerators
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
    )


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
