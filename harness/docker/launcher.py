"""Docker launcher: one labelled container per engine, port on 127.0.0.1, logs captured, always removed.

Clean-up is layered: `stop()` on every exit path of a run (success, failure, timeout, Ctrl-C),
an atexit hook, a reaper process per container that removes it when the harness dies even by
SIGKILL (its stdin pipe closes), and `sweep_leftovers()` for containers whose owner is gone.
Secrets passed through the environment (HF_TOKEN) go to the container only: they are never
logged, recorded or put on the command line.
"""

from __future__ import annotations

import atexit
import os
import secrets
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.models.containers import Container
from docker.types import DeviceRequest, Mount, Ulimit
from requests.exceptions import RequestException

from harness.docker.daemon import DockerConnection, DockerUnavailable, connect
from harness.launch.base import EngineStartError, Launcher, RunningEngine, wait_healthy

LABEL = "org.infercheck"
RUN_LABEL = f"{LABEL}.run"
OWNER_LABEL = f"{LABEL}.owner"
_LIVE: set[DockerLauncher] = set()


def _stop_all() -> None:
    for launcher in list(_LIVE):
        launcher.stop()


atexit.register(_stop_all)


def _start_ticks(pid: int) -> str | None:
    """A process's start time in clock ticks since boot (with the pid, a unique process identity)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner_token() -> str:
    """Who owns the containers this process starts: host, pid and the pid's start time."""
    return f"{socket.gethostname()}/{os.getpid()}/{_start_ticks(os.getpid())}"


def owner_alive(token: str) -> bool:
    """Whether the process named by `token` still runs (containers of other hosts count as alive)."""
    host, _, rest = token.partition("/")
    pid, _, ticks = rest.partition("/")
    if host != socket.gethostname():
        return True
    return pid.isdigit() and _start_ticks(int(pid)) == ticks


def sweep_leftovers(client: docker.DockerClient) -> list[str]:
    """Remove infercheck containers whose owning process is gone (crashed or killed runs)."""
    removed = []
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        if not owner_alive(container.labels.get(OWNER_LABEL, "")):
            try:
                container.remove(force=True)
                removed.append(container.name)
            except NotFound:
                pass
    return removed


def device_requests(gpus: str | None) -> list[DeviceRequest]:
    """GPU requests as `docker run --gpus` takes them: "all", a count, or "device=0,1"."""
    if not gpus:
        return []
    if gpus == "all":
        return [DeviceRequest(count=-1, capabilities=[["gpu"]])]
    if gpus.isdigit():
        return [DeviceRequest(count=int(gpus), capabilities=[["gpu"]])]
    ids = gpus.removeprefix("device=").split(",")
    return [DeviceRequest(device_ids=[i.strip() for i in ids if i.strip()], capabilities=[["gpu"]])]


@dataclass(frozen=True)
class ContainerConfig:
    """How to run the engine's container (everything but its command and host port)."""

    image: str
    run_id: str
    entrypoint: list[str] | None = None
    port: int | None = None  # the port the server listens on inside (None: the host port); --port is rewritten
    health: str | None = None  # the image's health route (None: the one start() is given)
    mounts: dict[str, str] = field(default_factory=dict)  # host path -> container path, read-only
    files: dict[str, str] = field(default_factory=dict)  # container path -> content, read-only
    gpus: str | None = None
    shm_size: str | None = None
    ipc_mode: str | None = None
    ulimits: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    passthrough_env: tuple[str, ...] = ()  # names copied from the harness environment (secrets)


class ContainerExecError(RuntimeError):
    """A command run inside the container failed."""


def container_command(command: list[str], host_port: int, container_port: int | None) -> list[str]:
    """`command` with `--port <host port>` replaced by the port the container serves on."""
    if container_port is None:
        return list(command)
    return [
        str(container_port) if token == str(host_port) and index and command[index - 1] == "--port" else token
        for index, token in enumerate(command)
    ]


