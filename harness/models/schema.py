"""Data records of the synthesized models: reference cases, artifacts and the cache manifest."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel


class RefCase(BaseModel):
    """One reference prompt and what HF transformers (float32, greedy) generates from it."""

    prompt: str
    prompt_ids: list[int]
    greedy_ids: list[int]
    greedy_text: str
    top_logprobs: list[dict[str, float]]
    top_token_ids: list[list[int]]
    margins: list[float]  # top-1 minus top-2 logit at each generated position


class DtypeSpread(BaseModel):
    """How the same weights computed in a reduced precision agree with the float32 references."""

    prompts: int
    exact_share: float  # share of prompts whose greedy continuation stays the same
    top1_share: float  # share whose first generated token stays the same
    max_logprob_diff: float  # first position: |reduced - float32| log-probability of the reference's top token


class ModelArtifact(BaseModel):
    """One model in one format, with the float32 references of its weights."""

    name: str
    family: str
    format: str
    path: Path
    sha256: str
    references: list[RefCase]  # empty for a real checkpoint: nothing to compare against
    # QUANT_PROMPTS cases from the weights this file encodes (decoded to float32), for the quantized-format and
    # reference-precision probes; empty where nothing decodes the file (a real checkpoint, a draft's GGUF)
    encoded_references: list[RefCase] = []
    dtype_spread: dict[str, DtypeSpread] = {}  # per compute dtype (torch name); empty for a real checkpoint
    source: str = "synthesized"  # or where a real checkpoint came from (hf://repo[@revision][/file])


class Manifest(BaseModel):
    """What one cache version holds; written last, so its presence means the build finished.

    Artifact paths are stored relative to the version directory, so the cache can move.
    """

    version: str
    artifacts: list[ModelArtifact]
    quantizer_sha256: str | None = None  # the llama-quantize that made the quantized artifacts
