"""What the peer runners share: the tool as a subprocess with a deadline, its CPU time, and the point.

A tool runs in its own process group with a deadline (`deadline_s`); past it the group is killed. Its
CPU: while it runs, the cumulative CPU of its process tree (each live process's own time and that of
the children it reaped) is sampled every POLL_S, and the exit adds the `os.wait4` total of the tool's
process (its own time and that of every worker it waited for). The CPU
reported per request is the tree's CPU between the start and end of the benchmark as the tool's own
result dates them (interpolated between samples): its timed part, without the start-up (imports, the
tokenizer, worker processes: 8 to 25 s of CPU here) or the report it writes afterwards, as infercheck and
`vllm bench serve` report theirs.
"""

from __future__ import annotations

import bisect
import json
import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.bench.peers.traffic import Traffic
from harness.bench.records import CalibrationPoint, Pace

STARTUP_S = 120.0  # the longest a tool may take to start (imports, tokenizer, workers) on a busy host
SLACK = 10.0  # times the traffic's own duration a run may take before it is killed
MIN_RATE = 20.0  # requests/s: a client-bound tool gets this long per request on top
MAX_RUN_S = 600.0
KILL_GRACE_S = 10.0
POLL_S = 0.25  # exit check and CPU sample (a sample of a 20-process tree costs a few ms)


@dataclass(frozen=True)
class ToolRun:
    """One finished run of a tool."""

    returncode: int
    cpu_s: float  # user + system of its whole process tree, start-up included (os.wait4)
    wall_s: float
    log: Path  # its stdout and stderr
    cpu_samples: list[tuple[float, float]]  # (epoch seconds, the tree's cumulative CPU seconds), the exit last

    def cpu_between(self, start: float, end: float) -> float | None:
        """The tree's CPU seconds between two epoch times (linear between samples), None outside the samples."""
        times = [at for at, _ in self.cpu_samples]
        if not times or start < times[0] or end > times[-1] or end < start:
            return None
        return self._cpu_at(end) - self._cpu_at(start)

    def _cpu_at(self, at: float) -> float:
        index = bisect.bisect_left([t for t, _ in self.cpu_samples], at)
        if index == 0:
            return self.cpu_samples[0][1]
        (t0, c0), (t1, c1) = self.cpu_samples[index - 1], self.cpu_samples[index]
        return c1 if t1 <= t0 else c0 + (c1 - c0) * (at - t0) / (t1 - t0)


@dataclass(frozen=True)
class Figures:
    """One run's figures, read from the tool's own result file with its own field names."""

    completed: int
    failed: int
    achieved_rate: float  # successful requests/s, as the tool computes it
    ttft_p50_ms: float | None
    itl_p50_ms: float | None
    window: tuple[float, float] | None  # the benchmark's start and end (epoch seconds), as the tool dates them


# The tool's command for one traffic, its result folder given; and its figures, read from that folder.
Command = Callable[[Traffic, Path], list[str]]
Reader = Callable[[Path], Figures]


def json_reader(file_name: str, parse: Callable[[dict[str, Any]], Figures]) -> Reader:
    """A reader of the tool's JSON result file `file_name` in its result folder."""
    return lambda folder: parse(json.loads((folder / file_name).read_text()))


def deadline_s(traffic: Traffic) -> float:
    """How long one run may take: start-up, then SLACK times its traffic's duration and as long again as its
    requests take at MIN_RATE (a tool slower than the rate asked for is measured, not killed), capped."""
    return min(MAX_RUN_S, STARTUP_S + SLACK * traffic.requests / traffic.rate + traffic.requests / MIN_RATE)


