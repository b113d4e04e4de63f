"""Make a container spec's image available: local, built here, or pulled when asked.

No registry is needed for images built here: their base is a Debian root file system made by
`debootstrap` from Debian's mirror, cached as a tarball under <cache>/docker/ and imported once.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
from docker.errors import APIError, BuildError, ImageNotFound
from docker.models.images import Image

from harness.docker.daemon import apt_install
from harness.docker.specs import ContainerSpec
from harness.paths import cache_dir
from harness.toolchain import llamacpp as llamacpp_toolchain

DEBIAN_MIRROR = "http://deb.debian.org/debian"
ROOTFS_PACKAGES = ("libgomp1",)  # llama.cpp's OpenMP runtime; libstdc++ and libc come with minbase
ROOTFS_PRUNE = ("usr/share/doc", "usr/share/man", "usr/share/locale", "var/lib/apt/lists", "var/cache/apt")
ARTIFACT_LABEL = "org.infercheck.artifact"


class ImageUnavailable(RuntimeError):
    """The image is not here and cannot be built or pulled."""


class ImageBuildError(RuntimeError):
    """Building the image from its Dockerfile failed."""


def debian_suite() -> str:
    """A Debian release whose glibc is at least the host's, so host-built binaries run in it."""
    glibc = os.confstr("CS_GNU_LIBC_VERSION") or "glibc 2.36"
    major, minor = (int(part) for part in glibc.split()[-1].split(".")[:2])
    return "bookworm" if (major, minor) <= (2, 36) else "trixie"


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise ImageUnavailable(f"{what} failed ({' '.join(command[:3])} ...): {result.stderr.strip()[-800:]}")


def rootfs_tarball(progress: Callable[[str], None]) -> Path:
    """The cached Debian minbase root file system tarball, made by debootstrap the first time."""
    suite = debian_suite()
    tarball = cache_dir() / "docker" / f"debian-{suite}-minbase.tar"
    if tarball.exists():
        return tarball
    if shutil.which("debootstrap") is None:
        apt_install(["debootstrap", "debian-archive-keyring"], progress)
    tarball.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tarball.parent) as work:
        root = Path(work) / "rootfs"
        progress(f"debootstrap {suite} minbase from {DEBIAN_MIRROR} (about a minute)")
        _run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(ROOTFS_PACKAGES)}",
                suite,
                str(root),
                DEBIAN_MIRROR,
            ],
            "debootstrap",
        )
        for relative in ROOTFS_PRUNE:
            shutil.rmtree(root / relative, ignore_errors=True)
        partial = tarball.with_suffix(".partial")
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], "packing the root file system")
        os.replace(partial, tarball)
    return tarball


def base_image(client: docker.DockerClient, progress: Callable[[str], None]) -> str:
    """The tag of the imported Debian base image (imported from the cached tarball if missing)."""
    tag = f"infercheck/debian:{debian_suite()}-minbase"
    try:
        client.images.get(tag)
        return tag
    except ImageNotFound:
        pass
    tarball = rootfs_tarball(progress)
    progress(f"importing {tarball.name} as {tag}")
    repository, name = tag.split(":")
    client.api.import_image_from_file(str(tarball), repository=repository, tag=name)
    return tag


def build_artifacts(spec: ContainerSpec) -> dict[str, Path]:
    """Host files the build copies in, by their name in the build context."""
    paths: dict[str, Path] = {}
    for artifact, name in spec.build.artifacts.items() if spec.build else ():
        if artifact == "llama-server":
            build = llamacpp_toolchain.find_build(cache_dir(), backend="cpu")
            if build is None:
                raise ImageUnavailable("llama-server is not built: run `infercheck setup llama.cpp`")
            paths[name] = build.server
    return paths


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _context_sha256(spec: ContainerSpec) -> str:
    """One hash of the files beside the spec (Dockerfile and all), so an edited Dockerfile rebuilds."""
    digest = hashlib.sha256()
    for path in sorted(p for p in spec.folder.rglob("*") if p.is_file()):
        digest.update(f"{path.relative_to(spec.folder)}\0{_sha256(path)}\0".encode())
    return digest.hexdigest()


def _build(
    client: docker.DockerClient,
    spec: ContainerSpec,
    labels: dict[str, str],
    artifacts: dict[str, Path],
    progress: Callable[[str], None],
) -> Image:
    assert spec.build is not None
    buildargs = {"BASE": base_image(client, progress)} if spec.build.base == "debian-rootfs" else {}
    with tempfile.TemporaryDirectory() as context:
        shutil.copytree(spec.folder, context, dirs_exist_ok=True)
        for name, path in artifacts.items():
            shutil.copy2(path, Path(context) / name)
        progress(f"building {spec.image} from {spec.folder / spec.build.dockerfile}")
        try:
            image, _ = client.images.build(
                path=context,
                dockerfile=spec.build.dockerfile,
                tag=spec.image,
                buildargs=buildargs,
                labels=labels,
                network_mode="host",
                rm=True,
                forcerm=True,
            )
        except BuildError as exc:
            tail = "".join(str(line.get("stream", line.get("error", ""))) for line in exc.build_log)[-1500:]
            raise ImageBuildError(f"building {spec.image} failed: {exc.msg}\n{tail}") from None
    return image


def ensure_image(
    client: docker.DockerClient, spec: ContainerSpec, pull: bool = False, progress: Callable[[str], None] = print
) -> Image:
    """The spec's image: present and current, built (Dockerfile), or pulled. A Dockerfile whose base image comes
    from a registry is built only when `pull` allows the registry (the nightly runners)."""
    build_here = spec.build is not None and (spec.build.buildable_here or pull)
    artifacts = build_artifacts(spec) if build_here else {}
    labels = {f"{ARTIFACT_LABEL}.{name}.sha256": _sha256(path) for name, path in artifacts.items()}
    if build_here:
        labels[f"{ARTIFACT_LABEL}.context.sha256"] = _context_sha256(spec)
    lock_path = cache_dir() / "docker" / "images.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            image = client.images.get(spec.image)
            if all(image.labels.get(key) == value for key, value in labels.items()):
                return image
            progress(f"{spec.image} was built from other artifacts; rebuilding")
        except ImageNotFound:
            pass
        if build_here:
            return _build(client, spec, labels, artifacts, progress)
        if spec.build:
            raise ImageUnavailable(
                f"image {spec.image} is not on this Docker host; build it from "
                f"{spec.folder / spec.build.dockerfile} where its base image is reachable "
                "(--pull allows the registry)"
            )
        if not pull:
            raise ImageUnavailable(
                f"image {spec.image} is not on this Docker host; pull it (`docker pull {spec.image}`, or --pull)"
            )
        progress(f"pulling {spec.image}")
        try:
            return client.images.pull(spec.image)
        except APIError as exc:
            raise ImageUnavailable(f"cannot pull {spec.image}: {exc.explanation or exc}") from None
