"""The process launcher: health wait, early exit, timeout, and nothing left running."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from harness.launch.base import EngineStartError, free_port
from harness.launch.process import ProcessLauncher

SERVER = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split()[2] != "Z"


def test_start_healthy_and_stop(tmp_path: Path):
    launcher = ProcessLauncher()
    port = free_port()
    running = launcher.start([*SERVER, str(port)], port, "/", tmp_path / "engine.log", timeout_s=20)
    assert running.base_url == f"http://127.0.0.1:{port}"
    pid = launcher._proc.pid
    launcher.stop()
    assert not _alive(pid)
    assert "GET / " in running.log_text()


def test_exit_at_start_is_a_clear_error_with_log_tail(tmp_path: Path):
    launcher = ProcessLauncher()
    command = [sys.executable, "-c", "import sys; print('bad model file'); sys.exit(3)"]
    with pytest.raises(EngineStartError, match="exited before it became healthy: exit code 3") as info:
        launcher.start(command, free_port(), "/health", tmp_path / "engine.log", timeout_s=20)
    assert "bad model file" in str(info.value)


def test_never_healthy_times_out_and_is_stopped(tmp_path: Path):
    launcher = ProcessLauncher()
    command = [sys.executable, "-c", "import time; time.sleep(60)"]
    started = time.monotonic()
    with pytest.raises(EngineStartError, match="not healthy after 2s"):
        launcher.start(command, free_port(), "/health", tmp_path / "engine.log", timeout_s=2)
    assert time.monotonic() - started < 15
    assert not launcher.is_running()


def test_missing_executable(tmp_path: Path):
    with pytest.raises(EngineStartError, match="cannot execute"):
        ProcessLauncher().start(["/nonexistent/llama-server"], free_port(), "/health", tmp_path / "e.log")


def test_stop_kills_the_whole_process_group(tmp_path: Path):
    port = free_port()
    child_pid_file = tmp_path / "child.pid"
    script = (
        f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(child_pid_file)!r}, 'w').write(str(p.pid)); "
        f"import http.server; http.server.test(HandlerClass=http.server.SimpleHTTPRequestHandler, "
        f"port={port}, bind='127.0.0.1')"
    )
    launcher = ProcessLauncher()
    launcher.start([sys.executable, "-c", script], port, "/", tmp_path / "engine.log", timeout_s=20)
    child = int(child_pid_file.read_text())
    launcher.stop()
    time.sleep(0.2)
    assert not _alive(child)
