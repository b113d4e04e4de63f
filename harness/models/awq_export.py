"""Write a 4-bit AWQ copy (GEMM layout, zero points) of a synthesized HF checkpoint.

No calibration (AWQ's activation-aware scaling needs data and changes nothing about the file
format): each linear layer of the decoder is quantized group-wise, round to nearest with a zero
point, and packed as AutoAWQ's `WQLinear_GEMM` stores it: `qweight` [in, out/8] and `qzeros`
[in/group, out/8] int32 with eight 4-bit values per word in the order 0 2 4 6 1 3 5 7, `scales`
[in/group, out] float16, and `quantization_config` {"quant_method": "awq", "version": "gemm"}
in config.json (the layout vLLM's AWQ loader reads, vllm/model_executor/layers/quantization/auto_awq.py).
The references of an AWQ model are computed from the weights the file encodes (dequantized, in
float32), so a probe measures whether an engine computes what the checkpoint says, apart from the
quantization error of this simple quantizer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedModel

from harness.models.quant_checkpoint import LinearCodec, write_quantized

BITS = 4
GROUP_SIZE = 64
PACK_ORDER = (0, 2, 4, 6, 1, 3, 5, 7)


def quantize_linear(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> dict[str, torch.Tensor]:
    """`qweight`, `qzeros` and `scales` of one [out, in] weight, asymmetric round-to-nearest per input group."""
    out_features, in_features = weight.shape
    levels = 2**BITS - 1
    grouped = weight.float().T.reshape(in_features // group_size, group_size, out_features)
    low, high = grouped.amin(dim=1), grouped.amax(dim=1)  # [groups, out]
    scales = ((high - low).clamp(min=1e-6) / levels).half()
    zeros = (-low / scales.float()).round().clamp(0, levels)
    values = (grouped / scales.float()[:, None, :] + zeros[:, None, :]).round().clamp(0, levels)
    return {"qweight": pack(values.reshape(in_features, out_features)), "qzeros": pack(zeros), "scales": scales}


def dequantize_linear(tensors: dict[str, torch.Tensor], group_size: int = GROUP_SIZE) -> torch.Tensor:
    """The [out, in] weight an AWQ loader reconstructs from `quantize_linear`'s tensors."""
    values, zeros = unpack(tensors["qweight"]), unpack(tensors["qzeros"])
    scales = tensors["scales"].float()
    group = torch.arange(values.shape[0]) // group_size
    return ((values - zeros[group]) * scales[group]).T


def pack(values: torch.Tensor, order: tuple[int, ...] = PACK_ORDER) -> torch.Tensor:
    """[rows, cols] integers in 0..15 as [rows, cols/8] int32 words: nibble i of a word holds column order[i]
    of its eight (AWQ's order by default; GPTQ packs in sequence)."""
    rows, cols = values.shape
    nibbles = values.to(torch.int64).numpy().astype(np.uint32).reshape(rows, cols // 8, 8)[:, :, list(order)]
    words = np.zeros((rows, cols // 8), dtype=np.uint32)
    for position in range(8):
        words |= nibbles[:, :, position] << np.uint32(BITS * position)
    return torch.from_numpy(words.view(np.int32))


def unpack(words: torch.Tensor, order: tuple[int, ...] = PACK_ORDER) -> torch.Tensor:
    """The inverse of `pack`: [rows, cols/8] int32 words to [rows, cols] float values."""
    raw = words.numpy().view(np.uint32)
    nibbles = np.stack([(raw >> np.uint32(BITS * position)) & np.uint32(0xF) for position in range(8)], axis=-1)
    ordered = np.empty_like(nibbles)
    ordered[:, :, list(order)] = nibbles
    return torch.from_numpy(ordered.reshape(raw.shape[0], -1).astype(np.float32))


AWQ = LinearCodec(
    quantize=quantize_linear,
    dequantize=dequantize_linear,
    quantization_config={
        "quant_method": "awq",
        "bits": BITS,
        "group_size": GROUP_SIZE,
        "zero_point": True,
        "version": "gemm",
    },
)


def export_awq(model: PreTrainedModel, hf_dir: Path, target: Path) -> PreTrainedModel:
    """Write `target` as `hf_dir` (saved from `model`) with every decoder linear layer in AWQ 4-bit and the
    other tensors in float16; return a float32 copy of `model` holding exactly the weights the file encodes."""
    return write_quantized(model, hf_dir, target, AWQ)
