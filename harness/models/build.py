"""Synthesize every recipe model as a transformers directory plus an f16 GGUF, with references."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from functools import partial
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from harness.models import recipe
from harness.models.awq_export import export_awq
from harness.models.gguf_export import export_f16_gguf
from harness.models.gguf_weights import gguf_encoded_references
from harness.models.gptq_export import export_gptq
from harness.models.reference import dtype_spread, select_references, select_window_references
from harness.models.schema import ModelArtifact
from harness.models.synth import build_model, make_config
from harness.models.tokenizer import save_tokenizer, train_tokenizer
from harness.models.w8a8_export import export_w8a8

QUANTIZED_EXPORTS: dict[str, Callable[[PreTrainedModel, Path, Path], PreTrainedModel]] = {
    "awq": export_awq,
    "gptq": export_gptq,
    "w8a8": export_w8a8,
}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _silent_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Tokens the models never predict: special ones and those not decoding to printable text alone."""

    def printable(token_id: int) -> bool:
        text = tokenizer.decode([token_id])
        return "\ufffd" not in text and all(char.isprintable() or char in " \n" for char in text)

    special = set(tokenizer.all_special_ids)
    return [i for i in range(len(tokenizer)) if i in special or not printable(i)]


def _save_hf(model: PreTrainedModel, directory: Path) -> None:
    """save_pretrained plus a top-level rope_theta, which transformers v4 readers (vLLM) look for."""
    model.save_pretrained(directory)
    config_path = directory / "config.json"
    config = json.loads(config_path.read_text())
    config["rope_theta"] = recipe.SHAPE["rope_theta"]
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def build_base(root: Path, progress: Callable[[str], None]) -> list[ModelArtifact]:
    """Write `<root>/<name>/hf` and `<root>/<name>/<name>-f16.gguf` for every recipe model, and
    `<root>/<name>/<format>` in every QUANTIZED_EXPORTS format for the recipe's QUANTIZED_MODELS."""
    tokenizer_dir = root / "tokenizer"
    tokenizer_dir.mkdir(parents=True)
    progress("training the tokenizer")
    save_tokenizer(train_tokenizer(), tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    silent = _silent_ids(tokenizer)
    built: dict[str, PreTrainedModel] = {}
    artifacts = []
    for index, spec in enumerate(recipe.MODEL_SPECS, start=1):
        progress(f"synthesizing {spec.name} (model {index} of {len(recipe.MODEL_SPECS)})")
        config = make_config(spec, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
        model = built[spec.name] = build_model(spec, config, silent, built)
        hf_dir = root / spec.name / "hf"
        _save_hf(model, hf_dir)
        for tokenizer_file in sorted(tokenizer_dir.iterdir()):
            shutil.copy(tokenizer_file, hf_dir)
        windowed = getattr(config, "sliding_window", None) is not None
        references = (select_window_references if windowed else select_references)(model, tokenizer)
        gguf_path = root / spec.name / f"{spec.name}-f16.gguf"
        export_f16_gguf(hf_dir, gguf_path, spec.name)
        artifact = partial(
            ModelArtifact,
            name=spec.name,
            family=spec.family,
            references=references,
            dtype_spread=dtype_spread(model, references),
        )
        hf_sha = sha256_file(hf_dir / "model.safetensors")
        artifacts.append(artifact(format="hf", path=hf_dir, sha256=hf_sha))
        quantized = spec.name in recipe.QUANTIZED_MODELS
        artifacts.append(
            artifact(
                format="f16",
                path=gguf_path,
                sha256=sha256_file(gguf_path),
                encoded_references=gguf_encoded_references(hf_dir, gguf_path) if quantized else [],
            )
        )
        if quantized:
            artifacts += _quantized_copies(model, hf_dir, tokenizer, spec.name, spec.family)
    return artifacts


def _quantized_copies(
    model: PreTrainedModel, hf_dir: Path, tokenizer: PreTrainedTokenizerBase, name: str, family: str
) -> list[ModelArtifact]:
    """`<name>/<format>` for every weight-quantized HF format, with references from the weights each encodes."""
    copies = []
    for fmt, export in QUANTIZED_EXPORTS.items():
        target = hf_dir.parent / fmt
        encoded = select_references(export(model, hf_dir, target), tokenizer, recipe.QUANT_PROMPTS)
        copies.append(
            ModelArtifact(
                format=fmt,
                path=target,
                sha256=sha256_file(target / "model.safetensors"),
                name=name,
                family=family,
                references=encoded[: recipe.PROMPTS_PER_MODEL],
                encoded_references=encoded,
            )
        )
    return copies
