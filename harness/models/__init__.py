"""Tiny synthetic models (llama, mistral, mixtral and variants) with float32 HF references."""

from harness.models.cache import ensure_models, find_artifact
from harness.models.schema import ModelArtifact, RefCase

__all__ = ["ModelArtifact", "RefCase", "ensure_models", "find_artifact"]
