"""Apple Silicon hosts: the chip and its Metal GPU, for doctor, host provenance and the llama.cpp build.

On macOS arm64 llama.cpp builds with Metal and runs with the process launcher (Docker on a Mac
has no GPU). Everything here answers None on other hosts.
"""

from __future__ import annotations

import json
import platform
import subprocess


def is_apple_silicon() -> bool:
    """Whether this is macOS on an Apple (arm64) chip."""
    return platform.system() == "Darwin" and platform.machine() == "arm64"


def _run(command: list[str]) -> str | None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def apple_chip() -> str | None:
    """The chip's name ("Apple M3 Max") on Apple Silicon, else None."""
    if not is_apple_silicon():
        return None
    return _run(["sysctl", "-n", "machdep.cpu.brand_string"]) or "Apple Silicon (chip name unknown)"


def metal_family() -> str | None:
    """The Metal family the GPU supports as system_profiler reports it ("metal3"), else None."""
    if not is_apple_silicon():
        return None
    out = _run(["system_profiler", "SPDisplaysDataType", "-json"])
    try:
        displays = json.loads(out or "{}").get("SPDisplaysDataType") or []
    except ValueError:
        return None
    support = next((entry.get("spdisplays_mtlgpufamilysupport") for entry in displays if isinstance(entry, dict)), None)
    return str(support).removeprefix("spdisplays_") if support else None


def apple_accelerators() -> list[str]:
    """The Apple GPU as an accelerator line for host provenance (empty elsewhere)."""
    chip = apple_chip()
    if chip is None:
        return []
    return [f"{chip} GPU (Metal {metal_family() or 'family not reported'}, unified memory)"]
