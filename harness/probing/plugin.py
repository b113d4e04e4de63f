"""pytest glue for probes: options, the engine pool, the recorder, and the verdict summary.

A probe is a test that takes the `probe` fixture, asks it for an engine (the launch
configuration comes from the `launch` marker), and records one Verdict. Exceptions map to
verdicts: NotMeasurable -> not measured (test skipped), Unsupported -> fail with the
documented absence, anything else -> error (test fails). Each record is written atomically
as soon as its probe ends, so an interrupted run keeps what it measured.

Every probe runs under the harness's deadline (harness.deadline: $INFERCHECK_PROBE_TIMEOUT_S, every
request $INFERCHECK_REQUEST_TIMEOUT_S); past it the probe is an error and the run moves on. Ctrl-C
(SIGINT) and SIGTERM stop the run: the probe in progress is recorded as an error ("interrupted"),
the engines are stopped and the exit status is 130 or 143. A record that cannot be written where it
belongs is written under the spare folder (or printed) and the run says where.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import stat
import sys
import tempfile
import threading
import traceback
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from harness.atomic import check_writable
from harness.deadline import DeadlineExceeded, EngineStopped, check_deadlines, liveness, probe_deadline, probe_timeout_s
from harness.docker.specs import SpecError, select_spec
from harness.engines import UnknownEngineError, adapter_classes
from harness.engines.base import LaunchSpec
from harness.host.provenance import gpu_names, harness_info, host_info
from harness.launch.base import KernelMissing
from harness.models.sets import ModelSet, ModelSetError, load_model_set
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import cache_dir, default_results_dir
from harness.probing.run_context import RunContext
from harness.probing.session import EngineSession
from harness.records.features import row_for
from harness.records.results import (
    LEGACY_ABSENCE_NOTE,
    SAFE_NAME,
    Evidence,
    Exchange,
    LaunchInfo,
    ResultRecord,
    Status,
    Verdict,
    write_record,
)

_CONTEXT_KEY = pytest.StashKey[RunContext]()
_VERDICTS_KEY = pytest.StashKey[list[ResultRecord]]()
_MODEL_SET_KEY = pytest.StashKey[ModelSet]()
_HANDLERS_KEY = pytest.StashKey[dict[int, Any]]()  # the signal handlers before this run's


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("infercheck")
    group.addoption("--engine", default="llama.cpp", help="engine adapter to probe (default: llama.cpp)")
    group.addoption("--base-url", default=None, help="attach to a server you started instead of launching one")
    group.addoption("--attach-model", default="llama", help="synthesized model the attached server serves")
    group.addoption("--attach-format", default=None, help="its format (default: the adapter's native format)")
    group.addoption(
        "--attach-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a launch option the attached server was started with (e.g. tool_calling=true), so the probes that need "
        "it run; recorded as declared, not verified",
    )
    group.addoption(
        "--model-set",
        default=None,
        help="YAML naming real checkpoints per probe model (model-sets/); used when the Hub answers",
    )
    group.addoption("--results-dir", default=str(default_results_dir()), help="where result records go")
    group.addoption("--run-id", default=None, help="run id (default: time + random suffix)")
    group.addoption(
        "--launcher",
        choices=("process", "docker"),
        default="process",
        help="run engines as native processes or in containers (containers/<name>/spec.yaml)",
    )
    group.addoption(
        "--container",
        default=None,
        help="with --launcher docker: the container spec (default: the engine's that suits this host)",
    )
    group.addoption("--pull", action="store_true", help="with --launcher docker: pull a missing image")
    group.addoption(
        "--docker-gpus",
        default=None,
        help="with --launcher docker: GPUs for the container: all, a count, or device=0,1",
    )


def _docker_options(config: pytest.Config) -> Any:
    """DockerOptions when --launcher docker is asked for, else None."""
    if config.getoption("--launcher") != "docker":
        return None
    try:
        from harness.docker.runner import DockerOptions
    except ImportError as exc:
        message = f"--launcher docker needs the Docker SDK ({exc.name}): pip install -e '.[docker]'"
        raise pytest.UsageError(message) from exc
    return DockerOptions(
        container=config.getoption("--container"),
        pull=config.getoption("--pull"),
        gpus=config.getoption("--docker-gpus"),
    )


def _container_needs_gpu(config: pytest.Config) -> bool:
    """With --launcher docker: whether the engine's image needs a GPU (then so does every probe)."""
    if config.getoption("--launcher") != "docker":
        return False
    try:
        spec = select_spec(config.getoption("--engine"), len(gpu_names()), config.getoption("--container"))
    except SpecError:
        return False
    return spec.needs_gpu


