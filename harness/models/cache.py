"""Build the synthetic models once per recipe version and reload them from a manifest afterwards."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.models import recipe
from harness.models.build import build_base, sha256_file
from harness.models.gguf_weights import gguf_encoded_references
from harness.models.quantize import quantize_gguf
from harness.models.schema import Manifest, ModelArtifact

RECIPE_MODULES = (
    "corpus",
    "recipe",
    "tokenizer",
    "synth",
    "reference",
    "gguf_export",
    "gguf_weights",
    "quant_checkpoint",
    "awq_export",
    "gptq_export",
    "w8a8_export",
    "build",
    "schema",
)
RECIPE_LIBRARIES = ("torch", "transformers", "tokenizers", "safetensors", "gguf")
MANIFEST = "manifest.json"


def recipe_version() -> str:
    """Hash of the synthesis source files (every recipe constant lives there) and library versions."""
    digest = hashlib.sha256()
    for module in RECIPE_MODULES:
        digest.update((Path(__file__).parent / f"{module}.py").read_bytes())
    for library in RECIPE_LIBRARIES:
        digest.update(f"{library}=={importlib.metadata.version(library)}".encode())
    return digest.hexdigest()[:16]


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock file so concurrent callers build only once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _rebase(manifest: Manifest, old: Path, new: Path) -> Manifest:
    """The manifest with every artifact path moved from under `old` to under `new`."""
    artifacts = [a.model_copy(update={"path": new / a.path.relative_to(old)}) for a in manifest.artifacts]
    return manifest.model_copy(update={"artifacts": artifacts})


def _write_manifest(root: Path, manifest: Manifest) -> None:
    """Write the manifest (paths relative to `root`) atomically: temp file, then rename."""
    temporary = root / f"{MANIFEST}.tmp"
    temporary.write_text(_rebase(manifest, root, Path()).model_dump_json(indent=2))
    os.replace(temporary, root / MANIFEST)


def _load_manifest(root: Path) -> Manifest | None:
    """The finished manifest of `root` with absolute paths, or None when the build never completed."""
    path = root / MANIFEST
    return _rebase(Manifest.model_validate_json(path.read_text()), Path(), root) if path.is_file() else None


def _quantize_all(manifest: Manifest, quantize_bin: Path, progress: Callable[[str], None]) -> Manifest:
    """The manifest with every f16 artifact quantized to every recipe quant type by `quantize_bin`."""
    base = [artifact for artifact in manifest.artifacts if artifact.format not in recipe.QUANT_TYPES]
    quantized = []
    for f16 in [artifact for artifact in base if artifact.format == "f16"]:
        for fmt, qtype in recipe.QUANT_TYPES.items():
            progress(f"quantizing {f16.name} to {qtype}")
            target = f16.path.with_name(f"{f16.name}-{fmt}.gguf")
            quantize_gguf(quantize_bin, f16.path, target, qtype)
            hf_dir = find_artifact(base, f16.name, "hf").path
            encoded = gguf_encoded_references(hf_dir, target) if f16.encoded_references else []
            update = {"format": fmt, "path": target, "sha256": sha256_file(target), "encoded_references": encoded}
            quantized.append(f16.model_copy(update=update))
    update = {"artifacts": base + quantized, "quantizer_sha256": sha256_file(quantize_bin)}
    return manifest.model_copy(update=update)


def ensure_models(
    cache_dir: Path, quantize_bin: Path | None, progress: Callable[[str], None] | None = None
) -> list[ModelArtifact]:
    """All synthetic model artifacts under `cache_dir/models/<version>`, building what is missing.

    Without `quantize_bin` only the formats made without llama.cpp ("hf", "f16", "awq") are returned;
    with it, quantized files made by a different llama-quantize binary are made again.
    """
    report = progress or (lambda message: None)
    version = recipe_version()
    root = cache_dir / "models" / version
    with _locked(cache_dir / "models" / f"{version}.lock"):
        manifest = _load_manifest(root)
        if manifest is None:
            shutil.rmtree(root, ignore_errors=True)
            report(f"building synthetic models into {root}")
            manifest = Manifest(version=version, artifacts=build_base(root, report))
            _write_manifest(root, manifest)
        if quantize_bin is not None and manifest.quantizer_sha256 != sha256_file(quantize_bin):
            manifest = _quantize_all(manifest, quantize_bin, report)
            _write_manifest(root, manifest)
    return [
        artifact
        for artifact in manifest.artifacts
        if quantize_bin is not None or artifact.format not in recipe.QUANT_TYPES
    ]


class ModelIntegrityError(RuntimeError):
    """A model file no longer holds the bytes its manifest names: the engine must not load it."""


def weights_file(artifact: ModelArtifact) -> Path:
    """The file the artifact's sha256 is of: the file itself, or a checkpoint folder's model.safetensors."""
    return artifact.path / "model.safetensors" if artifact.path.is_dir() else artifact.path


def verify_artifact(artifact: ModelArtifact) -> None:
    """Re-hash a synthesized model's weights against the manifest before a launch; ModelIntegrityError on a
    mismatch (a real checkpoint's digest was taken when it was fetched, this run)."""
    if artifact.source != "synthesized":
        return
    path = weights_file(artifact)
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ModelIntegrityError(
            f"cannot read model {artifact.name}/{artifact.format} at {path}: {exc.strerror or exc}"
        ) from None
    if actual != artifact.sha256:
        raise ModelIntegrityError(
            f"model {artifact.name}/{artifact.format} at {path} changed since it was built (sha256 {actual[:12]}, "
            f"manifest {artifact.sha256[:12]}): refusing to launch (delete the models cache to rebuild it)"
        )


def find_artifact(artifacts: list[ModelArtifact], name: str, fmt: str) -> ModelArtifact:
    """The artifact of model `name` in format `fmt`; KeyError listing what exists otherwise."""
    for artifact in artifacts:
        if artifact.name == name and artifact.format == fmt:
            return artifact
    available = ", ".join(sorted(f"{artifact.name}/{artifact.format}" for artifact in artifacts))
    raise KeyError(f"no model artifact {name}/{fmt}; available: {available}")
