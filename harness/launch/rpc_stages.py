"""llama-server over local `ggml-rpc-server` processes: one process per layer-split stage.

    python -m harness.launch.rpc_stages --rpc-server BIN --stages 2 --threads 1 -- llama-server ARGS...

Starts the stages on free loopback ports, waits (with a deadline) until each accepts connections,
then runs llama-server with `--rpc 127.0.0.1:PORT,...` appended and exits with its exit code. The
stages are children of this process: the process launcher stops the whole process group, and
this supervisor stops them itself when llama-server ends or when it gets SIGTERM.
"""

from __future__ import annotations

import argparse
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

STAGE_NAME = "ggml-rpc-server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    """Return once 127.0.0.1:`port` accepts a connection; fail if the stage exits or at the deadline."""
    stop_at = time.monotonic() + deadline_s
    while time.monotonic() < stop_at:
        if process.poll() is not None:
            raise RuntimeError(f"{STAGE_NAME} on port {port} exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{STAGE_NAME} on port {port} not listening after {deadline_s:.0f}s")


def _stop(processes: Sequence[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rpc-server", required=True, help="the ggml-rpc-server binary")
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per stage")
    parser.add_argument("--deadline-s", type=float, default=30.0, help="how long a stage may take to listen")
    parser.add_argument("server", nargs=argparse.REMAINDER, help="-- then the llama-server command")
    args = parser.parse_args(argv)
    server = [part for part in args.server if part != "--"] if args.server[:1] == ["--"] else args.server
    if not server or args.stages < 1:
        parser.error("give --stages >= 1 and the llama-server command after --")
    stages: list[subprocess.Popen[bytes]] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        ports = []
        for index in range(args.stages):
            port = _free_port()
            stages.append(
                subprocess.Popen(
                    [args.rpc_server, "--host", "127.0.0.1", "--port", str(port), "--threads", str(args.threads)],
                    stdin=subprocess.DEVNULL,
                )
            )
            ports.append(port)
            print(f"infercheck rpc_stages: stage {index} pid {stages[-1].pid} port {port}", flush=True)
        for port, process in zip(ports, stages):
            _wait_listening(port, process, args.deadline_s)
        rpc = ",".join(f"127.0.0.1:{port}" for port in ports)
        return subprocess.call([*server, "--rpc", rpc], stdin=subprocess.DEVNULL)
    except RuntimeError as exc:
        print(f"infercheck rpc_stages: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        _stop(stages)


if __name__ == "__main__":
    sys.exit(main())