MARKERS = (
    "cpu: probe runs on a CPU-only host",
    "gpu: probe needs a GPU",
    "multi_gpu: probe needs more than one GPU",
    "feature(name): the comparison-table row a probe measures (harness.records.features)",
    "launch(**spec): the LaunchSpec fields the probe's engine needs",
    "engine_integration: test starts a real engine",
)


def pytest_configure(config: pytest.Config) -> None:
    for marker in MARKERS:
        config.addinivalue_line("markers", marker)
    try:
        check_deadlines()
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_VERDICTS_KEY] = []
    config.stash[_DECLARED_KEY] = attach_options(config.getoption("--attach-option", []) or [])
    if config.stash[_DECLARED_KEY] and not config.getoption("--base-url", None):
        raise pytest.UsageError("--attach-option says how an attached server was started: it needs --base-url")
    if config.getoption("--model-set", None):
        try:
            config.stash[_MODEL_SET_KEY] = load_model_set(Path(config.getoption("--model-set")))
        except ModelSetError as exc:
            raise pytest.UsageError(str(exc)) from None
    _interrupted_by.clear()
    if threading.current_thread() is threading.main_thread():
        previous: dict[int, Any] = {
            signum: signal.signal(signum, _interrupt) for signum in (signal.SIGINT, signal.SIGTERM)
        }
        config.stash[_HANDLERS_KEY] = previous


def pytest_unconfigure(config: pytest.Config) -> None:
    for signum, handler in config.stash.get(_HANDLERS_KEY, {}).items():
        signal.signal(signum, handler)


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT (Ctrl-C) or SIGTERM."""


_interrupted_by: list[int] = []  # the signal that stopped this run, once one did


def _interrupt(signum: int, frame: Any) -> None:
    _interrupted_by.append(signum)
    raise Interrupted(signal.Signals(signum).name)


def interrupt_status() -> int | None:
    """128 + the signal that stopped this run (130 Ctrl-C, 143 SIGTERM); None when none did."""
    return 128 + _interrupted_by[0] if _interrupted_by else None


def _check_interrupted() -> None:
    """Raise again an interrupt that landed where it was swallowed (a __del__, a callback)."""
    if _interrupted_by:
        raise Interrupted(signal.Signals(_interrupted_by[0]).name)


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    _check_interrupted()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    status = interrupt_status()
    if status is not None:
        session.exitstatus = status


def _launch_spec(item: pytest.Item) -> LaunchSpec:
    marker = item.get_closest_marker("launch")
    return LaunchSpec(**(marker.kwargs if marker else {}))


_DECLARED_KEY = pytest.StashKey[dict[str, Any]]()  # --attach-option: how the attached server says it was started
_NOT_OPTIONS = ("model", "model_format")  # --attach-model and --attach-format say these


def attach_options(values: list[str]) -> dict[str, Any]:
    """--attach-option KEY=VALUE pairs as LaunchSpec fields (true/false/none/integers parsed)."""
    fields = {field.name: field for field in dataclasses.fields(LaunchSpec) if field.name not in _NOT_OPTIONS}
    options: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or key.strip() not in fields:
            raise pytest.UsageError(
                f"--attach-option {value!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}"
            )
        lowered = raw.strip().lower()
        parsed: Any = {"true": True, "false": False, "none": None}.get(lowered, raw.strip())
        if isinstance(parsed, str) and parsed.lstrip("-").isdigit():
            parsed = int(parsed)
        options[key.strip()] = parsed
    return options


def _with_declared(spec: LaunchSpec, config: pytest.Config) -> LaunchSpec:
    """In attach mode, the declared options fill the fields a probe leaves at their default: a server started with
    tool calling serves the probes that do not ask for it too."""
    declared = config.stash.get(_DECLARED_KEY, {})
    defaults = LaunchSpec()
    return replace(spec, **{k: v for k, v in declared.items() if getattr(spec, k) == getattr(defaults, k)})


def _declared_launch(launch: LaunchInfo, config: pytest.Config) -> LaunchInfo:
    """An attached server's launch record with the options its user declared, marked as not verified."""
    declared = config.stash.get(_DECLARED_KEY, {})
    if launch.launcher != "attach" or not declared:
        return launch
    return launch.model_copy(update={"options": {**launch.options, "declared_not_verified": declared}})