def run_tool(command: list[str], env: dict[str, str], folder: Path, timeout_s: float) -> ToolRun:
    """Run `command` in its own process group in `folder` (its log there too) until it exits or the deadline
    passes, sampling its tree's CPU; on the deadline the whole group is killed and RuntimeError says so.
    Whatever of the group outlives its leader is killed too."""
    log = folder / "tool.log"
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    samples: list[tuple[float, float]] = []
    try:
        waited = _wait4(process.pid, started + timeout_s, samples)
    except BaseException:  # interrupted: leave nothing running
        _kill_group(process.pid)
        raise
    finally:
        process.returncode = -1  # reaped here (os.wait4), not by Popen
    if waited is None:
        _kill_group(process.pid)
        raise RuntimeError(f"{Path(command[0]).name} did not finish within {timeout_s:.0f} s (killed)")
    _signal_group(process.pid, signal.SIGKILL)  # stragglers
    status, usage = waited
    cpu = usage.ru_utime + usage.ru_stime
    return ToolRun(
        returncode=os.waitstatus_to_exitcode(status),
        cpu_s=cpu,
        wall_s=time.monotonic() - started,
        log=log,
        cpu_samples=[*samples, (time.time(), max(cpu, samples[-1][1] if samples else 0.0))],
    )


def _wait4(
    pid: int, until: float, samples: list[tuple[float, float]] | None = None
) -> tuple[int, resource.struct_rusage] | None:
    """The exit status and resource usage of `pid` once it exits, or None if it is still running at `until`;
    meanwhile the CPU of its tree into `samples`."""
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return status, usage
        if time.monotonic() >= until:
            return None
        if samples is not None and (cpu := _tree_cpu(pid)) is not None:
            samples.append((time.time(), max(cpu, samples[-1][1] if samples else 0.0)))
        time.sleep(POLL_S)


def _tree_cpu(pid: int) -> float | None:
    """The cumulative CPU seconds of `pid` and its live descendants (with what each reaped), None once gone."""
    try:
        root = psutil.Process(pid)
        tree = [root, *root.children(recursive=True)]
    except psutil.Error:
        return None
    total = 0.0
    for member in tree:
        try:
            times = member.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def _kill_group(pid: int) -> None:
    """TERM the process group, KILL what is left after KILL_GRACE_S, and reap the leader."""
    _signal_group(pid, signal.SIGTERM)
    reaped = _wait4(pid, time.monotonic() + KILL_GRACE_S) is not None
    _signal_group(pid, signal.SIGKILL)
    if not reaped:
        _wait4(pid, time.monotonic() + KILL_GRACE_S)


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def failure_line(log: Path) -> str:
    """The log's last line that names an error (else its last line), for a one-line reason."""
    lines = [line.strip(" │╭╰─") for line in log.read_text(errors="replace").splitlines()]
    lines = [line for line in lines if line]
    errors = [line for line in lines if re.search(r"error|exception|traceback|failed", line, re.IGNORECASE)]
    return ((errors or lines or ["no output"])[-1])[:300]


class PeerRunner:
    """A peer at one rate as a calibration point: the tool's command, environment and result reader."""

    def __init__(self, tool: str, command: Command, env: dict[str, str], read: Reader) -> None:
        self.tool, self.command, self.env, self.read = tool, command, env, read

    def execute(self, traffic: Traffic) -> tuple[Figures, ToolRun]:
        """One run: the tool's figures and its process; RuntimeError (one line) when it fails."""
        with tempfile.TemporaryDirectory(prefix=f"{self.tool}-") as name:
            folder = Path(name)
            run = run_tool(self.command(traffic, folder), self.env, folder, deadline_s(traffic))
            try:
                figures = self.read(folder)
            except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
                reason = failure_line(run.log) if run.returncode else f"unreadable result ({exc!r:.200})"
                raise RuntimeError(f"{self.tool} failed (exit {run.returncode}): {reason}") from None
            if run.returncode != 0:
                raise RuntimeError(f"{self.tool} failed (exit {run.returncode}): {failure_line(run.log)}")
            return figures, run

    def __call__(self, traffic: Traffic, pace: Pace) -> CalibrationPoint:
        figures, run = self.execute(traffic)
        cpu = run.cpu_between(*figures.window) if figures.window else None
        return CalibrationPoint(
            tool=self.tool,
            pace=pace,
            rate=traffic.rate,
            requests=traffic.requests,
            completed=figures.completed,
            failed=max(figures.failed, traffic.requests - figures.completed),  # never sent counts as failed
            achieved_rate=figures.achieved_rate,
            ttft_p50_ms=figures.ttft_p50_ms,
            itl_p50_ms=figures.itl_p50_ms,
            engine_ttft_p50_ms=None,
            engine_gap_p50_ms=None,
            client_cpu_ms_per_request=cpu / traffic.requests * 1000 if cpu is not None else None,
        )
