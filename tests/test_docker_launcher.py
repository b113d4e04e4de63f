"""The Docker launcher: command translation for the container (unit), and on a real daemon isolation, health
wait, early exit, timeout, clean-up, sweep."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from harness.docker.launcher import (
    LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    ContainerConfig,
    ContainerExecError,
    DockerLauncher,
    container_command,
    device_requests,
    owner_alive,
    owner_token,
    sweep_leftovers,
)
from harness.docker.runner import config_files, models_root, translate_command
from harness.docker.specs import spec_named
from harness.engines import get_adapter
from harness.engines.base import LaunchSpec, ResolvedModels
from harness.launch.base import EngineStartError, free_port
from harness.models import find_artifact
from tests.docker_support import infercheck_containers

SPEC = spec_named("llama.cpp-cpu")


def _llama(artifacts, run_id: str, stop_timeout_s: float = 10.0, **config) -> tuple[DockerLauncher, list[str], int]:
    """A launcher of the llama.cpp CPU image and the adapter's base command for the f16 model, translated."""
    root = models_root([artifact.path for artifact in artifacts])
    model = find_artifact(artifacts, "llama", "f16").path
    port = free_port()
    command = get_adapter("llama.cpp").launch_command(LaunchSpec(), ResolvedModels(model=model), port)
    config = ContainerConfig(image=SPEC.image, run_id=run_id, mounts={str(root): "/models"}, **config)
    launcher = DockerLauncher(config, stop_timeout_s=stop_timeout_s)
    return launcher, translate_command(command, root, "/models"), port


def test_translate_command_for_the_container(tmp_path: Path):
    command = [
        "/cache/bin/llama-server",
        "--model",
        f"{tmp_path}/llama/x.gguf",
        "--host",
        "127.0.0.1",
        "--spec-draft-model",
        f"{tmp_path}/d.gguf",
        "--port",
        "8000",
    ]
    assert translate_command(command, tmp_path, "/models") == [
        "--model",
        "/models/llama/x.gguf",
        "--host",
        "0.0.0.0",
        "--spec-draft-model",
        "/models/d.gguf",
        "--port",
        "8000",
    ]
    python = ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server", "--model", str(tmp_path / "hf")]
    assert translate_command(python, tmp_path, "/models") == ["--model", "/models/hf"]


def test_config_files_named_by_the_command_are_mounted_with_container_paths(tmp_path: Path):
    """TRT-LLM's --extra_llm_api_options YAML names the draft model: inside the container it must name /models."""
    models = ResolvedModels(model=tmp_path / "llama" / "hf", draft_model=tmp_path / "llama-draft" / "hf")
    command = get_adapter("TensorRT-LLM").launch_command(LaunchSpec(draft_model="llama-draft"), models, 8000)
    command, files = config_files(command, tmp_path, "/models")
    ((target, content),) = files.items()
    assert command[command.index("--extra_llm_api_options") + 1] == target and target.startswith("/infercheck/")
    assert "speculative_model_dir: /models/llama-draft/hf" in content and str(tmp_path) not in content


def test_the_container_listens_on_its_specs_port():
    assert container_command(["--host", "0.0.0.0", "--port", "8123", "--seed", "8123"], 8123, 80) == [
        "--host",
        "0.0.0.0",
        "--port",
        "80",
        "--seed",
        "8123",
    ]
    assert container_command(["--port", "8123"], 8123, None) == ["--port", "8123"]


def test_gpu_requests_and_owners():
    assert device_requests(None) == []
    assert device_requests("all")[0]["Count"] == -1
    assert device_requests("2")[0]["Count"] == 2
    assert device_requests("device=0,1")[0]["DeviceIDs"] == ["0", "1"]
    assert owner_alive(owner_token())
    assert not owner_alive(f"{socket.gethostname()}/999999999/1")
    assert owner_alive("another-host/1/1")


