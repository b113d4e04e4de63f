"""Real checkpoints named by a model set, fetched from the Hugging Face Hub when a probe first needs one.

Downloads go to `<cache>/models/hub` (the Hub's own cache layout: files in a snapshot are links to
content-addressed blobs), beside the synthesized models, so one folder mounted into a container holds
both. A real checkpoint has no float32 reference outputs: the probes that compare against references
record "not measured" for it rather than a verdict without a ruler.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.models.schema import ModelArtifact
from harness.models.sets import Checkpoint, ModelSet


def hub_root(cache: Path) -> Path:
    """Where real checkpoints are downloaded."""
    return cache / "models" / "hub"


def fetch_checkpoint(checkpoint: Checkpoint, root: Path) -> Path:
    """Download one checkpoint (a whole snapshot, or its one GGUF file) and return its local path."""
    from huggingface_hub import hf_hub_download, snapshot_download

    if checkpoint.file:
        return Path(hf_hub_download(checkpoint.repo, checkpoint.file, revision=checkpoint.revision, cache_dir=root))
    return Path(snapshot_download(checkpoint.repo, revision=checkpoint.revision, cache_dir=root))


def describe(checkpoint: Checkpoint) -> str:
    """Where a checkpoint comes from, as recorded in provenance: hf://repo[@revision][/file]."""
    revision = f"@{checkpoint.revision}" if checkpoint.revision else ""
    return f"hf://{checkpoint.repo}{revision}" + (f"/{checkpoint.file}" if checkpoint.file else "")


def content_digest(path: Path) -> str:
    """A sha256 naming the checkpoint's content, hashed from the bytes (never from a blob's name): of the file
    itself (through a snapshot's link), or, for a folder, of each file's relative path and content sha256."""
    if path.is_file():
        return _file_sha256(path)
    listing = "\n".join(f"{name} {digest}" for name, digest in file_digests(path).items())
    return hashlib.sha256(listing.encode()).hexdigest()


def file_digests(folder: Path) -> dict[str, str]:
    """The content sha256 of every file below `folder` (through links, as an engine reads them), by relative
    path in sorted order: every file an engine loading the folder may read (weights, config, tokenizer)."""
    return {
        file.relative_to(folder).as_posix(): _file_sha256(file) for file in sorted(folder.rglob("*")) if file.is_file()
    }


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class CheckpointSource:
    """The model set's checkpoints for one run, each fetched once, on first use."""

    model_set: ModelSet
    root: Path
    fetch: Callable[[Checkpoint, Path], Path] = fetch_checkpoint
    _fetched: dict[tuple[str, str], ModelArtifact] = field(default_factory=dict)

    def artifact(self, name: str, fmt: str) -> ModelArtifact | None:
        """The real checkpoint for model `name` in `fmt`; None when the set leaves it out."""
        checkpoint = self.model_set.checkpoint(name, fmt)
        if checkpoint is None:
            return None
        if (name, fmt) not in self._fetched:
            path = self.fetch(checkpoint, self.root)
            self._fetched[(name, fmt)] = ModelArtifact(
                name=name,
                family=self.model_set.models[name].family,
                format=fmt,
                path=path,
                sha256=content_digest(path),
                references=[],
                source=describe(checkpoint),
            )
        return self._fetched[(name, fmt)]
