"""Write an INT8 W8A8 copy (compressed-tensors, "int-quantized") of a synthesized HF checkpoint.

Each decoder linear layer's weight is quantized per output channel, symmetric, round to nearest
(scale max|w|/127), and stored as llm-compressor writes it: `weight` [out, in] int8 and
`weight_scale` [out, 1]; the activations are quantized by the engine at run time, per token,
dynamic, symmetric (no `input_scale`). config.json's `quantization_config` is the compressed-tensors
config vLLM reads (vllm/model_executor/layers/quantization/compressed_tensors/compressed_tensors.py,
scheme CompressedTensorsW8A8Int8); lm_head stays unquantized, as llm-compressor's W8A8 recipe leaves it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel

from harness.models.quant_checkpoint import LinearCodec, write_quantized

LEVELS = 127
SCALE_DTYPE = torch.float16


def quantize_linear(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """`weight` (int8) and `weight_scale` [out, 1] of one [out, in] weight, symmetric per output channel."""
    scale = (weight.float().abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / LEVELS).to(SCALE_DTYPE)
    values = (weight.float() / scale.float()).round().clamp(-LEVELS, LEVELS).to(torch.int8)
    return {"weight": values, "weight_scale": scale}


def dequantize_linear(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The [out, in] weight the int8 values and per-channel scales encode."""
    return tensors["weight"].float() * tensors["weight_scale"].float()


_INT8_SYMMETRIC = {
    "num_bits": 8,
    "type": "int",
    "symmetric": True,
    "group_size": None,
    "block_structure": None,
    "actorder": None,
    "observer": "minmax",
    "observer_kwargs": {},
}
QUANTIZATION_CONFIG = {
    "quant_method": "compressed-tensors",
    "format": "int-quantized",
    "quantization_status": "compressed",
    "config_groups": {
        "group_0": {
            "targets": ["Linear"],
            "weights": {**_INT8_SYMMETRIC, "strategy": "channel", "dynamic": False},
            "input_activations": {**_INT8_SYMMETRIC, "strategy": "token", "dynamic": True, "observer": None},
            "output_activations": None,
            "format": "int-quantized",
        }
    },
    "ignore": ["lm_head"],
    "kv_cache_scheme": None,
}
W8A8 = LinearCodec(quantize=quantize_linear, dequantize=dequantize_linear, quantization_config=QUANTIZATION_CONFIG)


def export_w8a8(model: PreTrainedModel, hf_dir: Path, target: Path) -> PreTrainedModel:
    """Write `target` as `hf_dir` (saved from `model`) in INT8 W8A8 (other tensors float16); return a float32 copy
    of `model` holding exactly the weights the file encodes."""
    return write_quantized(model, hf_dir, target, W8A8)
