"""Headless Chromium from Debian's packages for the browser tests: found, or installed when this is a root
Debian host without it (time-boxed), else the test is skipped with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

PACKAGES = ("chromium", "fonts-noto-color-emoji")  # the font only makes the screenshots' marks readable
INSTALL_TIMEOUT_S = 900
PAGE_TIMEOUT_S = 90
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--no-first-run",
    "--allow-file-access-from-files",
)


def find_chromium() -> str | None:
    """The Chromium binary on PATH, if any."""
    return next((found for name in ("chromium", "chromium-browser") if (found := shutil.which(name))), None)


def ensure_chromium() -> str:
    """Chromium's path, installing Debian's package when root and missing; pytest.skip with the reason otherwise."""
    if found := find_chromium():
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(
            "headless Chromium is missing and cannot be installed here (needs root and apt-get): "
            "apt-get install -y chromium"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", *PACKAGES]):
            subprocess.run(command, check=True, capture_output=True, timeout=INSTALL_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        pytest.skip(f"installing Chromium took more than {INSTALL_TIMEOUT_S} s")
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"apt-get could not install Chromium: {exc.stderr.decode(errors='replace').strip()[-300:]}")
    if found := find_chromium():
        return found
    pytest.skip("apt-get installed chromium but no chromium binary is on PATH")


def dump_dom(chromium: str, url: str) -> str:
    """The page's DOM after its scripts ran."""
    done = subprocess.run(
        [chromium, *FLAGS, "--virtual-time-budget=2000", "--dump-dom", url],
        capture_output=True,
        timeout=PAGE_TIMEOUT_S,
        check=True,
    )
    return done.stdout.decode("utf-8")


def screenshot(chromium: str, url: str, target: Path, size: str = "1400,1000") -> Path:
    """A PNG of the page as Chromium draws it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [chromium, *FLAGS, "--virtual-time-budget=2000", f"--window-size={size}", f"--screenshot={target}", url],
        capture_output=True,
        timeout=PAGE_TIMEOUT_S,
        check=True,
    )
    if not target.is_file():
        raise AssertionError(f"Chromium wrote no screenshot for {url}")
    return target