@pytest.mark.engine_integration
def test_container_is_isolated_logged_and_removed(
    docker_connection, llama_image, artifacts, tmp_path: Path, monkeypatch
):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_value")
    launcher, command, port = _llama(artifacts, "t-healthy", passthrough_env=("HF_TOKEN",))
    running = launcher.start(command, port, SPEC.health, tmp_path / "engine.log", timeout_s=60)
    try:
        container = docker_connection.client.containers.get(infercheck_containers(docker_connection, "t-healthy")[0])
        assert container.attrs["HostConfig"]["PortBindings"][f"{port}/tcp"] == [
            {"HostIp": "127.0.0.1", "HostPort": str(port)}
        ]
        assert [(m["Destination"], m["RW"]) for m in container.attrs["Mounts"]] == [("/models", False)]
        # a failing command is an error with its output, never its output as if it were the answer (the LightLLM
        # version used to be whatever `cat` printed, exit code unchecked)
        with pytest.raises(ContainerExecError, match="exited with 1: touch: cannot touch '/models/x': Read-only"):
            launcher.exec(["sh", "-c", "touch /models/x 2>&1"])
        assert launcher.exec(["printenv", "HF_TOKEN"]) == "hf_secret_value"
        assert container.labels[OWNER_LABEL] == owner_token()
        assert httpx.get(running.base_url + SPEC.health).status_code == 200
        assert running.image_digest == llama_image.id and running.command[0] == SPEC.entrypoint[0]
    finally:
        launcher.stop()
    assert f"0.0.0.0:{port}" in running.log_text()  # the engine's own output, captured into the run folder
    assert "hf_secret_value" not in running.log_text() + repr(running)
    assert infercheck_containers(docker_connection, "t-healthy") == []
    assert not launcher.is_running()


@pytest.mark.engine_integration
def test_exit_at_start_is_a_clear_error_with_log_tail(docker_connection, llama_image, artifacts, tmp_path: Path):
    launcher, command, port = _llama(artifacts, "t-exit")
    command[command.index("--model") + 1] = "/models/missing.gguf"
    with pytest.raises(EngineStartError, match="exited before it became healthy: container exit code 1") as info:
        launcher.start(command, port, SPEC.health, tmp_path / "engine.log", timeout_s=60)
    assert "container log tail" in str(info.value) and "missing.gguf" in str(info.value)
    assert infercheck_containers(docker_connection, "t-exit") == []


@pytest.mark.engine_integration
def test_never_healthy_times_out_and_is_removed(docker_connection, llama_image, artifacts, tmp_path: Path):
    # sleep, as the container's first process, ignores SIGTERM: a short grace before SIGKILL
    launcher, _, port = _llama(artifacts, "t-timeout", stop_timeout_s=1, entrypoint=["/bin/sleep"])
    started = time.monotonic()
    with pytest.raises(EngineStartError, match="not healthy after 2s"):
        launcher.start(["60"], port, SPEC.health, tmp_path / "engine.log", timeout_s=2)
    assert time.monotonic() - started < 20
    assert infercheck_containers(docker_connection, "t-timeout") == []


@pytest.mark.engine_integration
def test_files_are_mounted_read_only(docker_connection, llama_image, artifacts, tmp_path: Path):
    files = {"/infercheck/draft.yaml": "speculative_config:\n  max_draft_len: 4\n"}
    launcher, _, port = _llama(artifacts, "t-files", entrypoint=["/bin/cat"], files=files)
    with pytest.raises(EngineStartError, match="container exit code 0") as info:
        launcher.start(["/infercheck/draft.yaml"], port, SPEC.health, tmp_path / "engine.log", timeout_s=20)
    assert "max_draft_len: 4" in str(info.value)
    assert infercheck_containers(docker_connection, "t-files") == []


@pytest.mark.engine_integration
def test_sweep_removes_only_containers_of_dead_owners(docker_connection, llama_image):
    client = docker_connection.client

    def create(owner: str):
        return client.containers.create(
            llama_image.id,
            entrypoint=["/bin/sleep"],
            command=["60"],
            labels={LABEL: "1", RUN_LABEL: "t-sweep", OWNER_LABEL: owner},
        )

    dead, alive = create(f"{socket.gethostname()}/999999999/1"), create(owner_token())
    try:
        removed = sweep_leftovers(client)
        assert dead.name in removed and alive.name not in removed
    finally:
        alive.remove(force=True)
    assert infercheck_containers(docker_connection, "t-sweep") == []
