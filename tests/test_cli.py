"""Bad input gets a clear one-line error and a non-zero exit; the main job works end to end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.launch.base import free_port
from harness.paths import REPO_ROOT
from harness.records.results import Status, load_records

SEED_TABLE = Path("/work/shared/lm-inference-engines-table.md")


def infercheck(*args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harness.cli.app", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines, result.stderr[-2000:]
    return lines[0]


def test_unknown_engine():
    result = infercheck("run", "--engine", "nosuchengine")
    assert result.returncode == 2
    assert "unknown engine 'nosuchengine'" in _error_line(result)


def test_unreachable_base_url():
    result = infercheck("run", "--engine", "llama.cpp", "--base-url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 2
    assert "cannot reach" in _error_line(result)


def test_malformed_table(tmp_path: Path):
    bad = tmp_path / "table.md"
    bad.write_text("| a | b |\n|---|---|\n| x | y | z |\n")
    result = infercheck("claims-import", str(bad), "--source", "test", "--out-dir", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "malformed table" in _error_line(result)


def test_missing_table(tmp_path: Path):
    result = infercheck("claims-import", str(tmp_path / "none.md"), "--source", "x")
    assert result.returncode == 2 and "table not found" in _error_line(result)


def test_run_names_its_report_folder_out_dir_only():
    from typer.testing import CliRunner

    from harness.cli.app import app

    result = CliRunner().invoke(app, ["run", "--report-dir", "x", "--no-report"])
    assert result.exit_code == 2 and "No such option" in result.output  # the old hidden alias is gone
    result = CliRunner().invoke(app, ["run", "--help"], terminal_width=200)
    assert "--out-dir" in result.output and "--report-dir" not in result.output


@pytest.mark.engine_integration
def test_missing_model_in_attach_mode(llama_build, artifacts, tmp_path: Path):
    port = free_port()
    model = next(a for a in artifacts if a.name == "llama" and a.format == "f16")
    server = subprocess.Popen(
        [str(llama_build.server), "-m", str(model.path), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(port)
        result = infercheck(
            "run",
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--attach-model",
            "nosuchmodel",
            "--results-dir",
            str(tmp_path),
            "--no-report",
            "-k",
            "openai",
        )
    finally:
        server.terminate()
        server.wait()
    assert result.returncode != 0
    assert "nosuchmodel" in (result.stdout + result.stderr)


@pytest.mark.engine_integration
def test_engine_that_exits_at_start(llama_build, artifacts, tmp_path: Path):
    env = {**os.environ, "INFERCHECK_LLAMA_SERVER": "/bin/false"}
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli.app", "run", "--results-dir", str(tmp_path), "--no-report", "-k", "openai"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 1
    assert "could not finish" in _error_line(result)
    records = load_records(tmp_path)
    assert [r.status for r in records] == [Status.ERROR]
    assert "exited before it became healthy" in records[0].reason


def _wait(port: int, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(port)


@pytest.mark.engine_integration
def test_attach_mode_gives_launch_mode_verdicts(llama_build, artifacts, tmp_path: Path):
    selection = "openai or (json_schema and not coverage) or grammar or beam or (model_family and llama)"
    launched = infercheck("run", "--results-dir", str(tmp_path / "launch"), "--no-report", "-k", selection)
    assert launched.returncode == 0, launched.stdout[-3000:]
    port = free_port()
    model = next(a for a in artifacts if a.name == "llama" and a.format == "f16")
    server = subprocess.Popen(
        [str(llama_build.server), "-m", str(model.path), "--port", str(port), "--parallel", "4", "--threads", "2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait(port)
        attached = infercheck(
            "run",
            "--base-url",
            f"http://127.0.0.1:{port}",
            "--results-dir",
            str(tmp_path / "attach"),
            "--no-report",
            "-k",
            selection,
        )
    finally:
        server.terminate()
        server.wait()
    assert attached.returncode == 0, attached.stdout[-3000:]
    verdicts = {kind: {r.probe: r.status for r in load_records(tmp_path / kind)} for kind in ("launch", "attach")}
    assert verdicts["launch"] == verdicts["attach"]
    assert len(verdicts["launch"]) == 5


@pytest.mark.engine_integration
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill-9"])
def test_interrupted_run_keeps_records_and_leaves_no_engine(llama_build, artifacts, tmp_path: Path, how):
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.cli.app", "run", "--results-dir", str(tmp_path), "--no-report"],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and len(list(tmp_path.rglob("*.json"))) < 2:
        time.sleep(0.2)
    engines = _children(process.pid)  # by pid: a llama-server of the user's own is none of this test's business
    process.send_signal(how)
    process.communicate(timeout=120)
    if how == signal.SIGINT:
        assert process.returncode == 130
    time.sleep(1)
    records = load_records(tmp_path)
    assert len(records) >= 2
    for path in tmp_path.rglob("*.json"):
        json.loads(path.read_text())
    assert not [pid for pid in engines if _alive(pid)]


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return children


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
