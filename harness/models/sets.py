"""Model sets: which real checkpoint each probe uses on a GPU host (model-sets/*.yaml, `--model-set FILE`).

A model set maps the probes' model names (llama, mistral, mixtral, llama-draft) and formats (hf,
awq, gptq, exl2 and the GGUF f16, q8_0, q4_k_m) to Hugging Face checkpoints. A name or format the set
leaves out, or every entry on a host that cannot reach the Hub, falls back to the synthesized model
of that name and format (harness.models), where one exists and the engine can load it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.paths import REPO_ROOT

DEFAULT_GPU_SET = REPO_ROOT / "model-sets" / "gpu-default.yaml"
HUB_URL = "https://huggingface.co"
Format = Literal["hf", "awq", "gptq", "exl2", "f16", "q8_0", "q4_k_m"]
GGUF_FORMATS = ("f16", "q8_0", "q4_k_m")


class ModelSetError(ValueError):
    """A model set file is missing or malformed (the message names the file and the field)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Checkpoint(_Strict):
    """One checkpoint on the Hugging Face Hub: a repository, optionally a branch and one file."""

    repo: str = Field(pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
    revision: str | None = None  # branch, tag or commit (EXL2 repositories keep one bit rate per branch)
    file: str | None = None  # a single file of the repository (GGUF)
    min_gpus: int = Field(default=1, ge=1)  # GPUs its weights need at 16 bits (or its quantization)


class ModelEntry(_Strict):
    """One probe model name: its architecture family and a checkpoint per format."""

    family: Literal["llama", "mistral", "mixtral"]
    formats: dict[Format, Checkpoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _gguf_names_a_file(self) -> ModelEntry:
        for fmt, checkpoint in self.formats.items():
            is_gguf = fmt in GGUF_FORMATS
            if is_gguf != bool(checkpoint.file and checkpoint.file.endswith(".gguf")):
                raise ValueError(
                    f"format {fmt}: "
                    + ("a GGUF format names its .gguf `file`" if is_gguf else "only GGUF formats name a single `file`")
                )
        return self


class ModelSet(_Strict):
    """A named mapping from probe models to real checkpoints."""

    name: str
    description: str
    models: dict[str, ModelEntry]
    draft_for: dict[str, str] = Field(default_factory=dict)  # draft model -> the model it drafts for

    @model_validator(mode="after")
    def _drafts_share_a_family(self) -> ModelSet:
        for draft, target in self.draft_for.items():
            if draft not in self.models or target not in self.models:
                raise ValueError(f"draft_for names a model the set lacks: {draft} -> {target}")
            if self.models[draft].family != self.models[target].family:
                raise ValueError(
                    f"draft {draft} ({self.models[draft].family}) cannot draft for {target} "
                    f"({self.models[target].family}): they must share a tokenizer"
                )
        return self

    def checkpoint(self, model: str, fmt: str) -> Checkpoint | None:
        """The checkpoint for `model` in `fmt`, or None when the set leaves it out."""
        entry = self.models.get(model)
        return entry.formats.get(fmt) if entry else None  # type: ignore[call-overload]


def load_model_set(path: Path) -> ModelSet:
    """Read and validate a model set file; ModelSetError says what is wrong."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return ModelSet.model_validate(data)
    except OSError as exc:
        raise ModelSetError(f"cannot read model set {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelSetError(f"invalid model set {path}: not UTF-8 text (a YAML file)") from None
    except (yaml.YAMLError, ValidationError) as exc:
        raise ModelSetError(f"invalid model set {path}: {exc}") from None


def hub_reachable(timeout_s: float = 5.0) -> bool:
    """Whether the Hugging Face Hub answers (False when HF_HUB_OFFLINE is set)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    try:
        return httpx.head(HUB_URL, timeout=timeout_s).status_code < 500
    except httpx.HTTPError:
        return False


def choose(model_set: ModelSet, model: str, fmt: str, online: bool) -> Checkpoint | None:
    """The real checkpoint a probe should use, or None: use the synthesized model of that name and format."""
    return model_set.checkpoint(model, fmt) if online else None
