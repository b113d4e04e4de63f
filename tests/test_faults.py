"""Fault injection: engines that hang, lie or vanish, results folders that fail, hostile records, interrupts.

Each case checks a clear error, that nothing is lost and nothing left behind, within a time bound.
Fake servers run on 127.0.0.1 in this process; the real-engine cases use llama-server from the cache.
Short deadlines come from $INFERCHECK_REQUEST_TIMEOUT_S / $INFERCHECK_PROBE_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import socket
import socketserver
import struct
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from harness.atomic import check_writable
from harness.deadline import DeadlineExceeded, probe_deadline
from harness.engines.base import LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.launch.base import EngineStartError, free_port, port_taken
from harness.models.cache import ModelIntegrityError, verify_artifact
from harness.paths import REPO_ROOT, default_report_dir
from harness.probing.plugin import _write_or_keep, spare_dir
from harness.probing.session import HEALTH_TIMEOUT_S, EnginePool
from harness.records.merge import MergeError, merge
from harness.records.results import (
    EngineIdentity,
    HarnessInfo,
    HostInfo,
    RecordWarning,
    ResultRecord,
    Status,
    load_records,
    write_record,
)
from harness.report import write_report
from harness.wire.client import EngineRejected, EngineServerError, EngineTransportError, EvidenceClient
from harness.wire.request import ApiRequest
from harness.wire.streaming import StreamError, stream_request
from harness.wire.streaming_socket import stream_with_socket
from tests.silent_engine import read_request, serve, silent_engine

CLAIMS = default_report_dir() / "claims.json"
BOUND_S = 10.0  # every fault below must be reported within this (the deadlines are set to 1-2 s)


# -- fake servers --------------------------------------------------------------------------------------


def _sse(events: list[dict | str]) -> bytes:
    body = b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n" for e in events
    )
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n" + body


def _token(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "text": text, "finish_reason": finish}]}


REPLIES = {
    "truncated": _sse([_token("a"), _token("b"), _token("c")]),  # 3 tokens of 256, then the connection closes
    "short": _sse([_token("a"), _token("b"), _token("c", "length"), "[DONE]"]),  # says it ended, after 3 of 256
    "complete": _sse([_token("a"), _token("b", "length"), "[DONE]"]),
    "500": b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\nContent-Length: 19\r\n"
    b'Connection: close\r\n\r\n{"error": "crash"}\n',
    "400": b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: 23\r\n"
    b'Connection: close\r\n\r\n{"error": "no grammar"}',
}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        mode = self.server.mode  # type: ignore[attr-defined]
        self.request.settimeout(5)
        try:
            self.request.recv(65536)
        except OSError:
            return
        if mode == "reset":  # RST instead of an answer
            self.request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode == "silent":  # accept, read, never answer
            self.server.stop.wait(30)  # type: ignore[attr-defined]
        else:
            self.request.sendall(REPLIES[mode])


@contextmanager
def fake_server(mode: str) -> Iterator[str]:
    """A server on 127.0.0.1 that misbehaves as `mode` says; its base URL."""
    with serve(_Handler, mode) as url:
        yield url


def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed again: nothing listens


@pytest.fixture(autouse=True)
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERCHECK_REQUEST_TIMEOUT_S", "1")
    monkeypatch.setenv("INFERCHECK_PROBE_TIMEOUT_S", "5")


@contextmanager
def within(seconds: float) -> Iterator[None]:
    started = time.monotonic()
    yield
    assert time.monotonic() - started < seconds, f"took {time.monotonic() - started:.1f}s, bound {seconds}s"


STREAM = ApiRequest(
    "/v1/completions", {"model": "m", "prompt": "p", "max_tokens": 256, "ignore_eos": True, "stream": True}
)
SHORT_STREAM = ApiRequest(
    "/v1/completions", {"model": "m", "prompt": "p", "max_tokens": 2, "ignore_eos": True, "stream": True}
)


# -- requests and streams ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["refused", "reset", "silent"])
def test_socket_stream_fails_fast_and_never_leaves_a_waiter(mode: str) -> None:
    """Refused, reset and silent connections raise StreamError naming the endpoint, and the event is set."""
    with fake_server(mode) if mode != "refused" else _nothing(refused_url()) as url, within(BOUND_S):
        first_data = threading.Event()
        with pytest.raises(StreamError, match="127.0.0.1"):
            stream_with_socket(url, STREAM, first_data)
        assert first_data.is_set()


@contextmanager
def _nothing(url: str) -> Iterator[str]:
    yield url


@pytest.mark.parametrize("mode", ["refused", "reset", "silent"])
def test_client_transport_errors_are_errors_naming_the_endpoint(mode: str) -> None:
    with fake_server(mode) if mode != "refused" else _nothing(refused_url()) as url, within(BOUND_S):
        client = EvidenceClient(url)
        with pytest.raises(EngineTransportError, match=f"POST {url}/v1/completions"):
            client.send(STREAM)
        assert client.exchanges[-1].status_code is None  # the attempt is evidence too
        client.close()


@pytest.mark.parametrize("client", ["openai", "httpx"])
def test_a_read_timeout_outside_wire_names_its_endpoint_in_the_reason(client: str) -> None:
    """A timeout from a client the probe uses directly (the openai client of openai_api, httpx.get of an
    adapter): the error record's reason names method and URL, not just "APITimeoutError: Request timed out."."""
    import openai

    from harness.probing.plugin import error_reason

    with fake_server("silent") as url, within(BOUND_S):
        with pytest.raises(Exception) as raised:
            if client == "openai":
                openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0, timeout=1).completions.create(
                    model="m", prompt="p"
                )
            else:
                httpx.get(url + "/props", timeout=1)
    endpoint = f"POST {url}/v1/completions" if client == "openai" else f"GET {url}/props"
    assert endpoint in error_reason(raised.value) and "timed out" in error_reason(raised.value).lower()
    assert error_reason(ValueError("no request")) == "ValueError: no request"


