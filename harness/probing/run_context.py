"""Everything one probe run shares: the adapter, the models, the engine pool and where records go."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from harness.engines import get_adapter
from harness.engines.base import EngineAdapter, LaunchSpec
from harness.host.provenance import gpu_names
from harness.models import ModelArtifact, ensure_models, find_artifact
from harness.models.checkpoints import CheckpointSource, hub_root
from harness.models.sets import ModelSet, hub_reachable
from harness.probing.session import EnginePool
from harness.records.results import NOT_STARTED, EngineIdentity, run_dir_for
from harness.toolchain import llamacpp as llamacpp_toolchain

if TYPE_CHECKING:
    from harness.docker.runner import DockerOptions


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus a short random suffix."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


@dataclass
class RunContext:
    """The state of one `infercheck run` / `pytest probes` invocation."""

    run_id: str
    run_dir: Path
    adapter: EngineAdapter
    artifacts: list[ModelArtifact]
    pool: EnginePool
    last_identity: EngineIdentity | None = None

    @classmethod
    def create(
        cls,
        engine: str,
        results_dir: Path,
        cache: Path,
        attach_url: str | None = None,
        attach_spec: LaunchSpec | None = None,
        run_id: str | None = None,
        progress: Callable[[str], None] = print,
        docker: DockerOptions | None = None,
        model_set: ModelSet | None = None,
    ) -> RunContext:
        """Resolve the engine, make sure the models exist, and prepare the engine pool."""
        adapter = get_adapter(engine)
        checkpoints = _checkpoint_source(model_set, cache, progress)
        if attach_url is None and docker is None:
            adapter.prepare()
        build = llamacpp_toolchain.find_build(cache)
        artifacts = ensure_models(cache, build.quantize if build else None, progress=progress)
        if attach_url is not None:
            spec = attach_spec or LaunchSpec()
            find_artifact(artifacts, spec.model, spec.model_format or adapter.native_format)
        run_id = run_id or new_run_id()
        run_dir = run_dir_for(results_dir, adapter.name, run_id)
        devices = len(gpu_names())
        containers = None
        if docker is not None and attach_url is None:
            from harness.docker.runner import ContainerRunner

            model_paths = [artifact.path for artifact in artifacts] + ([checkpoints.root] if checkpoints else [])
            containers = ContainerRunner.create(adapter.name, model_paths, run_id, devices, docker, progress)
            adapter.use_container(containers.spec)
        pool = EnginePool(
            adapter,
            artifacts,
            run_dir,
            devices=devices,
            attach_url=attach_url,
            attach_spec=attach_spec,
            containers=containers,
            checkpoints=checkpoints,
        )
        return cls(run_id=run_id, run_dir=run_dir, adapter=adapter, artifacts=artifacts, pool=pool)

    def identity(self) -> EngineIdentity:
        """The engine identity seen last in this run (before any start: the installed one the adapter knows, else
        its name only)."""
        if self.last_identity is not None:
            return self.last_identity
        return self.adapter.installed_identity() or EngineIdentity(name=self.adapter.name, version=NOT_STARTED)


def _checkpoint_source(
    model_set: ModelSet | None, cache: Path, progress: Callable[[str], None]
) -> CheckpointSource | None:
    """The model set's checkpoints when the Hub answers; None (synthesized models) otherwise."""
    if model_set is None:
        return None
    if not hub_reachable():
        progress(
            f"model set {model_set.name}: the Hugging Face Hub is unreachable, so the synthesized models "
            "stand in wherever the engine can load them"
        )
        return None
    root = hub_root(cache)
    root.mkdir(parents=True, exist_ok=True)
    return CheckpointSource(model_set, root)
