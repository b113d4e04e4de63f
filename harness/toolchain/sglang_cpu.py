"""Install SGLang's CPU path (PyPI `sglang`, SGLANG_USE_CPU_ENGINE=1) into its own cached virtual environment.

What a column measured this way is: SGLang's own server (OpenAI layer, scheduler, radix cache, structured-output
backends) and its torch-native layers and attention (`--attention-backend torch_native`); not its kernels. The
steps, each measured on this project's machines (2026-12-03, sglang 0.5.23):
- `pip install --no-deps sglang==0.5.23` (a cp311 wheel with Rust extensions) and the requirements it imports on
  the CPU path (RUNTIME_REQUIREMENTS), not its CUDA ones (flashinfer, sglang-kernel, flash-attn-4, cutlass,
  deep-gemm, ...). Its metadata pins torch 2.14.1; PyPI's 2.14.1 is a CUDA build, so the CPU torch the vLLM CPU
  environment uses (vllm_cpu.TORCH_PIN, 2.13.0+cpu) is installed instead.
- PyPI's torchvision (0.28.0 pairs with torch 2.13) is a CUDA build: its `_C` does not load beside the CPU torch,
  and its `_meta_registrations.py` then fails at import ("operator torchvision::nms does not exist"). SGLang imports
  `torchvision.transforms` at start (srt/configs/__init__.py -> nano_nemotron_vl -> multimodal/internvl_utils.py),
  so the two unguarded `register_fake("torchvision::nms"/"::qnms")` decorators are guarded by
  `torchvision.extension._has_ops()`, as its other meta registrations already are (TORCHVISION_PATCH).
- PyPI has no CPU build of `sgl_kernel` (sgl-kernel and sglang-kernel are CUDA wheels without an sdist): the module
  sgl_kernel_cpu_absent.py is installed as `sgl_kernel`; it defines the names the CPU path imports, each raising
  when called. No stand-in computes anything (none is called on a non-speculative server).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.toolchain import sgl_kernel_cpu_absent
from harness.toolchain.environment import VenvInstall, create_venv
from harness.toolchain.logged import pip_progress, run_logged
from harness.toolchain.vllm_cpu import TORCH_PIN

PACKAGE = "sglang"
PACKAGE_VERSION = "0.5.23"
TORCHVISION_PIN = "torchvision==0.28.0"  # the release paired with torch 2.13
# what sglang 0.5.23 imports on its CPU path (its METADATA's pins kept), without its CUDA requirements
RUNTIME_REQUIREMENTS = (
    "aiohttp",
    "anthropic>=0.20.0",
    "blobfile==3.0.0",
    "compressed-tensors==0.18.0",
    "datasets",
    "distro",
    "easydict",
    "einops",
    "fastapi",
    "gguf",
    "interegular",
    "IPython",
    "jsonschema",
    "llguidance>=1.7.6,<2.0.0",
    "msgspec",
    "ninja",
    "numpy",
    "openai==2.8.0",
    "openai-harmony==0.0.4",
    "orjson",
    "packaging",
    "partial_json_parser",
    "pillow",
    "prometheus-client>=0.20.0",
    "psutil",
    "pybase64",
    "pydantic",
    "python-dateutil<3",
    "python-multipart",
    "pyzmq>=25.1.2",
    "regex",
    "requests",
    "scipy",
    "sentencepiece==0.2.1",
    "setproctitle",
    "soundfile==0.13.1",
    "tiktoken",
    "tokenizers==0.23.2",
    "tqdm",
    "transformers==5.19.0",
    "triton",
    "uvicorn>=0.51",
    "uvloop",
    "watchfiles",
    "xgrammar==0.2.7",
    "xxhash",
    "zstandard",
)
TORCHVISION_PATCH = re.compile(r'^@torch\.library\.register_fake\(("torchvision::\w+")\)$', re.M)
TORCHVISION_GUARDED = r"@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda fn: fn))"


class SglangInstallError(RuntimeError):
    """The SGLang CPU environment could not be made."""


@dataclass(frozen=True)
class SglangCpuInstall(VenvInstall):
    """A ready SGLang CPU environment."""

    absent_kernels: tuple[str, ...]  # sgl_kernel names that raise when called (no CPU build, no stand-in)
    stand_ins: tuple[str, ...]  # sgl_kernel names computed by a stand-in (none)


def install_dir(cache: Path) -> Path:
    """The cache folder of the pinned SGLang CPU install."""
    return cache / "sglang-cpu" / PACKAGE_VERSION


def find_install(cache: Path) -> SglangCpuInstall | None:
    """A finished install in the cache, or None."""
    root = install_dir(cache)
    manifest = root / "install.json"
    if not manifest.exists():
        return None
    data = json.loads(manifest.read_text())
    if data.get("package_version") != PACKAGE_VERSION or data.get("absent_kernels") != list(
        sgl_kernel_cpu_absent.ABSENT
    ):
        return None
    install = SglangCpuInstall(
        root=root,
        package_version=PACKAGE_VERSION,
        absent_kernels=tuple(data["absent_kernels"]),
        stand_ins=tuple(data["stand_ins"]),
    )
    return install if install.python.exists() else None


def guard_torchvision_meta(source: str) -> tuple[str, int]:
    """torchvision's `_meta_registrations.py` with its unguarded fake-op registrations guarded; how many were."""
    return TORCHVISION_PATCH.subn(TORCHVISION_GUARDED, source)


