"""`infercheck doctor`: what this host can run (Docker, NVIDIA runtime, GPUs, Apple Metal, disk) and why not,
per engine. It works without the Docker SDK: it reports everything else and says what is missing."""

from __future__ import annotations

import platform
import shutil
from functools import cache
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from harness.docker.specs import ContainerSpec, all_specs
from harness.engines import adapter_classes
from harness.host.apple import apple_chip, is_apple_silicon, metal_family
from harness.host.provenance import gpu_names
from harness.toolchain import llamacpp as llamacpp_toolchain

if TYPE_CHECKING:
    from harness.docker.daemon import DockerConnection

NO_SDK = "the Docker SDK is not installed (pip install -e '.[docker]')"

ARCHES = {"x86_64": "linux/amd64", "amd64": "linux/amd64", "aarch64": "linux/arm64", "arm64": "linux/arm64"}
NVIDIA_HOOKS = ("nvidia-container-runtime", "nvidia-container-runtime-hook", "nvidia-ctk")


class Check(BaseModel):
    """One fact about the host."""

    name: str
    ok: bool
    detail: str


class EngineVerdict(BaseModel):
    """Whether one way of running an engine works here, and what stops it."""

    engine: str
    how: str  # "docker:<spec>" or "process"
    runnable: bool
    notes: list[str]


class DoctorReport(BaseModel):
    """The host checks and the per-engine verdicts."""

    checks: list[Check]
    engines: list[EngineVerdict]


@cache
def registry_reachable(image: str) -> bool:
    """Whether the registry of `image` answers its /v2/ endpoint (401 counts: it is there)."""
    first = image.split("/", 1)[0]
    host = first if "." in first or ":" in first else "registry-1.docker.io"
    try:
        return httpx.get(f"https://{host}/v2/", timeout=4).status_code in (200, 401)
    except httpx.HTTPError:
        return False


def _registry_image(spec: ContainerSpec) -> str:
    """The registry image the spec needs: its image, or its Dockerfile's base."""
    if spec.build is None:
        return spec.image
    dockerfile = (spec.folder / spec.build.dockerfile).read_text()
    return next(line.split()[1] for line in dockerfile.splitlines() if line.startswith("FROM "))


def _nvidia_runtime(connection: DockerConnection | None) -> bool:
    if connection is None:
        return False
    runtimes = connection.client.info().get("Runtimes") or {}
    return "nvidia" in runtimes or any(shutil.which(tool) for tool in NVIDIA_HOOKS)


def _image_notes(spec: ContainerSpec, connection: DockerConnection, free_gib: float) -> list[str]:
    """What stops the spec's image from being on this Docker host (empty: it is, or can be made)."""
    from docker.errors import ImageNotFound

    from harness.docker.images import ImageUnavailable, build_artifacts

    try:
        connection.client.images.get(spec.image)
        return []
    except ImageNotFound:
        pass
    if spec.build is not None and spec.build.buildable_here:
        try:
            build_artifacts(spec)
        except ImageUnavailable as exc:
            return [str(exc)]
        return []
    source = _registry_image(spec)
    notes = [] if registry_reachable(source) else [f"image not present and the registry of {source} is unreachable"]
    if free_gib < spec.approx_image_gib:
        notes.append(f"about {spec.approx_image_gib:g} GiB needed for the image, {free_gib:.0f} GiB free")
    return notes


def _spec_verdict(
    spec: ContainerSpec,
    gpus: list[str],
    connection: DockerConnection | None,
    nvidia: bool,
    free_gib: float,
    docker_problem: str,
) -> EngineVerdict:
    notes = []
    if is_apple_silicon() and spec.needs_gpu:
        notes.append("Docker on macOS has no GPU: use the process launcher (llama.cpp with Metal)")
    arch = ARCHES.get(platform.machine(), platform.machine())
    if arch not in spec.platforms:
        notes.append(f"image is built for {', '.join(spec.platforms)}, this host is {arch}")
    if spec.needs_gpu and not gpus:
        notes.append("needs an NVIDIA GPU; nvidia-smi lists none")
    elif spec.needs_gpu and not nvidia:
        notes.append("needs the NVIDIA container toolkit; Docker has no nvidia runtime")
    if connection is None:
        notes.append(f"Docker cannot be used: {docker_problem}")
    else:
        notes += _image_notes(spec, connection, free_gib)
    return EngineVerdict(
        engine=spec.engine,
        how=f"docker:{spec.name}",
        runnable=not notes,
        notes=notes or [f"{spec.image} ready (or built here on first use)"],
    )


