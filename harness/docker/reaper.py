"""Removes one container once the harness that started it is gone.

Started by the Docker launcher in its own session with a pipe on stdin: the read returns when
the harness closes the pipe (normal stop) or dies (any signal, SIGKILL included), and the
container is then removed if it still exists.
"""

from __future__ import annotations

import sys

import docker
from docker.errors import DockerException


def main(argv: list[str]) -> int:
    """`python -m harness.docker.reaper DOCKER_URL CONTAINER_ID`"""
    url, container_id = argv[1], argv[2]
    sys.stdin.buffer.read()
    try:
        docker.DockerClient(base_url=url, timeout=60).containers.get(container_id).remove(force=True)
    except DockerException:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
