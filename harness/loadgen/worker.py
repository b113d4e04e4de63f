"""A load-generating process (`python -m harness.loadgen.worker`), started by `harness.loadgen.runner`.

Reads its share (pickled) from stdin, answers "ready", waits for the common start time, runs the
share on its own event loop and writes the pickled outcome to stdout.
"""

from __future__ import annotations

import asyncio
import pickle
import sys

from harness.loadgen.runner import drive


def main() -> None:
    """Read the share, say ready, wait for the start time, run, send the outcome."""
    share = pickle.load(sys.stdin.buffer)
    pickle.dump("ready", sys.stdout.buffer)
    sys.stdout.buffer.flush()
    started_at = pickle.load(sys.stdin.buffer)
    pickle.dump(asyncio.run(drive(share, started_at)), sys.stdout.buffer)
    sys.stdout.buffer.flush()


if __name__ == "__main__":
    main()
