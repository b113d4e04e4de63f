"""An engine's stage processes (ranks, pipeline stages) and how busy each is, sampled from the OS.

A split engine runs one process per rank or stage. Whether the split is real, and whether the
stages work at the same time (pipelining, tensor parallelism) or take turns (a sequential
split), is read from the processes themselves: their resident memory, and their CPU time
sampled at a fixed interval while a workload runs, and what a generation does while one of them is
stopped (SIGSTOP) for a moment. Nothing here asks the engine.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import psutil


@dataclass(frozen=True)
class Stage:
    """One rank or pipeline stage of a split engine: its process and what the engine says it holds."""

    name: str
    pid: int
    weight_bytes: int | None = None  # the engine's own report of the weights it holds (its load log)


@dataclass
class BusyTrace:
    """CPU seconds each stage used in each sampling interval."""

    interval_s: float
    stages: list[str]
    cpu_s: list[list[float]] = field(default_factory=list)  # [interval][stage]

    def busy(self, threshold: float) -> list[list[bool]]:
        """Per interval and stage: busy when it used at least `threshold` of one core."""
        return [[used >= threshold * self.interval_s for used in row] for row in self.cpu_s]

    def overlap_fraction(self, threshold: float = 0.3) -> float | None:
        """Of the intervals in which any stage was busy, the share in which every stage was: ~1 for stages that
        work at once, ~0 for stages that take turns. None when no interval was busy."""
        rows = [row for row in self.busy(threshold) if any(row)]
        if not rows:
            return None
        return sum(all(row) for row in rows) / len(rows)

    def cpu_share(self) -> list[float]:
        """Each stage's share of the CPU time all stages used."""
        totals = [sum(row[i] for row in self.cpu_s) for i in range(len(self.stages))]
        whole = sum(totals)
        return [round(total / whole, 3) if whole else 0.0 for total in totals]


def resident_bytes(pid: int) -> int | None:
    """A process's resident memory, None once it is gone."""
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except psutil.Error:
        return None


def voluntary_switches(pid: int) -> int | None:
    """How often the process's main thread gave up its CPU to wait (blocked on a socket, a lock, a sleep); None
    once it is gone. A thread that waits by spinning never does."""
    try:
        return int(psutil.Process(pid).num_ctx_switches().voluntary)
    except psutil.Error:
        return None


@contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP: all its threads, at once, by the kernel) for the block, continued after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def pause_during(
    pid: int, workload: Callable[[], object], after_s: float, pause_s: float
) -> tuple[object, float, float]:
    """Run `workload` and stop process `pid` for `pause_s` seconds starting `after_s` into it; returns its result
    and when the pause began and ended (perf_counter). The process is continued whatever happens."""
    window: list[float] = []

    def pause() -> None:
        time.sleep(after_s)
        try:
            with stopped(pid):
                window.append(time.perf_counter())
                time.sleep(pause_s)
        except ProcessLookupError:  # the stage is gone: no window
            window.clear()
            return
        window.append(time.perf_counter())

    pauser = threading.Thread(target=pause, name="stage-pause", daemon=True)
    pauser.start()
    try:
        result = workload()
    finally:
        pauser.join()
    if len(window) != 2:
        raise ProcessLookupError(f"process {pid} was gone before it could be paused")
    return result, window[0], window[1]


def descendants(pid: int, title: str) -> list[tuple[int, str]]:
    """(pid, title) of the live descendants of `pid` whose process title (command line) matches the regex
    `title`, oldest first."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    found = []
    for child in children:
        try:
            text = " ".join(child.cmdline()) or child.name()
            started = child.create_time()
        except psutil.Error:
            continue
        if re.search(title, text):
            found.append((started, child.pid, text))
    return [(child_pid, text) for _, child_pid, text in sorted(found)]


def sample_busy(
    stages: Sequence[Stage], workload: Callable[[], object], interval_s: float = 0.05, deadline_s: float = 120.0
) -> tuple[BusyTrace, object]:
    """Run `workload` while sampling every stage's CPU time each `interval_s`; returns the trace and its result.

    The sampler stops when the workload returns or raises, or at `deadline_s` at the latest."""
    processes = [psutil.Process(stage.pid) for stage in stages]
    trace = BusyTrace(interval_s=interval_s, stages=[stage.name for stage in stages])
    done = threading.Event()

    def cpu_times() -> list[float]:
        values = []
        for process in processes:
            try:
                times = process.cpu_times()
                values.append(times.user + times.system)
            except psutil.Error:
                values.append(float("nan"))
        return values

    def sample() -> None:
        stop_at = time.monotonic() + deadline_s
        previous = cpu_times()
        next_tick = time.monotonic() + interval_s
        while not done.is_set() and time.monotonic() < stop_at:
            time.sleep(max(0.0, next_tick - time.monotonic()))
            next_tick += interval_s
            current = cpu_times()
            trace.cpu_s.append([max(0.0, now - before) for now, before in zip(current, previous)])
            previous = current

    sampler = threading.Thread(target=sample, name="stage-sampler", daemon=True)
    sampler.start()
    try:
        result = workload()
    finally:
        done.set()
        sampler.join(timeout=5.0)
    return trace, result