class DockerLauncher(Launcher):
    """Runs an engine in a detached container and removes it again on every path out."""

    name = "docker"

    def __init__(self, config: ContainerConfig, stop_timeout_s: float = 10.0) -> None:
        self.config = config
        self._stop_timeout_s = stop_timeout_s
        self._container: Container | None = None
        self._reaper: subprocess.Popen[bytes] | None = None
        self._log_thread: threading.Thread | None = None
        self.running: RunningEngine | None = None

    def start(
        self,
        command: list[str],
        port: int,
        health_path: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        timeout_s: float = 120.0,
    ) -> RunningEngine:
        try:
            connection = connect()
            image = connection.client.images.get(self.config.image)
        except DockerUnavailable as exc:
            raise EngineStartError(str(exc)) from None
        except ImageNotFound:
            raise EngineStartError(f"image {self.config.image} is not on this Docker host") from None
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command = container_command(command, port, self.config.port)
        health_path = self.config.health or health_path
        entrypoint = self.config.entrypoint or image.attrs["Config"].get("Entrypoint") or []
        digests = image.attrs.get("RepoDigests") or []  # a pulled image's registry digest, else the local id
        self.running = RunningEngine(
            base_url=f"http://127.0.0.1:{port}",
            log_path=log_path,
            command=[*entrypoint, *command],
            launcher=self.name,
            image=self.config.image,
            image_digest=digests[0] if digests else image.id,
        )
        self._container = self._create(connection, image.id, command, port, log_path, env or {})
        _LIVE.add(self)
        try:
            self._container.start()
            self._log_thread = threading.Thread(target=self._follow_logs, args=(self._container, log_path), daemon=True)
            self._log_thread.start()
            wait_healthy(
                self.running.base_url + health_path,
                timeout_s,
                still_running=self.is_running,
                describe_exit=self.describe_exit,
            )
        except BaseException as exc:
            if self._log_thread is not None and not self.is_running():
                self._log_thread.join(timeout=5)  # an exited container's last lines, before it is removed
            self.stop()
            if isinstance(exc, EngineStartError):
                raise EngineStartError(f"{exc}\n--- container log tail ---\n{self.running.log_tail()}") from None
            if isinstance(exc, APIError):
                raise EngineStartError(f"docker could not start {self.config.image}: {exc.explanation}") from None
            raise
        return self.running

    def _create(
        self,
        connection: DockerConnection,
        image_id: str,
        command: list[str],
        port: int,
        log_path: Path,
        env: dict[str, str],
    ) -> Container:
        """Create the container (not started) and its reaper."""
        config = self.config
        mounts = [Mount(target, source, type="bind", read_only=True) for source, target in config.mounts.items()]
        files_dir = log_path.with_suffix(".files")
        for index, (target, content) in enumerate(config.files.items()):
            files_dir.mkdir(parents=True, exist_ok=True)
            source = files_dir / f"{index}-{Path(target).name}"
            source.write_text(content)
            mounts.append(Mount(target, str(source), type="bind", read_only=True))
        environment = {
            **config.env,
            **env,
            **{name: os.environ[name] for name in config.passthrough_env if name in os.environ},
        }
        try:
            container = connection.client.containers.create(
                image_id,
                command=command,
                entrypoint=config.entrypoint,
                detach=True,
                name=f"infercheck-{config.run_id}-{secrets.token_hex(3)}",
                labels={LABEL: "1", RUN_LABEL: config.run_id, OWNER_LABEL: owner_token()},
                ports={f"{config.port or port}/tcp": ("127.0.0.1", port)},
                mounts=mounts,
                environment=environment,
                device_requests=device_requests(config.gpus),
                shm_size=config.shm_size,
                ipc_mode=config.ipc_mode,
                ulimits=[Ulimit(name=name, soft=value, hard=value) for name, value in config.ulimits.items()],
            )
        except APIError as exc:
            raise EngineStartError(
                f"docker could not create a container of {config.image}: {exc.explanation}"
            ) from None
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "harness.docker.reaper", connection.url, container.id],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return container

    @staticmethod
    def _follow_logs(container: Container, log_path: Path) -> None:
        """Copy the container's output into the run's log file until the container ends."""
        try:
            with log_path.open("ab") as handle:
                for chunk in container.logs(stream=True, follow=True):
                    handle.write(chunk)
                    handle.flush()
        except (APIError, RequestException, OSError):
            return

    def is_running(self) -> bool:
        """Whether the container is still running."""
        if self._container is None:
            return False
        try:
            self._container.reload()
        except (NotFound, APIError, RequestException):
            return False
        return self._container.status == "running"

    def describe_exit(self) -> str:
        """How the container ended: exit code, out-of-memory kill, or Docker's error."""
        if self._container is None:
            return "no container"
        state = self._container.attrs.get("State", {})
        parts = [f"container exit code {state.get('ExitCode')}"]
        if state.get("OOMKilled"):
            parts.append("killed for lack of memory")
        if state.get("Error"):
            parts.append(str(state["Error"]))
        return ", ".join(parts)

    def exec(self, command: list[str]) -> str:
        """Run a command inside the running container and return its output; ContainerExecError if it fails."""
        if self._container is None:
            raise EngineStartError("no container is running")
        result = self._container.exec_run(command)
        output = result.output.decode(errors="replace").strip()
        if result.exit_code != 0:
            raise ContainerExecError(f"`{' '.join(command)}` exited with {result.exit_code}: {output[-300:]}")
        return output

    def stop(self) -> None:
        container, self._container = self._container, None
        if container is not None:
            for action in (
                lambda: container.stop(timeout=int(self._stop_timeout_s)),
                lambda: container.remove(force=True),
            ):
                try:
                    action()
                except (NotFound, APIError, RequestException):
                    pass
        if self._log_thread is not None:
            self._log_thread.join(timeout=5)
            self._log_thread = None
        if self._reaper is not None:
            if self._reaper.stdin is not None:
                self._reaper.stdin.close()
            try:
                self._reaper.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self._reaper.kill()
            self._reaper = None
        _LIVE.discard(self)