@pytest.mark.parametrize("mode", ["truncated", "short"])
def test_a_cut_stream_is_incomplete_not_measured(mode: str) -> None:
    """3 of 256 tokens (no [DONE], or a finish_reason too early) is an error for both stream readers."""
    with fake_server(mode) as url, within(BOUND_S):
        with pytest.raises(StreamError, match="incomplete"):
            stream_with_socket(url, STREAM)

        async def streamed() -> None:
            async with httpx.AsyncClient(base_url=url) as client:
                await stream_request(client, STREAM)

        with pytest.raises(StreamError, match="incomplete"):
            asyncio.run(streamed())


def test_a_complete_stream_counts() -> None:
    with fake_server("complete") as url:
        timing = stream_with_socket(url, SHORT_STREAM)
    assert timing.done and timing.finish_reason == "length" and timing.output_tokens == 2


def test_5xx_is_an_error_4xx_a_rejection() -> None:
    with fake_server("500") as url:
        with pytest.raises(EngineServerError) as failed:
            EvidenceClient(url).send(STREAM)
    assert not failed.value.rejected and not isinstance(failed.value, EngineRejected)
    with fake_server("400") as url:
        with pytest.raises(EngineRejected) as refused:
            EvidenceClient(url).send(STREAM)
    assert refused.value.rejected


def test_a_500_on_the_constrained_request_is_an_error_not_a_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    """The grammar probe on an engine that crashes on the constrained request: it raises (-> error)."""
    from probes import test_grammar
    from probes.test_grammar import check_grammar

    # the fake session has no model files: the reference checkpoint and its tolerance are not what is tested
    monkeypatch.setattr(test_grammar, "reference_dir", lambda session: Path("reference"))
    monkeypatch.setattr(test_grammar, "near_tie", lambda session: (0.05, {}))
    with fake_server("500") as url:
        session = SimpleNamespace(
            adapter=LlamaCppAdapter(Path("llama-server")),
            served_model="m",
            client=EvidenceClient(url),
            running=SimpleNamespace(base_url=url),
        )
        with pytest.raises(EngineServerError):
            check_grammar(session)  # type: ignore[arg-type]


class _FeatureHandler(socketserver.StreamRequestHandler):
    """HTTP `status` to a request whose JSON body has the key `feature`; 200 to any other (the control)."""

    def handle(self) -> None:
        feature, status = self.server.mode  # type: ignore[attr-defined]
        _, body = read_request(self.rfile)
        refused = feature in json.loads(body or b"{}")
        answer = {"error": {"message": "busy"}} if refused else {"choices": [{"index": 0, "text": "ok"}]}
        payload = json.dumps(answer).encode()
        self.wfile.write(
            f"HTTP/1.1 {status if refused else 200} X\r\nContent-Type: application/json\r\n".encode()
            + f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
            + payload
        )