def _is_probe(item: pytest.Item) -> bool:
    return "probe" in getattr(item, "fixturenames", ())


@pytest.hookimpl(tryfirst=True)  # before -m deselects: the gpu mark may be added here
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Group probes by launch configuration so each configuration starts once (the base one first)."""
    adapter = adapter_classes().get(config.getoption("--engine"))
    native = adapter.native_format if adapter else None

    def normalized(item: pytest.Item) -> LaunchSpec:
        spec = _launch_spec(item)
        return replace(spec, model_format=spec.model_format or native)

    base = LaunchSpec(model_format=native)
    probes = [item for item in items if _is_probe(item)]
    if probes:
        _check_results_dir(config)
    if config.pluginmanager.hasplugin("timeout"):  # pytest-timeout, a backstop behind the harness's deadline
        for item in probes:
            item.add_marker(pytest.mark.timeout(probe_timeout_s() + 120))
    others = [item for item in items if not _is_probe(item)]
    probes.sort(key=lambda item: (normalized(item) != base, normalized(item).key()))
    if _container_needs_gpu(config):
        for item in probes:
            item.add_marker(pytest.mark.gpu)
    items[:] = others + probes


def _say(config: pytest.Config) -> Any:
    """A progress printer past pytest's output capture (a fixture's print would be swallowed)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")

    def say(message: str) -> None:
        with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
            if reporter is None:
                print(f"infercheck: {message}", file=sys.stderr)
            else:
                reporter.write_line(f"infercheck: {message}")

    return say


def _check_results_dir(config: pytest.Config) -> None:
    """Refuse a bad run id or an unwritable results folder before any probe runs (not minutes later)."""
    run_id = config.getoption("--run-id")
    if run_id is not None and not re.fullmatch(SAFE_NAME, run_id):
        raise pytest.UsageError(
            f"--run-id {run_id!r}: a run id is one folder name ([A-Za-z0-9._-], no leading "
            "dot), so it cannot leave the results folder"
        )
    try:
        check_writable(Path(config.getoption("--results-dir")))
    except OSError as exc:
        raise pytest.UsageError(str(exc.strerror)) from None


@pytest.fixture(scope="session")
def run_context(request: pytest.FixtureRequest) -> Any:
    """The run's adapter, models and engine pool; stops every engine at the end."""
    config = request.config
    attach_spec = LaunchSpec(
        model=config.getoption("--attach-model"),
        model_format=config.getoption("--attach-format"),
        **config.stash.get(_DECLARED_KEY, {}),
    )
    try:
        context = RunContext.create(
            engine=config.getoption("--engine"),
            results_dir=Path(config.getoption("--results-dir")),
            cache=cache_dir(),
            attach_url=config.getoption("--base-url"),
            attach_spec=attach_spec,
            run_id=config.getoption("--run-id"),
            docker=_docker_options(config),
            model_set=config.stash.get(_MODEL_SET_KEY, None),
            progress=_say(config),
        )
    except (UnknownEngineError, FileNotFoundError, KeyError, SpecError) as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[_CONTEXT_KEY] = context
    yield context
    context.pool.close()


