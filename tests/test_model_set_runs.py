"""Model sets wired into runs: real checkpoints replace synthesized models when the Hub answers, the
synthesized models stand in when it does not, and probes without a reference say "not measured".

This host cannot reach the Hub, so the download itself is replaced by a copy into the Hub's cache
layout (snapshot files linking to blobs named by their sha256); the engine, the pool and the probes
are the real ones.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.engines.base import LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.models import ModelArtifact, find_artifact
from harness.models.checkpoints import CheckpointSource, content_digest, describe
from harness.models.sets import Checkpoint, ModelSet, load_model_set
from harness.outcomes import NotMeasurable
from harness.paths import REPO_ROOT, cache_dir
from harness.probing.run_context import RunContext
from harness.probing.session import EnginePool
from harness.records.results import Status, load_records
from probes.test_model_families import check_matches_reference
from probes.test_openai_api import check_openai_api
from probes.test_speculative import check_speculative

REPO = "example-org/Llama-Real-GGUF"
GGUF_FILE = "llama-real-f16.gguf"


def _model_set() -> ModelSet:
    return ModelSet.model_validate(
        {
            "name": "hub-layout-test",
            "description": "one GGUF checkpoint",
            "models": {"llama": {"family": "llama", "formats": {"f16": {"repo": REPO, "file": GGUF_FILE}}}},
        }
    )


def _copy_into_hub_layout(source: Path):
    """A stand-in for the Hub download: the file stored as the Hub's cache stores it."""

    def fetch(checkpoint: Checkpoint, root: Path) -> Path:
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        repo_dir = root / f"models--{checkpoint.repo.replace('/', '--')}"
        (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, repo_dir / "blobs" / digest)
        snapshot = repo_dir / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True, exist_ok=True)
        link = snapshot / (checkpoint.file or "model")
        if not link.exists():
            link.symlink_to(Path("../../blobs") / digest)
        return link

    return fetch


def test_checkpoint_source_fetches_once_and_records_where_from(artifacts: list[ModelArtifact], tmp_path: Path):
    synthesized = find_artifact(artifacts, "llama", "f16")
    fetched: list[str] = []

    def fetch(checkpoint: Checkpoint, root: Path) -> Path:
        fetched.append(checkpoint.repo)
        return _copy_into_hub_layout(synthesized.path)(checkpoint, root)

    source = CheckpointSource(_model_set(), tmp_path, fetch=fetch)
    real = source.artifact("llama", "f16")
    assert real is not None and source.artifact("llama", "f16") is real and fetched == [REPO]
    assert real.source == f"hf://{REPO}/{GGUF_FILE}" and real.references == []
    assert real.sha256 == synthesized.sha256  # the blob's name is its content's sha256
    assert source.artifact("llama", "q8_0") is None and source.artifact("mistral", "hf") is None


def test_snapshot_digest_names_files_and_blobs(tmp_path: Path):
    snapshot = tmp_path / "snapshots" / "abc"
    (tmp_path / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name, content in (("config.json", b"{}"), ("model.safetensors", b"weights")):
        blob = tmp_path / "blobs" / hashlib.sha256(content).hexdigest()
        blob.write_bytes(content)
        (snapshot / name).symlink_to(Path("../../blobs") / blob.name)
    first = content_digest(snapshot)
    (tmp_path / "blobs" / hashlib.sha256(b"other").hexdigest()).write_bytes(b"other")
    (snapshot / "model.safetensors").unlink()
    (snapshot / "model.safetensors").symlink_to(Path("../../blobs") / hashlib.sha256(b"other").hexdigest())
    assert content_digest(snapshot) != first
    assert describe(Checkpoint(repo="a/b", revision="4.0bpw")) == "hf://a/b@4.0bpw"


def test_real_engine_serves_the_checkpoint_and_reference_probes_are_not_measured(
    llama_build, artifacts: list[ModelArtifact], tmp_path: Path
):
    synthesized = find_artifact(artifacts, "llama", "f16")
    source = CheckpointSource(_model_set(), tmp_path / "hub", fetch=_copy_into_hub_layout(synthesized.path))
    pool = EnginePool(LlamaCppAdapter(llama_build.server), artifacts, tmp_path / "run", checkpoints=source)
    try:
        session = pool.session(LaunchSpec())
        assert session.model.source == f"hf://{REPO}/{GGUF_FILE}"
        assert session.model_info().source == session.model.source
        assert str(tmp_path / "hub") in " ".join(session.running.command)
        assert check_openai_api(session).status is Status.PASS
        with pytest.raises(NotMeasurable, match="no float32 reference outputs"):
            check_matches_reference(session, session.model.references)
        with pytest.raises(NotMeasurable, match="no float32 reference outputs"):
            check_speculative(session, session.model.references, control=[])
    finally:
        pool.close()


def test_unreachable_hub_falls_back_to_synthesized_models(llama_build, artifacts, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    messages: list[str] = []
    context = RunContext.create(
        "llama.cpp",
        tmp_path / "results",
        cache_dir(),
        progress=messages.append,
        model_set=load_model_set(REPO_ROOT / "model-sets" / "gpu-default.yaml"),
    )
    try:
        assert context.pool.checkpoints is None
        assert any("Hub is unreachable" in message for message in messages)
    finally:
        context.pool.close()


def test_probe_run_with_a_model_set_offline_records_synthesized_models(llama_build, artifacts, tmp_path: Path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "probes/test_openai_api.py",
            "--engine",
            "llama.cpp",
            "--model-set",
            "model-sets/gpu-default.yaml",
            "--results-dir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    [record] = load_records(tmp_path)
    assert record.status is Status.PASS and record.model.source == "synthesized"


def test_malformed_model_set_is_a_usage_error(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmodels: {llama: {family: gpt}}\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "probes/test_openai_api.py",
            "--model-set",
            str(bad),
            "--results-dir",
            str(tmp_path),
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 4 and "invalid model set" in done.stderr + done.stdout
