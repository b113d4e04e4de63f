"""Docker for the project's tests: a daemon (the host's, else a private one started here) and the CPU image.

Test modules import these fixtures. The private daemon is installed (apt-get docker.io) and
started when no Docker answers; the tests skip only when that is impossible (no root, no apt).
At the end no infercheck container of this test session may be left.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from docker.models.images import Image

from harness.docker.daemon import DockerConnection, DockerUnavailable, shared_daemon
from harness.docker.images import ensure_image
from harness.docker.launcher import LABEL, OWNER_LABEL, owner_alive, owner_token
from harness.docker.specs import spec_named
from harness.toolchain import llamacpp as toolchain


def infercheck_containers(connection: DockerConnection, run_id: str | None = None) -> list[str]:
    """Names of infercheck containers (of one run) that exist now, running or not."""
    label = f"{LABEL}.run={run_id}" if run_id else LABEL
    return [c.name for c in connection.client.containers.list(all=True, filters={"label": label})]


@pytest.fixture(scope="session")
def docker_connection() -> Iterator[DockerConnection]:
    """A reachable Docker daemon: the host's, else a private one (installed and started here if needed)."""
    try:
        with shared_daemon(progress=lambda message: None) as connection:
            yield connection
            mine = [
                c.name
                for c in connection.client.containers.list(all=True, filters={"label": LABEL})
                if c.labels.get(OWNER_LABEL) == owner_token() or not owner_alive(c.labels.get(OWNER_LABEL, ""))
            ]
            assert not mine, f"infercheck containers left behind: {mine}"
    except DockerUnavailable as exc:
        pytest.skip(f"Docker cannot run on this host: {exc}")


@pytest.fixture(scope="session")
def llama_image(docker_connection: DockerConnection, llama_build: toolchain.LlamaCppBuild) -> Image:
    """infercheck/llama.cpp-cpu built here (debootstrap rootfs cached, so only the first build is slow)."""
    return ensure_image(docker_connection.client, spec_named("llama.cpp-cpu"), progress=lambda message: None)
