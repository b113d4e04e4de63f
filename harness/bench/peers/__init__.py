"""The peer load generators GuideLLM and AIPerf: their cached installs (`install`), and one runner for
each (`guidellm`, `aiperf`) that drives its CLI against the null engine for `infercheck bench calibrate`.
The runners share `runner` (the subprocess, its deadline and its CPU time)."""

from harness.bench.peers.install import INSTALL_TIMEOUT_S, PEER_VERSIONS, Peer, find_peer, install_peer, peer_dir

__all__ = ["INSTALL_TIMEOUT_S", "PEER_VERSIONS", "Peer", "find_peer", "install_peer", "peer_dir"]
