"""Build the synthetic models once per recipe version and reload them from a manifest afterwards."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import json
import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.atomic import write_atomic
from harness.models import recipe
from harness.models.build import build_base, sha256_file
from harness.models.checkpoints import content_digest, file_digests
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
        for artifact in manifest.artifacts:
            record_files(artifact)
    return [
        artifact
        for artifact in manifest.artifacts
        if quantize_bin is not None or artifact.format not in recipe.QUANT_TYPES
    ]


class ModelIntegrityError(RuntimeError):
    """A model file no longer holds the bytes its manifest names: the engine must not load it."""


WEIGHTS = "model.safetensors"  # the file of a checkpoint folder whose sha256 the manifest names


def files_record(artifact: ModelArtifact) -> Path:
    """Where the content sha256 of every file of a checkpoint folder is recorded: beside the folder, not in it."""
    return artifact.path.with_name(f"{artifact.path.name}.files.json")


def record_files(artifact: ModelArtifact) -> None:
    """Record the sha256 of every file of a synthesized checkpoint folder once (after its build, or the first time
    a cache built before these records is loaded), if its weights still match the manifest."""
    record = files_record(artifact)
    if artifact.source != "synthesized" or not artifact.path.is_dir() or record.exists():
        return
    digests = file_digests(artifact.path)
    if digests.get(WEIGHTS) == artifact.sha256:  # otherwise the launch is refused on the weights
        write_atomic(record, json.dumps({"files": digests}, indent=2).encode())


def verify_artifact(artifact: ModelArtifact) -> None:
    """Re-hash every file the engine will read before a launch; ModelIntegrityError on any change. A synthesized
    file against the manifest; a synthesized folder's weights against the manifest and each of its files (config,
    tokenizer, ...) against the record made after its build, none added or missing; a real checkpoint by content
    against the digest taken when it was fetched, this run."""
    label = f"{artifact.name}/{artifact.format} at {artifact.path}"
    try:
        if artifact.source != "synthesized":
            actual = content_digest(artifact.path)
            if actual != artifact.sha256:
                raise ModelIntegrityError(
                    f"checkpoint {artifact.source} ({label}) changed since it was fetched (sha256 {actual[:12]}, "
                    f"at fetch {artifact.sha256[:12]}): refusing to launch"
                )
            return
        digests = file_digests(artifact.path) if artifact.path.is_dir() else {"": sha256_file(artifact.path)}
    except OSError as exc:
        raise ModelIntegrityError(f"cannot read model {label}: {exc.strerror or exc}") from None
    actual = digests.get(WEIGHTS if artifact.path.is_dir() else "", "missing")
    if actual != artifact.sha256:
        raise ModelIntegrityError(
            f"model {label} changed since it was built ({WEIGHTS if artifact.path.is_dir() else 'the file'}: "
            f"sha256 {actual[:12]}, manifest {artifact.sha256[:12]}): refusing to launch (delete the models cache "
            "to rebuild it)"
        )
    if not artifact.path.is_dir():
        return
    try:
        recorded = json.loads(files_record(artifact).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelIntegrityError(
            f"model {label}: no readable record of its files ({files_record(artifact)}): refusing to launch "
            "(delete the models cache to rebuild it)"
        ) from None
    changed = sorted(name for name in recorded.keys() | digests.keys() if recorded.get(name) != digests.get(name))
    if changed:
        raise ModelIntegrityError(
            f"model {label} changed since it was built: {', '.join(changed)[:300]} "
            f"{'differs' if len(changed) == 1 else 'differ'} from {files_record(artifact).name} "
            "(changed, added or missing): refusing to launch (delete the models cache to rebuild it)"
        )


def find_artifact(artifacts: list[ModelArtifact], name: str, fmt: str) -> ModelArtifact:
    """The artifact of model `name` in format `fmt`; KeyError listing what exists otherwise."""
    for artifact in artifacts:
        if artifact.name == name and artifact.format == fmt:
            return artifact
    available = ", ".join(sorted(f"{artifact.name}/{artifact.format}" for artifact in artifacts))
    raise KeyError(f"no model artifact {name}/{fmt}; available: {available}")
