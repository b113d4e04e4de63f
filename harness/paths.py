"""Where infercheck keeps its caches, runs and results."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def cache_dir() -> Path:
    """Engine builds and synthesized models: $INFERCHECK_CACHE, else ~/.cache/infercheck."""
    configured = os.environ.get("INFERCHECK_CACHE")
    path = Path(configured) if configured else Path.home() / ".cache" / "infercheck"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_results_dir() -> Path:
    """The committed result records."""
    return REPO_ROOT / "results"


def default_report_dir() -> Path:
    """The generated report."""
    return REPO_ROOT / "report"


def default_site_dir() -> Path:
    """The generated evidence site (`infercheck site`); not committed."""
    return REPO_ROOT / "site"
