"""Deadlines: no request and no probe may wait forever on an engine that hangs or was stopped.

Two bounds, both enforced by the harness itself (no pytest plugin needed):
- every request (HTTP client, streams, bare sockets) waits at most `request_timeout_s()` for each
  read, `$INFERCHECK_REQUEST_TIMEOUT_S`, default 120 s;
- every probe runs at most `$INFERCHECK_PROBE_TIMEOUT_S`, default 900 s. While a probe runs, every
  request's wait is cut to what is left of it (threads included: the deadline is process-wide), and
  when it passes the main thread is signalled out of whatever it blocks on with DeadlineExceeded.

Liveness: a read that waited its whole timeout calls `read_timed_out(endpoint)`. While a probe runs, that
asks the probe's liveness check (set by the pytest plugin: a health check and a one-token request, each with
a short deadline) whether the engine still answers. If it does not, the probe ends at once with EngineStopped
("engine stopped answering at ..."), every later wait of that probe raises it too, and the plugin marks the
launch dead so each remaining probe that needs it is an error at once.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

REQUEST_TIMEOUT_ENV = "INFERCHECK_REQUEST_TIMEOUT_S"
PROBE_TIMEOUT_ENV = "INFERCHECK_PROBE_TIMEOUT_S"
DEFAULT_REQUEST_TIMEOUT_S = 120.0
DEFAULT_PROBE_TIMEOUT_S = 900.0
_SIGNAL = signal.SIGUSR2  # not SIGALRM: pytest-timeout's signal method owns that one

_deadline: float | None = None  # time.monotonic() when the running probe's time is up
_limit_s = 0.0  # the running probe's whole allowance
_liveness: Callable[[], str | None] | None = None  # the running probe's check: why its engine is hung, or None
_stopped: str | None = None  # set once the running probe's engine was found hung
_liveness_lock = threading.Lock()


class DeadlineExceeded(TimeoutError):
    """A probe or a request ran out of time."""


class EngineStopped(BaseException):
    """The engine stopped answering (a read timed out and the liveness check failed). A BaseException so that a
    probe catching Exception or OSError cannot swallow it and wait on the hung engine again."""


def _seconds(env: str, default: float) -> float:
    value = os.environ.get(env)
    try:
        seconds = float(value) if value else default
    except ValueError:
        raise ValueError(f"{env}={value!r} is not a number of seconds") from None
    return seconds if seconds > 0 else default


def probe_timeout_s() -> float:
    """How long one probe may run."""
    return _seconds(PROBE_TIMEOUT_ENV, DEFAULT_PROBE_TIMEOUT_S)


def check_deadlines() -> None:
    """Raise ValueError (one line, naming the variable) unless both deadline variables are numbers."""
    probe_timeout_s()
    _seconds(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_S)


def remaining_s() -> float | None:
    """Seconds left to the running probe (None outside a probe); raises once its time is up, or at once once its
    engine was found hung (EngineStopped)."""
    if _stopped is not None:
        raise EngineStopped(_stopped)
    if _deadline is None:
        return None
    left = _deadline - time.monotonic()
    if left <= 0:
        raise _exceeded()
    return left


def request_timeout_s() -> float:
    """The wait allowed for one read of one request: the request timeout, cut to the probe's time left."""
    limit = _seconds(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_S)
    left = remaining_s()
    return limit if left is None else min(limit, left)


def wait_timeout_s() -> float:
    """How long a probe may wait on a thread or an event (the probe's time left, else the request timeout)."""
    left = remaining_s()
    return left if left is not None else _seconds(REQUEST_TIMEOUT_ENV, DEFAULT_REQUEST_TIMEOUT_S)


@contextmanager
def probe_deadline(seconds: float | None = None) -> Iterator[None]:
    """Run the body under a deadline; past it, the main thread gets DeadlineExceeded wherever it waits."""
    global _deadline, _limit_s
    _limit_s = probe_timeout_s() if seconds is None else seconds
    _deadline = time.monotonic() + _limit_s
    timer: threading.Timer | None = None
    previous: Any = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(_SIGNAL, _on_deadline)
        main = threading.main_thread().ident
        assert main is not None  # the main thread has started: this code runs on it

        def interrupt() -> None:
            if _deadline is not None:
                signal.pthread_kill(main, _SIGNAL)

        timer = threading.Timer(_limit_s, interrupt)
        timer.daemon = True
        timer.start()
    try:
        yield
    finally:
        _deadline = None
        if timer is not None:
            timer.cancel()
            signal.signal(_SIGNAL, previous)


def _on_deadline(signum: int, frame: Any) -> None:
    if _stopped is not None:
        raise EngineStopped(_stopped)
    if _deadline is not None:
        raise _exceeded()


@contextmanager
def liveness(check: Callable[[], str | None]) -> Iterator[None]:
    """While the body runs, a read timeout asks `check` (returns why the engine is hung, or None if it answers)."""
    global _liveness, _stopped
    _liveness, _stopped = check, None
    try:
        yield
    finally:
        _liveness, _stopped = None, None


def read_timed_out(endpoint: str) -> None:
    """A read from `endpoint` waited its whole timeout. Outside a liveness watch this returns; inside one, the
    engine is checked (once per probe, with a short deadline) and, if hung, EngineStopped is raised here and in
    the main thread (wherever it waits)."""
    global _stopped
    check = _liveness
    if check is None:
        return
    with _liveness_lock:
        if _stopped is None and _liveness is check:
            hung = check()
            if hung is not None and _liveness is check:
                at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                _stopped = f"engine stopped answering at {at}: a read from {endpoint} timed out and {hung}"
    if _stopped is None:
        return
    reason = _stopped
    if threading.current_thread() is not threading.main_thread() and _deadline is not None:
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, _SIGNAL)
    raise EngineStopped(reason)


def _exceeded() -> DeadlineExceeded:
    return DeadlineExceeded(f"the probe ran past its deadline of {_limit_s:g}s ({PROBE_TIMEOUT_ENV})")
