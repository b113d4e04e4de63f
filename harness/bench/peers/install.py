"""Install the peer load generators GuideLLM and AIPerf, each in a cached virtual environment of its own.

`install_peer` makes the environment with pip, within a time box (their dependency trees are
large; on a busy host the install may not finish in time, and the calibration then says so). pip runs in
its own process group, and at the deadline the whole group is killed: the builds and helpers it started too.
`find_peer` answers an installed peer, or None.
"""

from __future__ import annotations

import os
import sys
import venv
from dataclasses import dataclass
from pathlib import Path

from harness.bench.peers.runner import failure_line, run_tool

PEER_VERSIONS = {"guidellm": "0.8.1", "aiperf": "0.13.0"}
INSTALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Peer:
    """An installed peer tool."""

    name: str
    version: str
    root: Path

    @property
    def script(self) -> Path:
        """Its console script."""
        return self.root / "venv" / "bin" / self.name


def peer_dir(cache: Path, name: str) -> Path:
    """The cache folder of a peer's pinned version."""
    return cache / "peers" / f"{name}-{PEER_VERSIONS[name]}"


def find_peer(cache: Path, name: str) -> Peer | None:
    """The peer if its environment is complete (its console script and the install marker), else None."""
    root = peer_dir(cache, name)
    peer = Peer(name, PEER_VERSIONS[name], root)
    return peer if peer.script.exists() and (root / "installed").exists() else None


def install_peer(cache: Path, name: str, timeout_s: float = INSTALL_TIMEOUT_S) -> Peer | str:
    """Install the peer's pinned version into its own environment; the peer, or why it is not installed."""
    existing = find_peer(cache, name)
    if existing:
        return existing
    root = peer_dir(cache, name)
    venv.create(root / "venv", with_pip=True, clear=True)
    command = [str(root / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", f"{name}=={PEER_VERSIONS[name]}"]
    try:
        done = run_tool(command, dict(os.environ), root, timeout_s)  # its log: root/tool.log
    except RuntimeError:
        return f"not installed: pip did not finish within {timeout_s:.0f} s (it and every process it started killed)"
    if done.returncode != 0:
        return f"not installed: pip failed ({failure_line(done.log)[:200]})"
    (root / "installed").write_text(f"{name}=={PEER_VERSIONS[name]} with {sys.version.split()[0]}\n")
    return Peer(name, PEER_VERSIONS[name], root)
