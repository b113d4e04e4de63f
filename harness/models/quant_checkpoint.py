"""Write a weight-quantized copy of a synthesized HF checkpoint, one linear-layer codec per format.

Each format module (awq_export, gptq_export, w8a8_export) supplies how one [out, in] linear weight
becomes the tensors its loader reads, how those tensors decode back, and its `quantization_config`.
The copy quantizes every decoder linear layer, keeps the other tensors in `other_dtype`, and the
returned model holds exactly the weights the file encodes (decoded, float32): the references of a
quantized artifact come from it, so a probe measures whether an engine computes what the file says.
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import PreTrainedModel

QUANTIZED_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
WEIGHTS = "model.safetensors"


@dataclass(frozen=True)
class LinearCodec:
    """One format's linear-layer encoding and the config.json entry that names it."""

    quantize: Callable[[torch.Tensor], dict[str, torch.Tensor]]  # [out, in] weight -> tensors by suffix
    dequantize: Callable[[dict[str, torch.Tensor]], torch.Tensor]  # the inverse, as the loader reconstructs it
    quantization_config: dict
    other_dtype: torch.dtype = torch.float16  # embeddings, norms, lm_head
    extra_files: tuple[tuple[str, dict], ...] = ()  # further JSON files (name, content), e.g. quantize_config.json


def write_quantized(model: PreTrainedModel, hf_dir: Path, target: Path, codec: LinearCodec) -> PreTrainedModel:
    """Write `target` as `hf_dir` (saved from `model`) with every decoder linear layer encoded by `codec`;
    return a float32 copy of `model` holding exactly the weights the file encodes."""
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    tensors: dict[str, torch.Tensor] = {}
    encoded: dict[str, torch.Tensor] = {}
    for name, tensor in load_file(hf_dir / WEIGHTS).items():
        layer = name.removesuffix(".weight")
        if name.endswith(".weight") and layer.rsplit(".", 1)[-1] in QUANTIZED_LAYERS:
            quantized = codec.quantize(tensor)
            tensors |= {f"{layer}.{part}": value for part, value in quantized.items()}
            encoded[name] = codec.dequantize(quantized).float()
        else:
            tensors[name] = tensor.to(codec.other_dtype)
            encoded[name] = tensors[name].float()
    save_file(tensors, target / WEIGHTS, metadata={"format": "pt"})
    for path in sorted(hf_dir.iterdir()):
        if path.name not in (WEIGHTS, "config.json"):
            shutil.copy(path, target / path.name)
    config = json.loads((hf_dir / "config.json").read_text())
    config |= {
        "torch_dtype": str(codec.other_dtype).removeprefix("torch."),
        "quantization_config": codec.quantization_config,
    }
    config.pop("dtype", None)
    (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    for file_name, content in codec.extra_files:
        (target / file_name).write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
    decoded = copy.deepcopy(model)
    decoded.load_state_dict(encoded, strict=True)
    return decoded
