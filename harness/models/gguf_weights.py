"""The weights a GGUF file encodes, decoded back into the HF model they were exported from.

Every tensor is dequantized with the `gguf` package (`gguf.quants.dequantize`, the Python port of
ggml's own dequantizers for F16, Q8_0, Q4_K, Q6_K, ...), renamed back to its transformers name,
Q/K rows un-permuted and experts unstacked (the inverse of harness.models.gguf_export). References
computed from this model measure an engine against what the file says, not against the float32
weights the quantizer started from.
"""

from __future__ import annotations

import re
from pathlib import Path

import gguf
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from harness.models import recipe
from harness.models.gguf_export import EXPERT_TENSORS, GLOBAL_TENSORS, LAYER_TENSORS
from harness.models.reference import select_references
from harness.models.schema import RefCase

_GLOBAL = {gguf_name: hf_name for hf_name, gguf_name in GLOBAL_TENSORS.items()}
_LAYER = {gguf_name: hf_name for hf_name, gguf_name in LAYER_TENSORS.items()}
_EXPERT = {gguf_name: hf_name for hf_name, gguf_name in EXPERT_TENSORS.items()}


def rope_unpermute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse of gguf_export.rope_permute: llama.cpp's interleaved pairs back to rotate-half."""
    rows = weight.shape[0]
    return weight.reshape(n_head, rows // n_head // 2, 2, -1).swapaxes(1, 2).reshape(weight.shape)


def gguf_state_dict(path: Path, config: dict) -> dict[str, torch.Tensor]:
    """Every tensor of the GGUF at `path`, dequantized to float32, under its transformers name."""
    state: dict[str, torch.Tensor] = {}
    for tensor in gguf.GGUFReader(path).tensors:
        values = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32)
        base = tensor.name.removesuffix(".weight")
        if base in _GLOBAL:
            state[f"{_GLOBAL[base]}.weight"] = torch.from_numpy(values)
            continue
        match = re.fullmatch(r"blk\.(\d+)\.(.+)", base)
        if match is None:
            raise ValueError(f"{tensor.name}: not a global or per-layer GGUF tensor")
        layer, part = match.groups()
        if part in _EXPERT:
            for index, expert in enumerate(values):
                state[f"model.layers.{layer}.block_sparse_moe.experts.{index}.{_EXPERT[part]}.weight"] = (
                    torch.from_numpy(np.ascontiguousarray(expert))
                )
            continue
        if part == "attn_q":
            values = rope_unpermute(values, config["num_attention_heads"])
        elif part == "attn_k":
            values = rope_unpermute(values, config["num_key_value_heads"])
        state[f"model.layers.{layer}.{_LAYER[part]}.weight"] = torch.from_numpy(np.ascontiguousarray(values))
    return state


def decoded_gguf_model(hf_dir: Path, path: Path) -> PreTrainedModel:
    """The float32 model of `hf_dir` with the weights the GGUF at `path` encodes."""
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.load_state_dict(gguf_state_dict(path, model.config.to_dict()), strict=True)
    return model.eval()


def gguf_encoded_references(hf_dir: Path, path: Path) -> list[RefCase]:
    """QUANT_PROMPTS references of the weights the GGUF at `path` encodes (tokenizer and config from `hf_dir`)."""
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    return select_references(decoded_gguf_model(hf_dir, path), tokenizer, recipe.QUANT_PROMPTS)