class EngineExited(RuntimeError):
    """The engine died while a probe ran (the message carries its exit and log tail)."""


class ProbeRecorder:
    """Hands a probe its engine and turns its verdict into a ResultRecord on disk."""

    def __init__(self, item: pytest.Item, context: RunContext) -> None:
        self.item = item
        self.context = context
        self.spec = _with_declared(_launch_spec(item), item.config)
        self.session: EngineSession | None = None
        self.started_at = datetime.now(timezone.utc)
        self.record_written: ResultRecord | None = None
        self._used: list[EngineSession] = []  # every engine session this probe asked for
        self._exchanges: list[Exchange] = []  # what it sent to sessions it has moved on from
        self.dead: tuple[LaunchSpec, str] | None = None  # the launch found hung while this probe ran, and why

    @property
    def probe_id(self) -> str:
        name = self.item.name.removeprefix("test_")
        return name.replace("[", "_").replace("]", "").replace("-", "_")

    @property
    def feature(self) -> str:
        marker = self.item.get_closest_marker("feature")
        if marker is None or not marker.args:
            raise RuntimeError(f"probe {self.item.nodeid} has no @pytest.mark.feature(...)")
        row_for(marker.args[0])
        return str(marker.args[0])

    def engine(self, spec: LaunchSpec | None = None) -> EngineSession:
        """The running engine for this probe's launch configuration, or for `spec` (a control run inside the
        probe: chunking off, caching off, one stage; or the probe's own launch adjusted for this engine). The
        record's provenance is the probe's own launch (else the first engine it used), and it keeps the
        exchanges sent to every engine the probe used."""
        for used in self._used:
            self._exchanges += used.client.take_exchanges()
        session = self.context.pool.session(spec or self.spec)
        session.client.take_exchanges()  # what earlier probes sent is theirs
        if session not in self._used:
            self._used.append(session)
        if spec is None or session.spec == self.context.pool.session_spec(self.spec):
            self.session = session
            self.context.last_identity = session.identity
        return session

    def hung(self) -> str | None:
        """Why an engine this probe used is hung (checked after a read timeout), remembering which; else None."""
        for session in self._used:
            reason = self.context.pool.hung(session)
            if reason is not None:
                self.dead = (session.spec, reason)
                return reason
        return None

    def record(self, verdict: Verdict) -> ResultRecord:
        """Write the verdict with full provenance (once per probe)."""
        if self.record_written is not None:
            raise RuntimeError(f"probe {self.probe_id} recorded twice")
        session = self.session or (self._used[0] if self._used else None)
        exited = self.context.pool.engine_exit() if session is not None else None
        if exited:  # a verdict against a dead engine says nothing about the feature
            verdict = verdict.model_copy(
                update={
                    "status": Status.ERROR,
                    "reason": (f"{exited[-3000:]}\n(the probe saw: {verdict.status.value}: {verdict.reason[:1000]})"),
                }
            )
        evidence = verdict.evidence
        for used in self._used:
            self._exchanges += used.client.take_exchanges()
        if self._exchanges:
            evidence = evidence.model_copy(update={"exchanges": [*evidence.exchanges, *self._exchanges]})
        record = ResultRecord(
            run_id=self.context.run_id,
            probe=self.probe_id,
            feature=self.feature,
            engine=session.identity if session else self.context.identity(),
            launch=(
                _declared_launch(session.launch, self.item.config)
                if session
                else self.context.pool.planned_launch(self.spec)
            ),
            model=session.model_info() if session else self.context.pool.planned_model(self.spec),
            host=host_info(),
            harness=harness_info(),
            status=verdict.status,
            reason=verdict.reason,
            evidence=evidence,
            started_at=self.started_at,
            finished_at=datetime.now(timezone.utc),
        )
        _write_or_keep(record, self.context.run_dir, self.item.config)
        self.record_written = record
        self.item.config.stash[_VERDICTS_KEY].append(record)
        if exited:
            raise EngineExited(exited)
        return record