def _process_verdicts() -> list[EngineVerdict]:
    verdicts = []
    for name, cls in sorted(adapter_classes().items()):
        try:
            cls().prepare()
            verdicts.append(EngineVerdict(engine=name, how="process", runnable=True, notes=["installed"]))
        except FileNotFoundError as exc:
            verdicts.append(EngineVerdict(engine=name, how="process", runnable=False, notes=[str(exc)]))
    return verdicts


def _docker() -> tuple[DockerConnection | None, dict[str, Any], str]:
    """The reachable daemon and its info, or None and why not (no SDK, no daemon, an unsafe private folder)."""
    try:
        from docker.errors import DockerException

        from harness.docker.daemon import DockerUnavailable, connect
    except ImportError:
        return None, {}, NO_SDK
    try:
        connection = connect()
        return connection, connection.client.info(), ""
    except (DockerUnavailable, DockerException) as exc:
        return None, {}, str(exc)


def _apple_checks() -> list[Check]:
    """The chip and its Metal GPU on Apple Silicon (llama.cpp's build backend there)."""
    if not is_apple_silicon():
        return []
    family = metal_family()
    return [
        Check(
            name="apple silicon",
            ok=True,
            detail=f"{apple_chip()}, llama.cpp backend {llamacpp_toolchain.default_backend()}",
        ),
        Check(name="metal", ok=family is not None, detail=family or "system_profiler reports no Metal family"),
    ]


def diagnose() -> DoctorReport:
    """Check the host, then say for every container spec and native adapter whether it can run here."""
    connection, info, problem = _docker()
    checks = [
        Check(
            name="docker",
            ok=connection is not None,
            detail=f"{connection.url}, server {info.get('ServerVersion')}, storage {info.get('Driver')}"
            if connection is not None
            else problem,
        )
    ]
    free_gib = shutil.disk_usage(info.get("DockerRootDir") or "/").free / 2**30 if connection is not None else 0.0
    nvidia = _nvidia_runtime(connection)
    gpus = gpu_names()
    checks.append(
        Check(
            name="nvidia runtime",
            ok=nvidia,
            detail="present" if nvidia else "no nvidia runtime in Docker, no nvidia-container-toolkit",
        )
    )
    checks.append(Check(name="gpus", ok=bool(gpus), detail="; ".join(gpus) or "nvidia-smi lists no GPU"))
    checks += _apple_checks()
    largest = max(spec.approx_image_gib for spec in all_specs())
    checks.append(
        Check(
            name="disk for images",
            ok=free_gib >= largest,
            detail=f"{free_gib:.0f} GiB free at Docker's root (largest image about {largest:g} GiB)"
            if connection is not None
            else "not known: Docker cannot be used",
        )
    )
    engines = [_spec_verdict(spec, gpus, connection, nvidia, free_gib, problem) for spec in all_specs()]
    return DoctorReport(checks=checks, engines=engines + _process_verdicts())


def render(report: DoctorReport) -> str:
    """The report as plain text: host checks, then one line per engine and launcher."""
    lines = ["host:"]
    lines += [f"  {'ok ' if check.ok else 'no '} {check.name:<16} {check.detail}" for check in report.checks]
    lines.append("engines:")
    for verdict in report.engines:
        mark = "can run " if verdict.runnable else "cannot  "
        lines.append(f"  {mark} {verdict.engine:<13} {verdict.how:<22} {'; '.join(verdict.notes)}")
    return "\n".join(lines)
