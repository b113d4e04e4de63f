"""Container specs (`containers/<name>/spec.yaml`): image, launch commands, port, health, version.

Each spec is written from its engine's own documentation and source, which it cites in
`sources`. `launch` holds the engine's arguments per launch configuration, added to `base`, and files
the configuration needs inside the container (an engine that reads a YAML config). Placeholders:
{model}, {draft_model} (paths inside the container; also {model_dir}/{model_name} and
{draft_model_dir}/{draft_model_name}), {port}, {tp}, {pp}, {quantization}. A configuration the
engine cannot express says why in `unsupported`.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.paths import REPO_ROOT

CONTAINERS_DIR = REPO_ROOT / "containers"
LaunchConfig = Literal["base", "draft_model", "tensor_parallel", "pipeline_parallel", "quantized"]
LAUNCH_CONFIGS: tuple[str, ...] = LaunchConfig.__args__  # type: ignore[attr-defined]
MOVING_TAGS = ("latest", "main", "nightly", "dev")


def image_tag(image: str) -> str:
    """The tag of an image reference ("latest" when it names none)."""
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


class SpecError(ValueError):
    """A container spec is missing, malformed, or asks for what its engine cannot do."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HttpVersion(_Strict):
    """Read the version from a JSON field of an HTTP endpoint of the running engine."""

    path: str
    field: str


class VersionProbe(_Strict):
    """How to read the exact engine version: over HTTP, or by a command run inside the container."""

    http: HttpVersion | None = None
    exec: list[str] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> VersionProbe:
        if (self.http is None) == (self.exec is None):
            raise ValueError("version needs exactly one of `http` or `exec`")
        return self


class BuildSpec(_Strict):
    """A locally built image: the Dockerfile beside the spec, its base, and host artifacts copied in."""

    dockerfile: str = "Dockerfile"
    base: Literal["debian-rootfs"] | None = None  # made here by debootstrap (no registry needed)
    artifacts: dict[Literal["llama-server"], str] = Field(default_factory=dict)  # artifact -> name in context
    buildable_here: bool = True  # False: its base image comes from a registry


class LaunchVariant(_Strict):
    """Arguments for one launch configuration, or why the engine cannot run it."""

    args: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)  # path inside the container -> content
    unsupported: str | None = None

    @model_validator(mode="after")
    def _args_or_reason(self) -> LaunchVariant:
        if self.unsupported and (self.args or self.files):
            raise ValueError("a launch configuration has either `args` or `unsupported`, not both")
        return self


class ContainerSpec(_Strict):
    """One engine image and how to serve a model from it."""

    name: str  # the folder under containers/
    engine: str  # the adapter / comparison-table column
    sources: list[str] = Field(min_length=1)
    image: str
    moving_tag_reason: str | None = None
    build: BuildSpec | None = None
    entrypoint: list[str] = Field(min_length=1)
    port: int = Field(gt=0, lt=65536)
    health: str
    version: VersionProbe
    needs_gpu: bool  # NVIDIA GPUs through the NVIDIA container toolkit
    shm_size: str | None = None
    ulimits: dict[str, int] = Field(default_factory=dict)
    ipc_mode: Literal["host", "private", "shareable"] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    env_passthrough: list[str] = Field(default_factory=lambda: ["HF_TOKEN"])
    model_mount: str = "/models"
    approx_image_gib: float = Field(gt=0)
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64"])
    launch: dict[LaunchConfig, LaunchVariant]

    @model_validator(mode="after")
    def _pinned_and_complete(self) -> ContainerSpec:
        tag = image_tag(self.image)
        if "@sha256:" not in self.image and tag in MOVING_TAGS and not self.moving_tag_reason:
            raise ValueError(f"image {self.image!r} is not pinned (tag {tag!r}); pin it or give moving_tag_reason")
        missing = [config for config in LAUNCH_CONFIGS if config not in self.launch]
        if missing:
            raise ValueError(f"launch lacks configurations {missing} (give args or `unsupported`)")
        if self.launch["base"].unsupported:
            raise ValueError("the base launch configuration cannot be unsupported")
        if not any(source.startswith("https://") for source in self.sources):
            raise ValueError("sources must cite the engine's documentation or source by URL")
        return self

    @property
    def folder(self) -> Path:
        return CONTAINERS_DIR / self.name

    def unsupported(self, configs: list[str]) -> str | None:
        """Why one of `configs` cannot be launched from this image, or None."""
        for config in configs:
            reason = self.launch[config].unsupported  # type: ignore[index]
            if reason:
                return f"{self.engine} ({config}): {reason}"
        return None

    def _render(self, config: str, template: str, values: dict[str, object]) -> str:
        try:
            return template.format(**values)
        except KeyError as exc:
            raise SpecError(f"{self.name}: launch.{config} needs a value for {exc}") from None

    def _configs(self, configs: list[str], values: dict[str, object]) -> tuple[list[str], dict[str, object]]:
        reason = self.unsupported(configs)
        if reason:
            raise SpecError(reason)
        full = {"port": self.port, "tp": 1, "pp": 1, **values}
        for key in ("model", "draft_model"):
            if key in values:
                path = PurePosixPath(str(values[key]))
                full.update({f"{key}_dir": str(path.parent), f"{key}_name": path.name})
        return ["base", *[config for config in configs if config != "base"]], full

    def command(self, configs: list[str], **values: object) -> list[str]:
        """The full container command: entrypoint, base arguments, then each configuration's."""
        ordered, full = self._configs(configs, values)
        return [*self.entrypoint, *(self._render(config, arg, full) for config in ordered
                                    for arg in self.launch[config].args)]  # type: ignore[index]

    def files(self, configs: list[str], **values: object) -> dict[str, str]:
        """Files the configurations need inside the container: path -> rendered content."""
        ordered, full = self._configs(configs, values)
        return {path: self._render(config, content, full) for config in ordered
                for path, content in self.launch[config].files.items()}  # type: ignore[index]


def load_spec(path: Path) -> ContainerSpec:
    """Validate one spec file (its folder name is the spec's name)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return ContainerSpec.model_validate({**data, "name": path.parent.name})
    except (OSError, yaml.YAMLError, ValueError) as exc:
        raise SpecError(f"{path}: {exc}") from None


@lru_cache(maxsize=1)
def all_specs() -> tuple[ContainerSpec, ...]:
    """Every spec under containers/, by folder name."""
    return tuple(load_spec(path) for path in sorted(CONTAINERS_DIR.glob("*/spec.yaml")))


def spec_named(name: str) -> ContainerSpec:
    """The spec in containers/<name>/."""
    for spec in all_specs():
        if spec.name == name:
            return spec
    raise SpecError(f"no container spec {name!r}; known: {', '.join(s.name for s in all_specs())}")


def select_spec(engine: str, gpus: int, name: str | None = None) -> ContainerSpec:
    """The spec to run `engine` with: `name` if given, else one this host's GPUs suit (local images first)."""
    if name:
        return spec_named(name)
    candidates = [spec for spec in all_specs() if spec.engine.lower() == engine.lower()]
    if not candidates:
        raise SpecError(f"no container spec for engine {engine!r}")
    runnable = [spec for spec in candidates if gpus > 0 or not spec.needs_gpu] or candidates
    runnable.sort(key=lambda spec: (gpus > 0 and not spec.needs_gpu, spec.build is None))
    return runnable[0]
