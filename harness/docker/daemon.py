"""Reach a Docker daemon: the user's (DOCKER_HOST or the default socket) or infercheck's private one.

The private daemon is for hosts without a running Docker (CI, this project's machines): root
installs `docker.io` with apt when `dockerd` is missing and starts it with its own data root
(kept in the cache, so built images survive), exec root, pid file and unix socket.

Its runtime folder (socket, pid file, locks, log) is never a predictable shared path: it lives
under $XDG_RUNTIME_DIR or the user's cache, is created 0700, and is checked with lstat before
use: a symlink, another user's folder, or one others can write is refused (a local user who made
it first could otherwise make root truncate files through a symlinked lock, signal any pid
through a forged pid file, or serve a fake docker.sock and receive HF_TOKEN).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import DockerException

from harness.paths import cache_dir


class DockerUnavailable(RuntimeError):
    """No Docker daemon can be reached (or started) here."""


class UnsafeFolder(DockerUnavailable):
    """The private daemon's folder is a symlink, another user's, or writable by others."""


def checked_private_folder(path: Path) -> Path:
    """`path`, created 0700 if missing, after lstat shows a real folder of this user that no one else can write."""
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise UnsafeFolder(f"{path} is not a folder (a symlink or a file): refusing to use it for the Docker daemon")
    if info.st_uid != os.getuid():
        raise UnsafeFolder(
            f"{path} belongs to uid {info.st_uid}, not {os.getuid()}: refusing to use it for the Docker daemon"
        )
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours: close it before anything goes in
    return path


def private_runtime_dir() -> Path:
    """Socket, exec root and pid file of the private daemon: $XDG_RUNTIME_DIR/infercheck-docker, else the cache's
    docker/run, each checked by `checked_private_folder` (paths stay short: unix sockets are limited)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    base = Path(runtime) / "infercheck-docker" if runtime.startswith("/") else cache_dir() / "docker" / "run"
    return checked_private_folder(base)


def private_socket() -> Path:
    """The private daemon's API socket."""
    return private_runtime_dir() / "docker.sock"


@dataclass(frozen=True)
class DockerConnection:
    """A client and the URL it talks to (handed to helper processes)."""

    client: docker.DockerClient
    url: str


def _ping(url: str) -> DockerConnection | None:
    try:
        client = docker.DockerClient(base_url=url, timeout=60)
        client.ping()
        return DockerConnection(client=client, url=url)
    except DockerException:
        return None


def connect() -> DockerConnection:
    """The first daemon that answers: DOCKER_HOST (or the default socket), then the private socket."""
    default = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    for url in (default, f"unix://{private_socket()}"):
        connection = _ping(url)
        if connection is not None:
            return connection
    raise DockerUnavailable(
        f"no Docker daemon answers at {default} or unix://{private_socket()} (start one: `infercheck dockerd`, as root)"
    )


def apt_install(packages: list[str], progress: Callable[[str], None]) -> None:
    """`apt-get install` packages (root on Debian/Ubuntu only)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DockerUnavailable(f"{', '.join(packages)} missing and cannot be installed here (needs root and apt-get)")
    progress(f"installing {', '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *packages]):
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise DockerUnavailable(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")


def install_docker(progress: Callable[[str], None]) -> None:
    """Install docker.io when dockerd is missing."""
    if shutil.which("dockerd") is None:
        apt_install(["docker.io"], progress)


def start_private_daemon(progress: Callable[[str], None] = print, timeout_s: float = 60.0) -> int:
    """Start infercheck's own dockerd (installing docker.io first if needed); its pid once it answers."""
    install_docker(progress)
    runtime = private_runtime_dir()
    data_root = checked_private_folder(cache_dir() / "docker" / "data")
    socket_path = private_socket()
    socket_path.unlink(missing_ok=True)
    command = [
        "dockerd",
        "--data-root",
        str(data_root),
        "--exec-root",
        str(runtime / "exec"),
        "--pidfile",
        str(runtime / "dockerd.pid"),
        "-H",
        f"unix://{socket_path}",
    ]
    progress(f"starting a private dockerd at unix://{socket_path} (data root {data_root})")
    with open(runtime / "dockerd.log", "ab") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = (runtime / "dockerd.log").read_text(errors="replace").splitlines()[-15:]
            raise DockerUnavailable(f"dockerd exited with {process.returncode}:\n" + "\n".join(tail))
        connection = _ping(f"unix://{socket_path}") if socket_path.exists() else None
        if connection is not None:
            connection.client.close()
            return process.pid
        time.sleep(0.5)
    process.kill()
    raise DockerUnavailable(f"dockerd did not answer within {timeout_s:.0f}s (log: {runtime / 'dockerd.log'})")


def stop_private_daemon(timeout_s: float = 30.0) -> None:
    """SIGTERM the private dockerd (it stops its containerd) and wait until it is gone."""
    try:
        pid = int((private_runtime_dir() / "dockerd.pid").read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)


def _alive(pid: int) -> bool:
    """Whether `pid` runs (reaping it first when it is our own exited child)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@contextmanager
def shared_daemon(progress: Callable[[str], None] = print) -> Iterator[DockerConnection]:
    """A daemon for one test session: the host's, else the private one, started if needed.

    Sessions hold a shared lock while they use it; the last one out stops a private daemon
    that a test session started (never the user's, nor one started by `infercheck dockerd`).
    """
    runtime = private_runtime_dir()
    marker = runtime / "started-by-tests"
    with open(runtime / "sessions.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            connection = connect()
        except DockerUnavailable:
            start_private_daemon(progress)
            marker.touch()
            connection = connect()
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield connection
        finally:
            connection.client.close()
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another session still uses the daemon
            if connection.url == f"unix://{private_socket()}" and marker.exists():
                stop_private_daemon()
                marker.unlink()