def ensure_install(cache: Path, progress: Callable[[str], None] = print) -> SglangCpuInstall:
    """Return the cached install, making it first if needed (a few minutes, about 3 GB)."""
    existing = find_install(cache)
    if existing:
        return existing
    root = install_dir(cache)
    root.mkdir(parents=True, exist_ok=True)
    (root / "install.json").unlink(missing_ok=True)
    progress(f"creating the SGLang CPU environment in {root}")
    python = create_venv(root)
    progress(f"installing the CPU torch ({TORCH_PIN}) and {TORCHVISION_PIN} without its CUDA requirements")
    _run([python, "-m", "pip", "install", TORCH_PIN], root / "torch.log", pip_progress(progress))
    _run([python, "-m", "pip", "install", "--no-deps", TORCHVISION_PIN], root / "torchvision.log")
    progress(f"installing {PACKAGE}=={PACKAGE_VERSION} without its CUDA requirements (a few minutes)")
    _run(
        [python, "-m", "pip", "install", "--no-deps", f"{PACKAGE}=={PACKAGE_VERSION}"],
        root / "sglang.log",
        pip_progress(progress),
    )
    _run([python, "-m", "pip", "install", *RUNTIME_REQUIREMENTS], root / "requirements.log", pip_progress(progress))
    site = _site_packages(root)
    meta = site / "torchvision" / "_meta_registrations.py"
    patched, count = guard_torchvision_meta(meta.read_text())
    if count == 0:
        raise SglangInstallError(f"{meta}: no unguarded torchvision fake-op registration found to guard")
    meta.write_text(patched)
    progress(f"guarded {count} torchvision fake-op registrations (its CUDA _C does not load beside the CPU torch)")
    kernel_dir = site / "sgl_kernel"
    kernel_dir.mkdir(exist_ok=True)
    shutil.copyfile(Path(sgl_kernel_cpu_absent.__file__), kernel_dir / "__init__.py")
    _run(
        [python, "-c", "import sglang.srt.entrypoints.http_server, sglang.srt.managers.scheduler"],
        root / "import-check.log",
        env={"SGLANG_USE_CPU_ENGINE": "1"},
    )
    (root / "install.json").write_text(
        json.dumps(
            {
                "package": PACKAGE,
                "package_version": PACKAGE_VERSION,
                "torch": TORCH_PIN,
                "torchvision": TORCHVISION_PIN,
                "torchvision_guarded_registrations": count,
                "absent_kernels": list(sgl_kernel_cpu_absent.ABSENT),
                "stand_ins": [],
            },
            indent=2,
        )
    )
    progress(f"SGLang CPU ready in {root / 'venv'}")
    install = find_install(cache)
    assert install is not None
    return install


def _site_packages(root: Path) -> Path:
    found = sorted((root / "venv" / "lib").glob("python3*/site-packages"))
    if not found:
        raise SglangInstallError(f"no site-packages under {root / 'venv' / 'lib'}")
    return found[0]


def _run(
    command: list[str], log: Path, on_line: Callable[[str], None] | None = None, env: dict[str, str] | None = None
) -> None:
    if env:
        command = ["env", *(f"{key}={value}" for key, value in env.items()), *command]
    returncode = run_logged(command, log, on_line)
    if returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise SglangInstallError(f"{' '.join(command[:6])} … failed (exit {returncode}):\n{tail}")