@pytest.fixture
def probe(request: pytest.FixtureRequest, run_context: RunContext) -> ProbeRecorder:
    """The recorder of one probe."""
    recorder = ProbeRecorder(request.node, run_context)
    dead = run_context.pool.dead_reason(recorder.spec)
    if dead is not None:  # its engine stopped answering: an error at once, without the probe's own work
        recorder.record(Verdict(status=Status.ERROR, reason=dead))
        pytest.fail(dead, pytrace=False)
    request.node.stash[_RECORDER_KEY] = recorder
    return recorder


_RECORDER_KEY = pytest.StashKey[ProbeRecorder]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """Map what a probe raised to a verdict; a probe that recorded nothing is an error."""
    recorder = item.stash.get(_RECORDER_KEY, None)
    if recorder is None:
        return (yield)
    try:
        with probe_deadline(), liveness(recorder.hung):
            result = yield
        _check_interrupted()
    except EngineStopped as exc:  # a read timed out and the engine no longer answers: the launch is dead
        if recorder.record_written is None:
            recorder.record(Verdict(status=Status.ERROR, reason=str(exc)[:2000]))
        _mark_dead(recorder, str(exc))
        raise EngineExited(str(exc)) from None
    except Interrupted as exc:
        if recorder.record_written is None:
            recorder.record(Verdict(status=Status.ERROR, reason=f"interrupted ({exc}) while the probe ran"))
        raise
    except NotMeasurable as exc:
        recorder.record(Verdict(status=Status.NOT_MEASURED, reason=str(exc)))
        pytest.skip(f"not measured: {exc}")
    except Unsupported as exc:
        recorder.record(
            Verdict(
                status=Status.FAIL,
                reason=f"not expressible in the engine's API: {exc}",
                evidence=Evidence(notes=[LEGACY_ABSENCE_NOTE], absence_source=exc.source),
            )
        )
        return None
    except KernelMissing as exc:  # the engine's build for this host's level lacks the kernel: a finding
        recorder.record(kernel_missing_verdict(exc))
        return None
    except (pytest.skip.Exception, KeyboardInterrupt):
        raise
    except Exception as exc:
        if recorder.record_written is None:
            recorder.record(
                Verdict(
                    status=Status.ERROR,
                    reason=error_reason(exc)[:2000],
                    evidence=Evidence(notes=traceback.format_exception_only(exc)[-1:]),
                )
            )
        if _timed_out(exc) and recorder.dead is None and recorder.hung() is not None:  # a client outside wire/
            _mark_dead(recorder, f"engine stopped answering at {datetime.now(timezone.utc):%Y-%m-%dT%H:%M:%SZ}")
        raise
    if recorder.record_written is None:
        recorder.record(Verdict(status=Status.ERROR, reason="probe finished without a verdict"))
        raise AssertionError("probe finished without recording a verdict")
    return result


def error_reason(exc: BaseException) -> str:
    """`Type: message` of a probe's unexpected error, naming the endpoint when an HTTP client outside wire/ raised it
    (httpx, the openai client: "APITimeoutError: Request timed out." alone says nothing of where)."""
    reason = f"{type(exc).__name__}: {exc}".strip()
    try:
        request = getattr(exc, "request", None)  # httpx.Request; httpx raises RuntimeError when it has none
    except RuntimeError:
        request = None
    url, method = getattr(request, "url", None), getattr(request, "method", None)
    if url is None or str(url) in reason:
        return reason
    return f"{type(exc).__name__}: {method} {url}" + (f": {exc}" if str(exc) else "")