@pytest.mark.parametrize("status", [503, 500, 400])
@pytest.mark.parametrize("probe", ["tool_calling", "prompt_logprobs"])
def test_a_5xx_on_the_feature_request_is_an_error_even_when_the_control_works(
    probe: str, status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feature request gets `status`, the same request without the feature 200: a 4xx is a refusal (fail), a
    5xx an error (the probe raises EngineServerError: the engine failed, which says nothing about the feature)."""
    from probes import test_prompt_logprobs, test_tool_calling

    monkeypatch.setattr(test_tool_calling, "reference_dir", lambda session: Path("reference"))
    monkeypatch.setattr(test_tool_calling, "near_tie", lambda session: (0.05, {}))
    monkeypatch.setattr(test_tool_calling, "run_seed", lambda: 1)
    monkeypatch.setattr(test_prompt_logprobs, "_hf_dir", lambda session: Path("reference"))
    monkeypatch.setattr(test_prompt_logprobs, "reference_prompt_logprobs", lambda hf_dir, prompts: [[-1.0]])
    feature, check = {
        "tool_calling": ("tools", test_tool_calling.check_tool_calling),
        "prompt_logprobs": ("echo", test_prompt_logprobs.check_prompt_logprobs),
    }[probe]
    with serve(_FeatureHandler, (feature, status)) as url:  # type: ignore[arg-type]
        session = SimpleNamespace(
            adapter=LlamaCppAdapter(Path("llama-server")),
            served_model="m",
            client=EvidenceClient(url),
            model=SimpleNamespace(references=[SimpleNamespace(prompt="one two")], source="synthesized"),
        )
        if status >= 500:
            with pytest.raises(EngineServerError, match=f"HTTP {status}"):
                check(session)  # type: ignore[arg-type]
            assert len(session.client.exchanges) == 1  # no control sent: its answer could not change the verdict
        else:
            verdict = check(session)  # type: ignore[arg-type]
            assert verdict.status is Status.FAIL and "refused" in verdict.reason, verdict.reason


def test_threads_a_probe_starts_cannot_hang_it() -> None:
    """The continuous-batching overtake against a refused and a silent server ends in an error, in time."""
    from probes.test_continuous_batching import _overtake_attempts

    for server in (_nothing(refused_url()), fake_server("silent")):
        with server as url, within(BOUND_S), probe_deadline(4):
            session = SimpleNamespace(
                adapter=LlamaCppAdapter(Path("llama-server")), served_model="m", running=SimpleNamespace(base_url=url)
            )
            with pytest.raises((StreamError, TimeoutError)):
                _overtake_attempts(session)  # type: ignore[arg-type]


def test_the_probe_deadline_interrupts_the_main_thread() -> None:
    """A wait no timeout covers (a bare recv) is cut at the probe's deadline."""
    with fake_server("silent") as url, within(BOUND_S):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock, pytest.raises(DeadlineExceeded):
            sock.sendall(b"GET / HTTP/1.1\r\n\r\n")
            with probe_deadline(1.5):
                sock.recv(10)


# -- the model file ------------------------------------------------------------------------------------


def test_a_corrupted_model_refuses_the_launch(tmp_path: Path) -> None:
    """Same size, one byte changed: the launch is refused before any process starts."""
    from harness.models.build import sha256_file
    from harness.models.schema import ModelArtifact

    model = tmp_path / "llama.gguf"
    model.write_bytes(b"GGUF" + bytes(4096))
    artifact = ModelArtifact(
        name="llama", family="llama", format="f16", path=model, sha256=sha256_file(model), references=[]
    )
    verify_artifact(artifact)
    with model.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x01")
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    pool = EnginePool(LlamaCppAdapter(Path("/nonexistent/llama-server")), [artifact], tmp_path / "run")
    with pytest.raises(EngineStartError, match="changed since it was built"):
        pool.session(LaunchSpec(model="llama", model_format="f16"))
    assert not (tmp_path / "run" / "logs").exists()  # nothing was started


def _same_size_change(path: Path) -> None:
    """One byte of `path` changed in place, its size and mtime kept."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_every_file_of_a_checkpoint_folder_is_hashed_before_a_launch(tmp_path: Path) -> None:
    """An HF folder: a changed config.json or tokenizer, a file added or one missing refuses the launch, naming the
    file; so does a folder without its record. Before: only model.safetensors was re-hashed."""
    from harness.engines.vllm import VllmCpuAdapter
    from harness.models.build import sha256_file
    from harness.models.cache import files_record, record_files
    from harness.models.schema import ModelArtifact

    folder = tmp_path / "llama" / "hf"
    folder.mkdir(parents=True)
    files = {"model.safetensors": bytes(4096), "config.json": b'{"vocab_size": 512}', "tokenizer.json": b"{}" * 64}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    artifact = ModelArtifact(
        name="llama", family="llama", format="hf", path=folder, sha256=sha256_file(folder / "model.safetensors"),
        references=[],
    )  # fmt: skip
    with pytest.raises(ModelIntegrityError, match="no readable record of its files"):
        verify_artifact(artifact)
    record_files(artifact)  # what ensure_models does after the build
    assert files_record(artifact) == tmp_path / "llama" / "hf.files.json"
    verify_artifact(artifact)
    for name in ("config.json", "tokenizer.json"):
        _same_size_change(folder / name)
        pool = EnginePool(VllmCpuAdapter(), [artifact], tmp_path / "run")
        with pytest.raises(EngineStartError, match=f"changed since it was built: {name} differs"):
            pool.session(LaunchSpec(model="llama", model_format="hf"))
        (folder / name).write_bytes(files[name])
    verify_artifact(artifact)
    (folder / "chat_template.jinja").write_text("{{ messages }}")  # a file the engine would read too
    with pytest.raises(ModelIntegrityError, match="chat_template.jinja differs"):
        verify_artifact(artifact)
    (folder / "chat_template.jinja").unlink()
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelIntegrityError, match="tokenizer.json differs"):
        verify_artifact(artifact)
    assert not (tmp_path / "run" / "logs").exists()  # nothing was started


def test_a_hub_checkpoint_is_hashed_by_content_and_again_at_each_launch(tmp_path: Path) -> None:
    """Hub snapshots link files to blobs named by their sha256: the digest is of the bytes (a blob whose content
    is not its name's counts as its content), taken at fetch and compared again before each launch."""
    import hashlib

    from harness.models.checkpoints import CheckpointSource, content_digest
    from harness.models.sets import ModelSet

    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / ("0" * 40)
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for name, data in (("config.json", b"{}"), ("model.safetensors", bytes(2048))):
        (blobs / hashlib.sha256(data).hexdigest()).write_bytes(data)
        (snapshot / name).symlink_to(Path("../../blobs") / hashlib.sha256(data).hexdigest())
    liar = blobs / hashlib.sha256(b"named").hexdigest()
    liar.write_bytes(b"other bytes")
    (tmp_path / "one.gguf").symlink_to(liar)
    assert content_digest(tmp_path / "one.gguf") == hashlib.sha256(b"other bytes").hexdigest()  # not its name

    model_set = ModelSet.model_validate(
        {"name": "t", "description": "t", "models": {"llama": {"family": "llama", "formats": {"hf": {"repo": "a/b"}}}}}
    )
    artifact = CheckpointSource(model_set, tmp_path, fetch=lambda checkpoint, root: snapshot).artifact("llama", "hf")
    assert artifact is not None and artifact.source == "hf://a/b"
    verify_artifact(artifact)
    _same_size_change(snapshot / "config.json")  # through the link: the blob keeps its name, not its bytes
    with pytest.raises(ModelIntegrityError, match="changed since it was fetched"):
        verify_artifact(artifact)


# -- results folders -----------------------------------------------------------------------------------


def _record(run_id: str = "20260101T000000Z-abc123", probe: str = "openai_api", **update: object) -> ResultRecord:
    now = datetime.now(timezone.utc)
    record = ResultRecord(
        run_id=run_id,
        probe=probe,
        feature="openai_api",
        engine=EngineIdentity(name="llama.cpp", version="b1"),
        host=HostInfo(hostname="h", platform="linux", cpu="cpu", cpu_count=2, memory_gib=1.0),
        harness=HarnessInfo(version="0.1.0"),
        status=Status.PASS,
        reason="ok",
        started_at=now,
        finished_at=now,
    )
    return record.model_copy(update=update)


@contextmanager
def tmpfs(path: Path, size: str, readonly: bool = False) -> Iterator[Path]:
    """A small tmpfs at `path` (root only); skips the test with the reason otherwise."""
    path.mkdir()
    options = f"size={size}" + (",ro" if readonly else "")
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a small tmpfs (a full or read-only results folder)")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_results_folder_keeps_the_verdict_and_leaves_no_debris(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "spare"))
    (tmp_path / "spare").mkdir()
    with tmpfs(tmp_path / "full", "64k") as full:
        (full / "filler").write_bytes(b"x" * 60_000)
        run_dir = full / "llama.cpp" / "run1"
        run_dir.mkdir(parents=True)
        record = _record(reason="r" * 20_000)
        with pytest.raises(OSError):
            write_record(record, run_dir)
        assert list(run_dir.iterdir()) == []  # no .tmp-* debris
        config = SimpleNamespace(stash=pytest.Stash())
        _write_or_keep(record, run_dir, config)  # type: ignore[arg-type]
        [note] = config.stash[next(iter(config.stash._storage))]  # type: ignore[attr-defined]
        assert "written to" in note
        saved = spare_dir() / "llama.cpp" / "run1" / record.file_name()
        assert ResultRecord.model_validate_json(saved.read_text()) == record


def test_a_read_only_results_folder_is_refused_before_any_probe(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m", readonly=True) as folder, within(30):
        with pytest.raises(OSError, match="not writable"):
            check_writable(folder)
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli.app",
                "run",
                "--results-dir",
                str(folder),
                "--no-report",
                "-k",
                "openai",
            ],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
    assert result.returncode == 2
    assert "not writable" in result.stderr and "Traceback" not in result.stderr


def test_records_are_created_0644_under_the_usual_umask(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = write_record(_record(), tmp_path)
    finally:
        os.umask(previous)
    assert path.stat().st_mode & 0o777 == 0o644


def test_hostile_truncated_future_and_huge_records_are_skipped_or_defused(tmp_path: Path) -> None:
    good = write_record(_record(), tmp_path / "llama.cpp" / "run1")
    hostile = write_record(
        _record(
            run_id="run2",
            reason="see [here](http://evil.example) <script>x</script> `x`",
            engine=EngineIdentity(name="llama.cpp", version="<img src=x onerror=y>"),
        ),
        tmp_path / "llama.cpp" / "run2",
    )
    folder = tmp_path / "llama.cpp" / "run3"
    (folder / "truncated.json").parent.mkdir(parents=True)
    (folder / "truncated.json").write_text(good.read_text()[:200])
    (folder / "future.json").write_text(json.dumps({**json.loads(good.read_text()), "schema_version": 99}))
    (folder / "huge.json").write_text(json.dumps({**json.loads(good.read_text()), "reason": "x" * (5 << 20)}))
    (folder / "escape.json").write_text(json.dumps({**json.loads(good.read_text()), "run_id": ".."}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        records = load_records(tmp_path)
    assert sorted(r.run_id for r in records) == ["20260101T000000Z-abc123", "run2"]
    skipped = " ".join(str(w.message) for w in caught)
    for name in ("truncated.json", "future.json", "huge.json", "escape.json"):
        assert str(folder / name) in skipped
    written = write_report(CLAIMS, tmp_path, tmp_path / "report")
    markdown = (tmp_path / "report" / "comparison.md").read_text()
    assert hostile.exists() and written
    assert "\\<script\\>" in markdown  # shown as text, escaped
    assert not re.search(r"(?<!\\)<(script|img)", markdown) and "](http://evil" not in markdown


def test_concurrent_report_writers_never_leave_a_broken_report(tmp_path: Path) -> None:
    write_record(_record(), tmp_path / "results" / "llama.cpp" / "run1")
    out = tmp_path / "report"
    write_report(CLAIMS, tmp_path / "results", out)
    expected = (out / "comparison.md").read_bytes()
    stop, seen = threading.Event(), []

    def read() -> None:
        while not stop.is_set():
            seen.append((out / "comparison.md").read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    writers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.cli.app",
                "report",
                "--results-dir",
                str(tmp_path / "results"),
                "--out-dir",
                str(out),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(3)
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    stop.set()
    reader.join()
    assert seen and all(content == expected for content in seen)
    assert not [path for path in out.rglob(".tmp-*")]


def test_report_refuses_a_missing_or_empty_results_folder(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for folder, message in ((tmp_path / "typo", "results folder not found"), (tmp_path / "empty", "no result records")):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness.cli.app",
                "report",
                "--results-dir",
                str(folder),
                "--out-dir",
                str(tmp_path / "report"),
            ],
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            timeout=60,
        )
        assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "report").exists()


def test_free_port_is_never_handed_out_twice_and_a_taken_port_is_seen() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_taken(port)
    assert not port_taken(port)


# -- merge ---------------------------------------------------------------------------------------------


def test_merge_refuses_symlinks_and_ignores_temporary_debris(tmp_path: Path) -> None:
    upload = tmp_path / "upload"
    run = write_record(_record(run_id="run1"), upload / "llama.cpp" / "run1").parent
    (run / ".tmp-abc.json").write_text("{half a rec")
    written = merge([upload], tmp_path / "results")
    assert [path.name for path in written] == ["openai_api.json"]
    (run / "logs").mkdir()
    (run / "logs" / "x.log").symlink_to("/etc/passwd")
    with pytest.raises(MergeError, match="symlink"):
        merge([upload], tmp_path / "other")
    assert not (tmp_path / "other").exists()


# -- bad input -----------------------------------------------------------------------------------------


def test_binary_and_folder_inputs_get_one_line_errors(tmp_path: Path) -> None:
    binary = tmp_path / "blob"
    binary.write_bytes(bytes(range(256)) * 4)
    cases = [
        ["run", "--model-set", str(binary), "--no-report"],
        ["claims-import", str(binary), "--source", "x", "--out-dir", str(tmp_path / "out")],
        ["claims-import", str(tmp_path), "--source", "x", "--out-dir", str(tmp_path / "out")],
    ]
    for args in cases:
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli.app", *args], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
        )
        assert result.returncode == 2 and "Traceback" not in result.stderr + result.stdout, args
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_a_selection_of_no_probe_fails_and_leaves_the_report_alone(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli.app",
            "run",
            "--results-dir",
            str(tmp_path / "r"),
            "--out-dir",
            str(tmp_path / "report"),
            "-k",
            "no_such_probe_at_all",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == 2 and "selects no probe" in result.stderr
    assert not (tmp_path / "report").exists()


def test_a_run_id_cannot_leave_the_results_folder(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "probes",
            "-k",
            "openai",
            "--run-id",
            "..",
            "--results-dir",
            str(tmp_path / "r"),
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR and "--run-id '..'" in result.stderr
    assert not list(tmp_path.rglob("*.json"))


# -- a real engine that stops or dies ------------------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


@pytest.fixture
def pool(artifacts, llama_build, tmp_path: Path) -> Iterator[EnginePool]:
    """An engine pool on the real llama-server; whatever it started is stopped afterwards."""
    engines = EnginePool(LlamaCppAdapter(llama_build.server), artifacts, tmp_path / "run")
    yield engines
    engines.close()


@pytest.mark.engine_integration
def test_a_stopped_engine_is_an_error_in_time_and_is_replaced(
    pool: EnginePool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP: the request fails within the request timeout, and the next probe gets a fresh engine.

    The deadlines scale with this host's pace, measured in the same run: the running engine's answer to the same
    request and its start-up time (a fixed 1-second read deadline was missed once by a busy host's fresh engine)."""
    monkeypatch.setenv("INFERCHECK_REQUEST_TIMEOUT_S", "120")
    session = pool.session(LaunchSpec())
    request = session.adapter.fixed_length_request(session.served_model, "the cat", 8, stream=False)
    started = time.monotonic()
    assert session.client.send(request)[0] == 200
    answer_s = time.monotonic() - started
    read_deadline_s = max(1.0, 5 * answer_s)  # a running engine answers well within it; a stopped one never does
    restart_s = HEALTH_TIMEOUT_S + 10 + 5 * (session.launch.ready_s or 10)  # health check, stop, a start
    monkeypatch.setenv("INFERCHECK_REQUEST_TIMEOUT_S", f"{read_deadline_s:.2f}")
    pid = session.running.pid
    os.kill(pid, signal.SIGSTOP)
    try:
        with within(read_deadline_s + BOUND_S), pytest.raises(EngineTransportError, match="ReadTimeout"):
            session.client.send(request)
        with within(restart_s):
            fresh = pool.session(LaunchSpec())
        assert fresh.running.pid != pid and not _alive(pid)
        monkeypatch.setenv("INFERCHECK_REQUEST_TIMEOUT_S", "120")  # a fresh engine's first answer: no pace asserted
        assert fresh.client.send(request)[0] == 200
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.engine_integration
def test_an_engine_killed_mid_stream_is_an_error_and_says_how_it_ended(pool: EnginePool) -> None:
    session = pool.session(LaunchSpec())
    first_data, results = threading.Event(), []
    request = session.adapter.fixed_length_request(session.served_model, "the cat", 1024, stream=True)

    def read() -> None:
        try:
            results.append(stream_with_socket(session.running.base_url, request, first_data))
        except StreamError as exc:
            results.append(exc)

    reader = threading.Thread(target=read)
    with within(BOUND_S):
        reader.start()
        assert first_data.wait(BOUND_S)
        os.kill(session.running.pid, signal.SIGKILL)
        reader.join(BOUND_S)
    assert isinstance(results[0], StreamError), results
    deadline = time.monotonic() + 5
    while pool.engine_exit() is None and time.monotonic() < deadline:  # the kernel reaps it a moment later
        time.sleep(0.05)
    exited = pool.engine_exit()
    assert exited is not None and "-9" in exited, results


# -- interrupts ----------------------------------------------------------------------------------------


class _HangingLlama(socketserver.BaseRequestHandler):
    """Answers llama-server's health and props, then never answers a probe's request."""

    def handle(self) -> None:
        self.request.settimeout(60)
        try:
            head = self.request.recv(65536).split(b" ", 2)
        except OSError:
            return
        path = head[1] if len(head) > 1 else b""
        if path in (b"/health", b"/props"):
            body = b'{"status": "ok", "build_info": "fake"}'
            self.request.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\nConnection: close\r\n\r\n"
                + body
            )
            return
        self.server.hit.set()  # type: ignore[attr-defined]
        self.server.stop.wait(60)  # type: ignore[attr-defined]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_stop_the_run_in_one_line_and_record_the_probe(
    signum: int, tmp_path: Path, artifacts
) -> None:
    """The harness signalled while a probe waits on the engine: exit 130 / 143, one line, the probe an error."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _HangingLlama)
    server.daemon_threads = True
    server.hit, server.stop = threading.Event(), threading.Event()  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "INFERCHECK_REQUEST_TIMEOUT_S": "60",
        "INFERCHECK_PROBE_TIMEOUT_S": "120",
        "HF_HUB_OFFLINE": "1",
    }
    try:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harness.cli.app",
                "run",
                "--base-url",
                f"http://127.0.0.1:{server.server_address[1]}",
                "--results-dir",
                str(tmp_path),
                "--no-report",
                "-k",
                "openai_api",
                "--model-set",
                "model-sets/gpu-default.yaml",
            ],
            cwd=REPO_ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert server.hit.wait(120), "the probe never sent its request"  # type: ignore[attr-defined]
            with within(BOUND_S):
                process.send_signal(signum)
                stdout, stderr = process.communicate(timeout=BOUND_S)
        finally:
            if process.poll() is None:
                process.kill()
    finally:
        server.stop.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()
    assert process.returncode == 128 + signum, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"error: interrupted by {signal.Signals(signum).name}")
    assert "their records say why" not in stderr and "Traceback" not in stdout + stderr
    assert "Hugging Face Hub is unreachable" in stdout  # the fallback is said, not swallowed by capture
    [record] = load_records(tmp_path)
    assert record.status == Status.ERROR and "interrupted" in record.reason


# -- a hung engine (issue 24): first bytes, then silence -----------------------------------------------


def _run_attached(url: str, results: Path, select: str, env: dict[str, str], *extra: str) -> tuple[float, Any]:
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli.app",
            "run",
            "--base-url",
            url,
            "--results-dir",
            str(results),
            "-k",
            select,
            *extra,
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env,
        timeout=600,
    )
    return time.monotonic() - started, result


CHEAP_BASE_PROBES = "openai_api or regex or prefix_caching or ebnf"  # all on the base launch, no reference work
CHEAP_PROBE_IDS = {"openai_api", "regex", "prefix_caching", "ebnf_grammar"}


@pytest.mark.engine_integration  # `infercheck run` makes sure the synthesized models exist (builds them if missing)
@pytest.mark.parametrize("mode", ["generation", "all"])
def test_a_silent_engine_costs_one_request_deadline_not_one_per_probe(mode: str, tmp_path: Path) -> None:
    """Attach mode against an engine that sends the first bytes of each answer and then nothing ("generation":
    it still answers its health check and /props; "all": it answers nothing whole): every selected probe has an
    error record, the later ones at once ("engine stopped answering at ..."), and the whole run ends within the
    request deadline plus a minute. The report goes beside the results, report/comparison.md is untouched."""
    request_s = 3.0
    env = {**os.environ, "INFERCHECK_REQUEST_TIMEOUT_S": f"{request_s:g}", "INFERCHECK_PROBE_TIMEOUT_S": "900"}
    project_report = default_report_dir() / "comparison.md"
    before = project_report.read_bytes() if project_report.exists() else None
    with silent_engine(mode) as url:
        elapsed, result = _run_attached(url, tmp_path / "r", CHEAP_BASE_PROBES, env)
    assert "Traceback" not in result.stdout + result.stderr and "INTERNALERROR" not in result.stdout
    records = load_records(tmp_path / "r")
    assert {r.probe for r in records} == CHEAP_PROBE_IDS and len(records) == 4, result.stdout[-3000:]
    assert all(r.status == Status.ERROR and "engine stopped answering at" in r.reason for r in records), [
        (r.probe, r.reason[:200]) for r in records
    ]
    assert all(url.removeprefix("http://") in r.reason for r in records), [r.reason[:300] for r in records]
    span = (max(r.finished_at for r in records) - min(r.started_at for r in records)).total_seconds()
    print(f"{mode}: the probes took {span:.1f}s, the run {elapsed:.1f}s")
    assert span < request_s + 60, f"the probes took {span:.0f}s"  # what the hung engine cost
    assert elapsed < 300, f"the run took {elapsed:.0f}s"  # start-up included (slow on a loaded host)
    assert result.returncode == 1
    assert (tmp_path / "r-report" / "comparison.md").is_file()  # beside the results it used
    assert (project_report.read_bytes() if project_report.exists() else None) == before


def test_liveness_ends_the_probe_at_the_first_read_timeout_when_the_engine_is_hung() -> None:
    """In process: a read that times out under a liveness watch whose check says "hung" raises EngineStopped (not
    swallowed by `except Exception`), naming the endpoint; a check that says "alive" leaves the ordinary error."""
    from harness.deadline import EngineStopped, liveness

    with silent_engine("generation") as url:
        client = EvidenceClient(url)
        with within(1 + BOUND_S), probe_deadline(30), liveness(lambda: None):
            with pytest.raises(EngineTransportError, match=r"ReadTimeout.*after"):
                client.send(STREAM)
        with within(1 + BOUND_S), probe_deadline(30), liveness(lambda: "it did not answer /health"):
            with pytest.raises(EngineStopped, match=rf"engine stopped answering at .*{url}/v1/completions.*health"):
                try:
                    client.send(STREAM)
                except Exception:  # a probe's broad except cannot keep waiting on a hung engine
                    pass
            with pytest.raises(EngineStopped):  # and every later wait of that probe ends at once
                client.send(STREAM)
        client.close()


def test_the_pool_checks_a_silent_engine_and_marks_its_launch_dead(tmp_path: Path) -> None:
    """pool.hung: a silent engine fails the one-token check within its short deadline; once marked dead, every
    probe needing that launch gets an error at once, without a health check."""
    from harness.probing.session import LIVENESS_TIMEOUT_S

    with silent_engine("generation") as url:
        pool = EnginePool(LlamaCppAdapter(Path("/nonexistent/llama-server")), [], tmp_path, attach_url=url)
        session = SimpleNamespace(running=SimpleNamespace(base_url=url), spec=LaunchSpec(), served_model="llama")
        with within(LIVENESS_TIMEOUT_S + BOUND_S):
            reason = pool.hung(session)  # type: ignore[arg-type]
        assert reason is not None and "/completion" in reason and "no answer" in reason
        pool.mark_dead(LaunchSpec(), f"engine stopped answering at now: {reason}")
        with within(1):
            with pytest.raises(EngineStartError, match="engine stopped answering"):
                pool.session(LaunchSpec())
        assert pool.dead_reason(LaunchSpec(model="mistral")) is None


# -- hostile text in every field (issue 24) -----------------------------------------------------------

HOSTILE = (
    "<img src=x onerror=alert(1)> [x](javascript:alert(1)) <javascript:alert(2)> ![i](data:text/html,x) "
    '<a href="vbscript:y">'
)


def _hostile_everywhere(data: Any, model: Any, path: tuple = ()) -> Any:
    """`data` (a record's JSON) with HOSTILE in every string leaf the model still accepts (a field whose
    validator refuses it, such as the run id, keeps its value: such a record would be skipped on load)."""

    def leaves(value: Any, where: tuple) -> Iterator[tuple]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield from leaves(item, (*where, key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                yield from leaves(item, (*where, index))
        elif isinstance(value, str):
            yield where

    def put(document: Any, where: tuple, text: str) -> None:
        for part in where[:-1]:
            document = document[part]
        document[where[-1]] = text

    changed = 0
    for where in list(leaves(data, path)):
        if where == ("feature",):  # a record of no known row is left out of the table, hostile or not
            continue
        trial = json.loads(json.dumps(data))
        put(trial, where, HOSTILE)
        try:
            model.model_validate(trial)
        except ValueError:
            continue
        data, changed = trial, changed + 1
    assert changed > 10
    return data


def _assert_inert(markdown: str) -> None:
    assert not re.search(r"(?<!\\)<[A-Za-z/!?]", markdown), "raw HTML or an autolink"
    assert not re.search(r"(?<!\\)\]\(\s*<?\s*(javascript|data|vbscript):", markdown, re.IGNORECASE), "a live link"
    definition = r"^\s{0,3}\[[^\]]+\]:\s*<?(javascript|data|vbscript):"
    assert not re.search(definition, markdown, re.IGNORECASE | re.MULTILINE), "a live reference link"


def test_hostile_text_in_every_field_of_every_record_kind_stays_inert(tmp_path: Path) -> None:
    """Every string field of a probe record, of a bench record and of the claims (cells, notes, footnotes,
    source) set to HTML and script links: the report is written, and none of it is live in comparison.md."""
    from harness.bench.records import BenchRecord
    from harness.records.claims import ClaimsTable

    results = tmp_path / "results"
    probe_template = next(p for p in sorted((REPO_ROOT / "results").rglob("*.json")) if p.name == "openai_api.json")
    probe = _hostile_everywhere(json.loads(probe_template.read_text()), ResultRecord)
    (results / "llama.cpp" / "run1").mkdir(parents=True)
    (results / "llama.cpp" / "run1" / "openai_api.json").write_text(json.dumps(probe))
    bench_template = next(iter(sorted((REPO_ROOT / "results").rglob("bench.json"))))
    bench = _hostile_everywhere(json.loads(bench_template.read_text()), BenchRecord)
    (results / "llama.cpp" / "run2").mkdir(parents=True)
    (results / "llama.cpp" / "run2" / "bench.json").write_text(json.dumps(bench))
    claims = json.loads(CLAIMS.read_text())
    claims["source"] = HOSTILE
    for note in claims["notes"]:
        note["text"] += HOSTILE
    for footnote in claims["footnotes"]:
        footnote["text"] += HOSTILE + " [r]: javascript:alert(3)\n[r]: javascript:alert(4)"
    for row in claims["rows"]:
        for cell in row["cells"].values():
            cell["raw"] += HOSTILE
            cell["text"] += HOSTILE
    ClaimsTable.model_validate(claims)
    (tmp_path / "claims.json").write_text(json.dumps(claims))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        write_report(tmp_path / "claims.json", results, tmp_path / "report", include_attach=True, allow_dirty=True)
    assert not [str(w.message) for w in caught if "skipped" in str(w.message)]  # both hostile records were read
    markdown = (tmp_path / "report" / "comparison.md").read_text()
    assert "onerror" in markdown  # the hostile text is shown, as text
    _assert_inert(markdown)


def test_a_truncated_fifo_or_symlinked_bench_json_is_skipped_naming_the_file(tmp_path: Path) -> None:
    """bench.json is read as probe records are: lstat, regular files only, a size limit, a warning naming the
    file; a FIFO named bench.json does not hang the report."""
    from harness.bench.records import load_bench_records

    good = next(iter(sorted((REPO_ROOT / "results").rglob("bench.json")))).read_text()
    for name, make in {
        "truncated": lambda p: p.write_text(good[: len(good) // 2]),
        "fifo": lambda p: os.mkfifo(p),
        "symlink": lambda p: p.symlink_to(tmp_path / "elsewhere.json"),
        "future": lambda p: p.write_text(json.dumps({**json.loads(good), "schema_version": 99})),
        "not-json": lambda p: p.write_bytes(b"\xff\xfe"),
    }.items():
        (tmp_path / "r" / "llama.cpp" / name).mkdir(parents=True)
        make(tmp_path / "r" / "llama.cpp" / name / "bench.json")
    (tmp_path / "elsewhere.json").write_text(good)
    (tmp_path / "r" / "llama.cpp" / "ok").mkdir()
    (tmp_path / "r" / "llama.cpp" / "ok" / "bench.json").write_text(good)
    write_record(_record(), tmp_path / "r" / "llama.cpp" / "run1")
    with within(BOUND_S), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        assert len(load_bench_records(tmp_path / "r")) == 1
        write_report(CLAIMS, tmp_path / "r", tmp_path / "report")
    skipped = " ".join(str(w.message) for w in caught)
    for name in ("truncated", "fifo", "symlink", "future", "not-json"):
        assert str(tmp_path / "r" / "llama.cpp" / name / "bench.json") in skipped, name
    assert (tmp_path / "report" / "comparison.md").is_file()


# -- one-line errors and where `run` writes its report (issue 24) --------------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    from typer.testing import CliRunner

    from harness.cli.app import app

    return CliRunner().invoke(app, list(args), env=env)


def test_run_writes_its_report_beside_the_results_it_used(tmp_path: Path) -> None:
    from harness.cli.app import report_dir_for
    from harness.paths import default_results_dir

    assert report_dir_for(default_results_dir()) == default_report_dir()
    assert report_dir_for(tmp_path / "typo-results") == tmp_path / "typo-results-report"


@pytest.mark.parametrize(
    "args, env, says",
    [
        (["run", "--base-url", "http://[::1"], {}, "--base-url"),
        (["run", "--base-url", f"http://{'a' * 300}:8080"], {}, "--base-url"),
        (["run", "--base-url", "ftp://127.0.0.1:1"], {}, "--base-url"),
        (["schema", "--out", "/nonexistent-folder-x/s.json"], {}, "does not exist"),
        (["run"], {"INFERCHECK_PROBE_TIMEOUT_S": "abc"}, "INFERCHECK_PROBE_TIMEOUT_S='abc' is not a number"),
        (["run"], {"INFERCHECK_REQUEST_TIMEOUT_S": "1s"}, "INFERCHECK_REQUEST_TIMEOUT_S='1s' is not a number"),
    ],
)
def test_bad_urls_paths_and_deadlines_are_one_line_errors(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path
) -> None:
    if args[0] == "run":
        args = [*args, "--results-dir", str(tmp_path / "r"), "--out-dir", str(tmp_path / "report")]
    result = _cli(*args, env=env)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output and "INTERNALERROR" not in result.output
    assert not (tmp_path / "report").exists()


def test_a_malformed_deadline_is_a_usage_error_for_pytest_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "probes",
            "-k",
            "openai_api",
            "--results-dir",
            str(tmp_path),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=300,
        env={**os.environ, "INFERCHECK_PROBE_TIMEOUT_S": "abc"},
    )
    assert result.returncode == pytest.ExitCode.USAGE_ERROR, result.stdout[-2000:] + result.stderr[-2000:]
    assert "INTERNALERROR" not in result.stdout + result.stderr and "is not a number" in result.stderr


def test_the_spare_folder_is_private_and_never_a_symlink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    spare = spare_dir()
    assert spare.is_dir() and spare.stat().st_mode & 0o777 == 0o700 and spare.stat().st_uid == os.getuid()
    spare.chmod(0o755)
    assert spare_dir().stat().st_mode & 0o777 == 0o700  # closed again
    spare.rmdir()
    (tmp_path / "elsewhere").mkdir()
    spare.symlink_to(tmp_path / "elsewhere")  # planted by someone else
    with pytest.raises(OSError, match="not a folder"):
        spare_dir()
    (tmp_path / "a-file").write_text("")
    config = SimpleNamespace(stash={})
    _write_or_keep(_record(), tmp_path / "a-file" / "run1", config)  # type: ignore[arg-type]
    assert not list((tmp_path / "elsewhere").iterdir())  # nothing written through the symlink
    [kept] = list(config.stash.values())[0]
    assert "not saved anywhere" in kept


def test_site_refuses_an_empty_results_folder_and_leaves_the_site(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("old")
    result = _cli(
        "site", "--results-dir", str(tmp_path / "empty"), "--out-dir", str(tmp_path / "site"), "--claims", str(CLAIMS)
    )
    assert result.exit_code == 2 and "no result records" in result.output
    assert (tmp_path / "site" / "index.html").read_text() == "old"


def test_claims_import_is_linear_on_hostile_labels_and_atomic(tmp_path: Path) -> None:
    from harness.records.claims import import_claims

    seed = (REPO_ROOT / "report" / "claims-source.md").read_text()
    lines = seed.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("|") and "---" not in line and i > 3)
    cells = lines[row].split("|")
    cells[1] = " " + " " * 40000 + "(" + "[^" * 20000 + " x "
    lines[row] = "|".join(cells)
    (tmp_path / "hostile.md").write_text("\n".join(lines) + "\n")
    with within(5):
        try:
            import_claims(tmp_path / "hostile.md", "test", tmp_path / "out")
        except ValueError:
            pass  # refused is fine; slow is not
    assert (
        not [p.name for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]
        if (tmp_path / "out").exists()
        else True
    )


# -- the null engine, peer installs ---------------------------------------------------------------------


def test_the_null_engine_answers_a_malformed_request_400_in_one_line() -> None:
    """Not JSON, not an object, a bad max_tokens or messages, or not HTTP at all: HTTP 400 and one line each,
    no unhandled task exception, and the engine serves the next request."""
    engine = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "harness" / "loadgen" / "null_engine.py"), "--ttft", "0", "--itl", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert engine.stdout is not None
        url = f"http://127.0.0.1:{int(engine.stdout.readline().split()[-1])}"
        with within(BOUND_S):
            for body in (
                b"{not json",
                b"\xff\xfe",
                b"[1, 2]",
                b'{"max_tokens": "lots", "stream": true}',
                b'{"max_tokens": -3, "stream": true}',
                b'{"messages": "hi", "stream": true}',
            ):
                answer = httpx.post(url + "/v1/chat/completions", content=body, timeout=5)
                message = answer.json()["error"]["message"]
                assert answer.status_code == 400 and message and "\n" not in message, (body, answer.text)
            port = int(url.rsplit(":", 1)[1])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
                raw = b"".join(iter(lambda: sock.recv(4096), b""))
            assert raw.startswith(b"HTTP/1.1 400") and b"malformed HTTP request" in raw, raw
            good = httpx.post(url + "/v1/completions", json={"prompt": "p", "max_tokens": 2, "stream": True}, timeout=5)
            assert good.status_code == 200 and "[DONE]" in good.text
    finally:
        engine.terminate()
        _, errors = engine.communicate(timeout=10)
    assert "Traceback" not in errors and "exception" not in errors.lower(), errors


def test_a_peer_install_past_its_deadline_is_killed_with_every_process_it_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A "pip" that starts a build and hangs: at the deadline the build is killed too, and the reason says so."""
    import psutil

    from harness.bench.peers import install

    def fake_venv(folder: Path, **_: object) -> None:
        python = folder / "bin" / "python"
        python.parent.mkdir(parents=True)
        python.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > {tmp_path / 'build.pid'}\nsleep 300\n")
        python.chmod(0o755)

    monkeypatch.setattr(install.venv, "create", fake_venv)
    with within(BOUND_S):
        outcome = install.install_peer(tmp_path, "guidellm", timeout_s=1.5)
    assert isinstance(outcome, str) and "did not finish within 2 s" in outcome, outcome
    build = int((tmp_path / "build.pid").read_text())
    try:
        assert psutil.Process(build).status() == psutil.STATUS_ZOMBIE  # killed, not yet reaped by init
    except psutil.NoSuchProcess:
        pass
    assert install.find_peer(tmp_path, "guidellm") is None
