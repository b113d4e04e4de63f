"""Which images are built, pulled or refused (a fake Docker client: no daemon needed)."""

from __future__ import annotations

import pytest
from docker.errors import ImageNotFound

from harness.docker import images
from harness.docker.images import ImageUnavailable, ensure_image
from harness.docker.specs import spec_named


class _NoImages:
    """A Docker client with no images that records pulls."""

    def __init__(self) -> None:
        self.pulled: list[str] = []
        self.images = self

    def get(self, name: str) -> object:
        raise ImageNotFound(name)

    def pull(self, name: str) -> str:
        self.pulled.append(name)
        return name


@pytest.fixture
def built(monkeypatch, tmp_path) -> list[str]:
    made: list[str] = []
    monkeypatch.setattr(images, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(images, "_build", lambda client, spec, labels, artifacts, progress: made.append(spec.name))
    return made


def test_registry_based_dockerfiles_are_built_when_the_registry_is_allowed(built):
    """The nightly job (--pull) builds Fastgen's and ExLlamaV2's Dockerfiles instead of reading 'not measured'."""
    for name in ("deepspeed-mii", "exllamav2"):
        ensure_image(_NoImages(), spec_named(name), pull=True, progress=lambda line: None)  # type: ignore[arg-type]
    assert built == ["deepspeed-mii", "exllamav2"]


def test_without_the_registry_they_are_refused_with_the_way_out(built):
    with pytest.raises(ImageUnavailable, match="--pull allows the registry"):
        ensure_image(_NoImages(), spec_named("deepspeed-mii"), pull=False, progress=lambda line: None)  # type: ignore[arg-type]
    assert built == []


def test_registry_images_are_pulled_only_when_asked(built):
    client = _NoImages()
    with pytest.raises(ImageUnavailable, match="pull it"):
        ensure_image(client, spec_named("sglang"), pull=False, progress=lambda line: None)  # type: ignore[arg-type]
    ensure_image(client, spec_named("sglang"), pull=True, progress=lambda line: None)  # type: ignore[arg-type]
    assert client.pulled == [spec_named("sglang").image] and built == []
