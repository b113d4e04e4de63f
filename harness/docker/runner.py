"""`--launcher docker`: run an adapter's engine inside its container spec's image.

The adapter owns the command; the spec owns the image, entrypoint, port, health route and
environment. The command is translated for the container: its executable is replaced by the
spec's entrypoint, the models folder is mounted read-only at the spec's fixed path, a config
file the command names (a YAML or JSON of host paths) is mounted as a copy with the same paths
mapped, the server listens on the spec's port and binds 0.0.0.0 inside (Docker publishes the
port on 127.0.0.1 only).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from docker.errors import DockerException

from harness.docker.daemon import DockerUnavailable, connect
from harness.docker.images import ImageBuildError, ImageUnavailable, ensure_image
from harness.docker.launcher import ContainerConfig, ContainerExecError, DockerLauncher, sweep_leftovers
from harness.docker.specs import ContainerSpec, select_spec
from harness.launch.base import EngineStartError, Launcher
from harness.outcomes import NotMeasurable
from harness.records.results import EngineIdentity


def models_root(model_paths: list[Path]) -> Path:
    """The folder that holds every model file or folder (mounted into the container)."""
    root = Path(os.path.commonpath([str(path) for path in model_paths]))
    return root.parent if root.is_file() else root


CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
CONFIG_MOUNT = "/infercheck"  # where copies of the command's config files are mounted


def config_files(command: list[str], host_models: Path, container_models: str) -> tuple[list[str], dict[str, str]]:
    """Config files the command names, as container path -> content with host model paths mapped; and the
    command naming those copies instead."""
    files: dict[str, str] = {}
    translated = []
    for token in command:
        path = Path(token)
        if path.suffix in CONFIG_SUFFIXES and path.is_absolute() and path.is_file():
            target = f"{CONFIG_MOUNT}/{path.name}"
            files[target] = path.read_text(encoding="utf-8").replace(str(host_models), container_models)
            token = target
        translated.append(token)
    return translated, files


def translate_command(command: list[str], host_models: Path, container_models: str) -> list[str]:
    """The adapter's arguments for the container: executable dropped, model paths mapped, bound to 0.0.0.0."""
    first_option = next((i for i, token in enumerate(command) if token.startswith("--")), len(command))
    args = [token.replace(str(host_models), container_models) for token in command[first_option:]]
    return ["0.0.0.0" if token == "127.0.0.1" else token for token in args]


@dataclass(frozen=True)
class DockerOptions:
    """What `--launcher docker` was asked for: a spec by name, pulling, and which GPUs."""

    container: str | None = None  # containers/<name>; default: the engine's spec that suits this host
    pull: bool = False
    gpus: str | None = None  # "all", a count, or "device=0,1"; default: all when the image needs GPUs


@dataclass
class ContainerRunner:
    """The container spec a run uses, prepared once (daemon reached, leftovers swept, image ready)."""

    spec: ContainerSpec
    run_id: str
    host_models: Path
    gpus: str | None
    problem: Exception | None = None  # why containers cannot start here

    @classmethod
    def create(
        cls,
        engine: str,
        model_paths: list[Path],
        run_id: str,
        devices: int,
        options: DockerOptions,
        progress: Callable[[str], None] = print,
    ) -> ContainerRunner:
        """Pick the spec for `engine` and get its image ready; what fails is kept for the probes to report."""
        spec = select_spec(engine, devices, options.container)
        runner = cls(
            spec=spec,
            run_id=run_id,
            host_models=models_root(model_paths),
            gpus=options.gpus or ("all" if spec.needs_gpu else None),
        )
        runner.problem = runner._prepare(devices, options.pull, progress)
        return runner

    def _prepare(self, devices: int, pull: bool, progress: Callable[[str], None]) -> Exception | None:
        if self.spec.needs_gpu and devices == 0:
            return NotMeasurable(f"{self.spec.image} needs an NVIDIA GPU; this host has none")
        try:
            client = connect().client
            removed = sweep_leftovers(client)
            if removed:
                progress(f"removed {len(removed)} container(s) left by earlier runs: {', '.join(removed)}")
            ensure_image(client, self.spec, pull=pull, progress=progress)
        except (DockerUnavailable, ImageUnavailable) as exc:
            return NotMeasurable(f"cannot run {self.spec.name} here: {exc}")
        except (ImageBuildError, DockerException) as exc:
            return EngineStartError(f"{self.spec.name}: {exc}")
        return None

    def launcher(self, command: list[str]) -> tuple[DockerLauncher, list[str]]:
        """A launcher for the spec's container and the adapter's `command` translated for it."""
        if self.problem is not None:
            raise self.problem
        spec = self.spec
        command, files = config_files(command, self.host_models, spec.model_mount)
        config = ContainerConfig(
            image=spec.image,
            run_id=self.run_id,
            entrypoint=spec.entrypoint,
            port=spec.port,
            health=spec.health,
            mounts={str(self.host_models): spec.model_mount},
            files=files,
            gpus=self.gpus,
            shm_size=spec.shm_size,
            ipc_mode=spec.ipc_mode,
            ulimits=spec.ulimits,
            env=spec.env,
            passthrough_env=tuple(spec.env_passthrough),
        )
        return DockerLauncher(config), translate_command(command, self.host_models, spec.model_mount)

    def version(self, launcher: DockerLauncher) -> str:
        """The engine version read the way the spec says (HTTP field or a command in the container)."""
        probe = self.spec.version
        if probe.exec is not None:
            try:
                return launcher.exec(probe.exec)
            except ContainerExecError as exc:
                return f"unknown: {exc}"
        assert probe.http is not None and launcher.running is not None
        answer = httpx.get(launcher.running.base_url + probe.http.path, timeout=10).json()
        return str(answer.get(probe.http.field, "unknown"))

    def identity(self, identity: EngineIdentity, launcher: Launcher) -> EngineIdentity:
        """The adapter's identity plus the image, its digest, the spec and the version it reads."""
        assert isinstance(launcher, DockerLauncher) and launcher.running is not None
        running = launcher.running
        build = {**identity.build, "container_spec": self.spec.name, "container_version": self.version(launcher)}
        return identity.model_copy(
            update={"image": running.image, "image_digest": running.image_digest, "build": build}
        )
