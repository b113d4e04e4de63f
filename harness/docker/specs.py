"""Container specs (`containers/<name>/spec.yaml`): image, entrypoint, port, health, environment, version.

Each spec is written from its engine's own documentation and source, which it cites in `sources`.
One source of truth per launch: the spec owns what the image needs (image, entrypoint, the port the
server listens on inside, the health route, environment, how to read the version); the adapter
(harness/engines) owns the command line and the request bodies. `pin_checked` is the day the pinned
release was last compared with the engine's newest one.
"""

from __future__ import annotations

import datetime
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.paths import REPO_ROOT

CONTAINERS_DIR = REPO_ROOT / "containers"
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


class PackagePin(_Strict):
    """The engine's Python distribution and release inside the image (what the contract tests check)."""

    name: str
    version: str


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
    # host variables the container needs to run (not to fetch: models are fetched on the host and mounted read-only);
    # none by default, so no secret such as HF_TOKEN reaches an engine image, moving tags included
    env_passthrough: list[str] = Field(default_factory=list)
    model_mount: str = "/models"
    approx_image_gib: float = Field(gt=0)
    platforms: list[str] = Field(default_factory=lambda: ["linux/amd64"])
    pin_checked: datetime.date  # when the pinned release was last compared with the newest one
    pin_note: str | None = None  # why the pin is not the newest release, when it is not
    package: PackagePin | None = None

    @model_validator(mode="after")
    def _pinned_and_complete(self) -> ContainerSpec:
        tag = image_tag(self.image)
        if "@sha256:" not in self.image and tag in MOVING_TAGS and not self.moving_tag_reason:
            raise ValueError(f"image {self.image!r} is not pinned (tag {tag!r}); pin it or give moving_tag_reason")
        if not any(source.startswith("https://") for source in self.sources):
            raise ValueError("sources must cite the engine's documentation or source by URL")
        return self

    @property
    def folder(self) -> Path:
        return CONTAINERS_DIR / self.name


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
