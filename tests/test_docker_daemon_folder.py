"""The private Docker daemon's folder: under $XDG_RUNTIME_DIR or the cache, created 0700, checked with lstat."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harness.docker import daemon
from harness.docker.daemon import UnsafeFolder, checked_private_folder, private_runtime_dir, private_socket


def test_runtime_folder_is_private_and_not_predictable_in_tmp(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    folder = private_runtime_dir()
    assert folder == tmp_path / "run" / "infercheck-docker"
    assert stat.S_IMODE(os.lstat(folder).st_mode) == 0o700
    assert private_socket().parent == folder
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    monkeypatch.setattr(daemon, "cache_dir", lambda: tmp_path / "cache")
    assert private_runtime_dir() == tmp_path / "cache" / "docker" / "run"
    assert not str(private_runtime_dir()).startswith("/tmp/infercheck-docker")


def test_a_symlinked_folder_is_refused(tmp_path: Path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(UnsafeFolder, match="symlink"):
        checked_private_folder(tmp_path / "run")


def test_another_users_folder_is_refused(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("needs root to make a folder owned by another user")
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    os.chown(folder, 65534, 65534)
    with pytest.raises(UnsafeFolder, match="belongs to uid 65534"):
        checked_private_folder(folder)


def test_an_open_folder_of_ours_is_closed(tmp_path: Path):
    folder = tmp_path / "run"
    folder.mkdir()
    folder.chmod(0o777)
    assert stat.S_IMODE(os.lstat(checked_private_folder(folder)).st_mode) == 0o700
