"""A fake engine that answers the first bytes of a response and then goes silent (issue 24's hung engine).

mode "all": every request gets a status line, headers and the first byte of its body, then nothing.
mode "generation": the health check, /props and /v1/models answer in full (as llama-server's), every other
request goes silent after its first bytes. Run as a script: `python tests/silent_engine.py MODE` prints its URL.
"""

from __future__ import annotations

import json
import socketserver
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

_FULL = {
    "/health": {"status": "ok"},
    "/props": {"build_info": "b0-silent", "default_generation_settings": {"n_ctx": 4096}},
    "/v1/models": {"object": "list", "data": [{"id": "llama", "object": "model"}]},
}


def read_request(rfile: BinaryIO) -> tuple[str, bytes]:
    """The path and body of the HTTP request on `rfile` (OSError or ValueError when it is not one)."""
    line = rfile.readline(65536).decode("latin-1")
    length = 0
    while (header := rfile.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = header.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length":
            length = int(value.strip() or 0)
    body = rfile.read(length)
    return (line.split(" ")[1].split("?")[0] if line.count(" ") >= 2 else "/"), body


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        try:
            path, _ = read_request(self.rfile)
        except (OSError, ValueError):
            return
        mode = self.server.mode  # type: ignore[attr-defined]
        try:
            if mode == "generation" and path in _FULL:
                body = json.dumps(_FULL[path]).encode()
                self.wfile.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                return
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4096\r\n\r\n{")
            self.wfile.flush()
        except OSError:
            return
        self.server.stop.wait(600)  # type: ignore[attr-defined]


@contextmanager
def silent_engine(mode: str = "all") -> Iterator[str]:
    """The fake engine on 127.0.0.1; its base URL."""
    with serve(_Handler, mode) as url:
        yield url


@contextmanager
def serve(handler: type[socketserver.BaseRequestHandler], mode: str) -> Iterator[str]:
    """A threading TCP server on 127.0.0.1 whose handler reads `server.mode` and waits on `server.stop`."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.mode, server.stop = mode, threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.stop.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    with silent_engine(sys.argv[1] if len(sys.argv) > 1 else "all") as url:
        print(url, flush=True)
        threading.Event().wait()
