"""Tiny synthetic models (llama, mistral, mixtral and variants) with float32 HF references.

`ensure_models` and `find_artifact` load on first use: importing a light submodule (`harness.models.sets`, the
schema) must not import torch and transformers, which the report, the site and the CLI's startup do without.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.models.schema import ModelArtifact, RefCase

if TYPE_CHECKING:
    from harness.models.cache import ensure_models, find_artifact

__all__ = ["ModelArtifact", "RefCase", "ensure_models", "find_artifact"]


def __getattr__(name: str) -> Any:
    if name in ("ensure_models", "find_artifact"):
        from harness.models import cache

        return getattr(cache, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
