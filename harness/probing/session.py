"""Engine sessions: start each launch configuration once and hand it to every probe that needs it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from harness.engines.base import EngineAdapter, LaunchSpec, ResolvedModels
from harness.host.provenance import host_info
from harness.launch.base import (
    PORT_ATTEMPTS,
    EngineStartError,
    KernelMissing,
    Launcher,
    RunningEngine,
    free_port,
    missing_kernel_line,
    port_taken,
)
from harness.launch.process import ProcessLauncher
from harness.models import ModelArtifact, find_artifact
from harness.models.cache import ModelIntegrityError, verify_artifact
from harness.models.checkpoints import CheckpointSource
from harness.outcomes import NotMeasurable
from harness.records.results import EngineIdentity, LaunchInfo, ModelInfo
from harness.wire.client import EvidenceClient

HEALTH_TIMEOUT_S = 5.0  # a reused engine that does not answer its health check this fast is restarted
LIVENESS_TIMEOUT_S = 10.0  # after a read timeout: an engine that cannot generate one token this fast is hung

if TYPE_CHECKING:
    from harness.docker.runner import ContainerRunner


@dataclass
class EngineSession:
    """A running engine serving one launch configuration."""

    adapter: EngineAdapter
    spec: LaunchSpec
    running: RunningEngine
    identity: EngineIdentity
    model: ModelArtifact
    served_model: str
    client: EvidenceClient
    launch: LaunchInfo
    artifacts: list[ModelArtifact] = field(default_factory=list)

    def model_info(self) -> ModelInfo:
        """Provenance of the served model."""
        return ModelInfo(
            name=self.model.name,
            family=self.model.family,
            format=self.model.format,
            sha256=self.model.sha256,
            source=self.model.source,
        )


class EnginePool:
    """Starts engines per launch spec (one at a time) or attaches to a server the user runs."""

    def __init__(
        self,
        adapter: EngineAdapter,
        artifacts: list[ModelArtifact],
        run_dir: Path,
        devices: int = 0,
        attach_url: str | None = None,
        attach_spec: LaunchSpec | None = None,
        containers: ContainerRunner | None = None,
        checkpoints: CheckpointSource | None = None,
    ) -> None:
        self.adapter = adapter
        self.artifacts = artifacts
        self.run_dir = run_dir
        self.devices = devices
        self.attach_url = attach_url.rstrip("/") if attach_url else None
        attach_spec = attach_spec or LaunchSpec()
        self.attach_spec = replace(attach_spec, model_format=attach_spec.model_format or adapter.native_format)
        self.containers = containers  # set: engines run in containers (--launcher docker)
        self.checkpoints = checkpoints  # set: a model set's real checkpoints replace synthesized models
        self._current: tuple[LaunchSpec, EngineSession, Launcher | None] | None = None
        self._failed: dict[LaunchSpec, EngineStartError] = {}
        self._dead: dict[LaunchSpec, str] = {}  # launches that stopped answering while probes ran: why

    def session_spec(self, spec: LaunchSpec) -> LaunchSpec:
        """`spec` as the pool runs it: the adapter's native format filled in."""
        return replace(spec, model_format=spec.model_format or self.adapter.native_format)

    def session(self, spec: LaunchSpec) -> EngineSession:
        """The engine for `spec`, starting it (and stopping the previous one) if needed."""
        spec = self.session_spec(spec)
        if (dead := self.dead_reason(spec)) is not None:
            raise EngineStartError(dead)
        if self._current and self._current[0] == spec and self.engine_exit() is None:
            if self._answers(self._current[1]):
                return self._current[1]
            if self.attach_url:
                self.mark_dead(
                    spec, f"the attached server at {self.attach_url} stopped answering {self.adapter.health_path}"
                )
                raise EngineStartError(self.dead_reason(spec) or "")
            self.close()  # hung or stopped (SIGSTOP): the next probe gets a fresh engine
        if spec in self._failed:
            failed = self._failed[spec]
            if isinstance(failed, KernelMissing):
                raise KernelMissing(str(failed), failed.engine_line)
            raise EngineStartError(str(failed))
        if self.attach_url:
            if spec != self.attach_spec:
                raise NotMeasurable(
                    f"attach mode serves one configuration ({self.attach_spec.key()}); this probe needs {spec.key()}"
                )
            try:
                return self._attach(spec)
            except EngineStartError as exc:  # the one server: every later probe would wait on it again
                at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                self.mark_dead(spec, f"engine stopped answering at {at}: {exc}")
                raise EngineStartError(self.dead_reason(spec) or str(exc)) from None
        self.adapter.check_launchable(spec, self.devices)
        self.close()
        try:
            return self._launch(spec)
        except EngineStartError as exc:
            failed = self._kernel_missing(exc, spec) or exc
            self._failed[spec] = failed
            if failed is exc:
                raise
            raise failed from None

    def _log_path(self, spec: LaunchSpec) -> Path:
        return self.run_dir / "logs" / f"{spec.key().replace('/', '_')}.log"

    def _kernel_missing(self, exc: EngineStartError, spec: LaunchSpec) -> KernelMissing | None:
        """The start failure as KernelMissing when the engine's log (or its exit) says a kernel is missing for this
        host's instruction set; the same for every engine and launcher (harness.launch.base.missing_kernel_line)."""
        log = self._log_path(spec)
        text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
        line = missing_kernel_line(f"{text}\n{exc}")
        if line is None:
            return None
        message = (
            f"{self.adapter.name} cannot start this launch ({spec.key()}) on this host's instruction set "
            f"({host_info().level()}): its build for this level lacks a kernel it needs; the engine said: {line}"
        )
        return KernelMissing(message, line)

    def planned_launch(self, spec: LaunchSpec) -> LaunchInfo:
        """The launch `spec` would have had, for a record written before any engine ran it (Unsupported,
        NotMeasurable, KernelMissing): the launcher, the adapter's launch config and its compute dtype."""
        spec = self.session_spec(spec)
        launcher = "attach" if self.attach_url else "process" if self.containers is None else "docker"
        return LaunchInfo(
            launcher=launcher,
            config=spec.key(),
            options=dict(vars(spec)),
            compute_dtype=None if self.attach_url else self.adapter.compute_dtype(spec),
        )

    def planned_model(self, spec: LaunchSpec) -> ModelInfo:
        """The model `spec` would have served (the synthesized one), for a record written before any engine ran it."""
        spec = self.session_spec(spec)
        fmt = spec.model_format or self.adapter.native_format
        try:
            artifact = find_artifact(self.artifacts, spec.model, fmt)
        except KeyError:
            return ModelInfo(name=spec.model, family=spec.model, format=fmt, source="synthesized")
        return ModelInfo(
            name=artifact.name,
            family=artifact.family,
            format=artifact.format,
            sha256=artifact.sha256,
            source=artifact.source,
        )

    def _model_for(self, spec: LaunchSpec) -> tuple[ModelArtifact, ModelArtifact | None]:
        fmt = spec.model_format or self.adapter.native_format
        model = self._artifact(spec.model, fmt)
        draft = self._artifact(spec.draft_model, fmt) if spec.draft_model else None
        return model, draft

    def _artifact(self, name: str, fmt: str) -> ModelArtifact:
        """The model set's checkpoint for `name` in `fmt`, else the synthesized model."""
        if self.checkpoints is not None:
            try:
                real = self.checkpoints.artifact(name, fmt)
            except Exception as exc:  # the Hub client raises HTTP, OS and validation errors alike
                raise EngineStartError(f"cannot fetch the model set's {name} ({fmt}): {exc}") from exc
            if real is not None:
                return real
        try:
            return find_artifact(self.artifacts, name, fmt)
        except KeyError as exc:
            raise NotMeasurable(f"no such model on this host: {exc}") from None

    def _answers(self, session: EngineSession) -> bool:
        """Whether the engine still answers its health check within HEALTH_TIMEOUT_S."""
        url = session.running.base_url + session.spec.api_prefix + self.adapter.health_path
        try:
            return httpx.get(url, timeout=HEALTH_TIMEOUT_S).status_code == 200
        except httpx.HTTPError:
            return False

    def hung(self, session: EngineSession) -> str | None:
        """Why `session`'s engine is hung (after a read timeout): it exited, or it does not answer its health check
        or a one-token request within LIVENESS_TIMEOUT_S; None when it answers both."""
        if self._current is not None and self._current[1] is session and (exited := self.engine_exit()):
            return exited.splitlines()[0]
        base = session.running.base_url + session.spec.api_prefix
        request = self.adapter.fixed_length_request(session.served_model, "the cat", 1, stream=False)
        checks = [("GET", self.adapter.health_path, None), (request.method, request.path, request.body)]
        try:
            with httpx.Client(timeout=LIVENESS_TIMEOUT_S) as client:
                for method, path, body in checks:
                    started = time.monotonic()
                    client.request(method, base + path, json=body, headers=request.headers)  # any answer is life
        except httpx.HTTPError as exc:
            return (
                f"the liveness check {method} {base}{path} got no answer within {LIVENESS_TIMEOUT_S:g}s "
                f"({type(exc).__name__} after {time.monotonic() - started:.1f}s)"
            )
        return None

    def dead_reason(self, spec: LaunchSpec) -> str | None:
        """Why the launch `spec` was marked dead (it stopped answering), or None."""
        spec = self.session_spec(spec)
        if spec not in self._dead:
            return None
        return f"{self._dead[spec]} (launch {spec.key()} marked dead; not started again)"

    def mark_dead(self, spec: LaunchSpec, reason: str) -> None:
        """The launch `spec` stopped answering: stop it; each later probe that needs it is an error at once."""
        spec = self.session_spec(spec)
        self._dead[spec] = reason
        if self._current is not None and self._current[0] == spec:
            self.close()

    def _launch(self, spec: LaunchSpec) -> EngineSession:
        model, draft = self._model_for(spec)
        for artifact in (model, draft):
            try:
                if artifact is not None:
                    verify_artifact(artifact)  # a changed file must never run under the manifest's sha256
            except ModelIntegrityError as exc:
                raise EngineStartError(str(exc)) from None
        resolved = ResolvedModels(model=model.path, draft_model=draft.path if draft else None)
        log_path = self._log_path(spec)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = free_port()
            command = self.adapter.launch_command(spec, resolved, port)
            launcher: Launcher = ProcessLauncher()
            if self.containers is not None:
                launcher, command = self.containers.launcher(command)
            starting = time.monotonic()
            try:
                running = launcher.start(
                    command,
                    port,
                    spec.api_prefix + self.adapter.health_path,
                    log_path,
                    env=self.adapter.launch_env(spec),
                    timeout_s=self.adapter.startup_timeout_s,
                )
                break
            except EngineStartError:
                if attempt == PORT_ATTEMPTS or not port_taken(port):
                    raise  # not a lost race for the port
        ready_s = round(time.monotonic() - starting, 2)
        try:
            session = self._make_session(spec, running, model, resolved, launcher.name, ready_s)
            if self.containers is not None:
                session.identity = self.containers.identity(session.identity, launcher)
        except EngineStartError:
            launcher.stop()
            raise
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
            launcher.stop()
            raise EngineStartError(
                f"the engine at {running.base_url} came up but did not say who it is: {type(exc).__name__}: {exc}"
            ) from exc
        except BaseException:
            launcher.stop()
            raise
        self._current = (spec, session, launcher)
        return session

    def _attach(self, spec: LaunchSpec) -> EngineSession:
        model, draft = self._model_for(spec)
        running = RunningEngine(base_url=self.attach_url or "", log_path=None, launcher="attach")
        resolved = ResolvedModels(model=model.path, draft_model=draft.path if draft else None)
        try:
            session = self._make_session(spec, running, model, resolved, "attach", ready_s=None)
        except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:  # the adapter's identity requests
            raise EngineStartError(
                f"the attached server at {self.attach_url} did not say who it is: {type(exc).__name__}: {exc}"
            ) from exc
        self._current = (spec, session, None)
        return session

    def _make_session(
        self,
        spec: LaunchSpec,
        running: RunningEngine,
        model: ModelArtifact,
        resolved: ResolvedModels,
        launcher: str,
        ready_s: float | None,
    ) -> EngineSession:
        identity = self.adapter.identity(running)
        launch = LaunchInfo(
            launcher=launcher,
            config=spec.key(),
            command=running.command,
            base_url=running.base_url,
            options={k: v for k, v in vars(spec).items()},
            ready_s=ready_s,
            compute_dtype=None if launcher == "attach" else self.adapter.compute_dtype(spec),
        )
        return EngineSession(
            adapter=self.adapter,
            spec=spec,
            running=running,
            identity=identity,
            model=model,
            served_model=self.adapter.served_model_name(resolved),
            client=EvidenceClient(running.base_url),
            launch=launch,
            artifacts=self.artifacts,
        )

    def engine_exit(self) -> str | None:
        """Why the engine this pool started is gone, with its log tail; None while it runs."""
        if self._current is None:
            return None
        _, session, launcher = self._current
        if launcher is None or launcher.is_running():
            return None
        return (
            f"the engine exited while probes ran: {launcher.describe_exit()}\n"
            f"--- engine log tail ---\n{session.running.log_tail()}"
        )

    def close(self) -> None:
        """Stop the engine this pool started, if any."""
        if self._current is None:
            return
        _, session, launcher = self._current
        session.client.close()
        if launcher is not None:
            launcher.stop()
        self._current = None
