"""A cached Python environment an engine runs from: its folder, its pinned version and its interpreter."""

from __future__ import annotations

import venv
from dataclasses import dataclass
from pathlib import Path


def venv_python(root: Path) -> Path:
    """The interpreter of the environment kept under `root`."""
    return root / "venv" / "bin" / "python"


def create_venv(root: Path) -> str:
    """A fresh environment with pip under `root` (an earlier one is cleared); its interpreter's path."""
    venv.EnvBuilder(with_pip=True, clear=True).create(root / "venv")
    return str(venv_python(root))


@dataclass(frozen=True)
class VenvInstall:
    """A ready engine environment in the cache."""

    root: Path
    package_version: str

    @property
    def python(self) -> Path:
        return venv_python(self.root)