def _timed_out(exc: BaseException) -> bool:
    """Whether a probe's error was a wait that ran out (any client's timeout, not the probe's own deadline)."""
    return not isinstance(exc, DeadlineExceeded) and (
        isinstance(exc, TimeoutError) or "timeout" in type(exc).__name__.lower() or "timed out" in str(exc)
    )


def _mark_dead(recorder: ProbeRecorder, reason: str) -> None:
    """Mark the launch found hung dead: each remaining probe that needs it is an error at once."""
    if recorder.dead is None:
        return
    spec, why = recorder.dead
    full = reason if why in reason else f"{reason}: {why}"
    recorder.context.pool.mark_dead(spec, full)
    _say(recorder.item.config)(f"{full[:300]}; launch {spec.key()} is marked dead, its remaining probes are errors")


def kernel_missing_verdict(exc: KernelMissing) -> Verdict:
    """A start failure from a kernel missing for this host's instruction set: a fail in this level's context (the
    record's host names the level), with the engine's own line as evidence (README, "Instruction-set levels")."""
    return Verdict(
        status=Status.FAIL,
        reason=str(exc),
        evidence=Evidence(
            engine_log=[exc.engine_line],
            numbers={"isa_level": host_info().level(), "start_failure": "kernel missing for this instruction set"},
        ),
    )


_UNSAVED_KEY = pytest.StashKey[list[str]]()  # records written elsewhere than their run folder, or not at all


def spare_dir() -> Path:
    """Where records go when their results folder cannot take them: /tmp/infercheck-unsaved-<uid>, created 0700,
    and used only when it is a real folder (not a symlink) owned by this user and closed to others; otherwise
    OSError (the record is then printed at the end instead of written where another user could read or plant it)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    path = Path(tempfile.gettempdir()) / f"infercheck-unsaved-{uid if uid is not None else 'user'}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode):
        raise OSError(f"{path} is not a folder (a symlink or a file): not used for unsaved records")
    if uid is not None and info.st_uid != uid:
        raise OSError(f"{path} belongs to user {info.st_uid}, not this one: not used for unsaved records")
    if info.st_mode & 0o077:  # ours, made by an older infercheck with the umask's mode: close it
        os.chmod(path, 0o700, follow_symlinks=False)
    return path


def _write_or_keep(record: ResultRecord, run_dir: Path, config: pytest.Config) -> None:
    """Write the record to its run folder; if that fails (disk full, read-only), to the spare folder;
    if that fails too, keep it to print at the end. A verdict is never lost silently."""
    unsaved = config.stash.setdefault(_UNSAVED_KEY, [])
    try:
        write_record(record, run_dir)
        return
    except OSError as exc:
        failure = f"cannot write {run_dir / record.file_name()}: {exc.strerror or exc}"
    try:
        spare = spare_dir() / run_dir.parent.name / run_dir.name
        path = write_record(record, spare)
        unsaved.append(f"{failure}; written to {path} instead")
    except OSError:
        unsaved.append(f"{failure}; not saved anywhere, the record is: {record.model_dump_json()}")
    print(f"infercheck: {unsaved[-1][:500]}", file=sys.stderr)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Print the verdicts of this run, and where records went that could not go to their run folder."""
    records = config.stash.get(_VERDICTS_KEY, [])
    for line in config.stash.get(_UNSAVED_KEY, []):
        terminalreporter.write_line(f"infercheck: {line}")
    if not records:
        return
    context = config.stash.get(_CONTEXT_KEY, None)
    terminalreporter.section("infercheck verdicts")
    for record in records:
        terminalreporter.write_line(f"{record.status.value:>12}  {record.probe:<32} {record.reason[:110]}")
    if context is not None:
        terminalreporter.write_line(f"records: {context.run_dir}")
