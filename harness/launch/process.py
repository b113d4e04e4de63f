"""Native process launcher: own process group, loopback port, log capture, clean stop."""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

from harness.launch.base import EngineStartError, Launcher, RunningEngine, wait_healthy

_LIVE: set[ProcessLauncher] = set()


def _stop_all() -> None:
    for launcher in list(_LIVE):
        launcher.stop()


atexit.register(_stop_all)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child (Linux): get SIGTERM when the harness dies, even from SIGKILL."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class ProcessLauncher(Launcher):
    """Runs an engine executable (or Python module) as a child in its own process group."""

    name = "process"

    def __init__(self, stop_timeout_s: float = 10.0) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_handle: IO[bytes] | None = None
        self._stop_timeout_s = stop_timeout_s
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
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_handle = open(log_path, "ab")
        try:
            self._proc = subprocess.Popen(
                command,
                stdout=self._log_handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            self._log_handle.close()
            raise EngineStartError(f"cannot execute {command[0]}: {exc.strerror}") from exc
        _LIVE.add(self)
        self.running = RunningEngine(
            base_url=f"http://127.0.0.1:{port}",
            log_path=log_path,
            command=command,
            launcher=self.name,
            pid=self._proc.pid,
        )
        try:
            wait_healthy(
                self.running.base_url + health_path,
                timeout_s,
                still_running=lambda: self._proc is not None and self._proc.poll() is None,
                describe_exit=self.describe_exit,
            )
        except BaseException as exc:
            self.stop()
            if isinstance(exc, EngineStartError):
                raise EngineStartError(f"{exc}\n--- engine log tail ---\n{self.running.log_tail()}") from None
            raise
        return self.running

    def describe_exit(self) -> str:
        code = self._proc.returncode if self._proc else None
        if code is not None and code < 0:  # killed by a signal: SIGILL says the CPU lacks an instruction
            with contextlib.suppress(ValueError):
                return f"exit code {code} ({signal.Signals(-code).name})"
        return f"exit code {code}"

    def is_running(self) -> bool:
        """Whether the engine process is still alive."""
        return self._proc is not None and self._proc.poll() is None

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
                os.killpg(self._proc.pid, signal.SIGCONT)  # a stopped (SIGSTOP) engine must run to see the SIGTERM
                self._proc.wait(timeout=self._stop_timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):  # only a process stuck in the kernel outlives it
                    self._proc.wait(timeout=self._stop_timeout_s)
            except ProcessLookupError:
                pass
        if self._log_handle is not None and not self._log_handle.closed:
            self._log_handle.close()
        _LIVE.discard(self)
