"""Write a 4-bit GPTQ copy (symmetric, no act-order) of a synthesized HF checkpoint.

No calibration (GPTQ's error-compensating updates need data and change nothing about the file
format): each decoder linear layer is quantized group-wise, round to nearest, symmetric, as
AutoGPTQ's quantizer does with `sym=True` (scale 2·max|w|/15, zero point 8), and stored as its
`QuantLinear` does: `qweight` [in/8, out] int32 packed along the input dimension, eight 4-bit values
per word in sequence (value j at bits 4j); `qzeros` [in/group, out/8] int32 packed along the output
dimension, holding zero - 1 (the original "gptq" checkpoint format, which loaders undo by adding 1);
`scales` [in/group, out] float16; `g_idx` [in] int32, the group of each input row. config.json's
`quantization_config` and quantize_config.json carry {"quant_method": "gptq", "bits": 4,
"group_size", "desc_act": false, "sym": true}, what vLLM 0.32 reads
(vllm/model_executor/layers/quantization/auto_gptq.py, `AutoGPTQConfig.from_config`; on CPU the
4-bit symmetric type uint4b8 runs on CPUWNA16LinearKernel, which takes the zero point as 8 and
reads no qzeros) and what llama.cpp's converter decodes (conversion/base.py, `dequant_gptq`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel

from harness.models.awq_export import pack, unpack
from harness.models.quant_checkpoint import LinearCodec, write_quantized

BITS = 4
GROUP_SIZE = 128
ZERO = 2 ** (BITS - 1)
SEQUENTIAL = tuple(range(8))


def quantize_linear(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> dict[str, torch.Tensor]:
    """`qweight`, `qzeros`, `scales` and `g_idx` of one [out, in] weight, symmetric round-to-nearest."""
    out_features, in_features = weight.shape
    levels = 2**BITS - 1
    grouped = weight.float().T.reshape(in_features // group_size, group_size, out_features)
    scales = (2 * grouped.abs().amax(dim=1).clamp(min=1e-6) / levels).half()  # [groups, out]
    values = (grouped / scales.float()[:, None, :]).round().add(ZERO).clamp(0, levels)
    zeros = torch.full((in_features // group_size, out_features), ZERO - 1)
    return {
        "qweight": pack(values.reshape(in_features, out_features).T, SEQUENTIAL).T.contiguous(),
        "qzeros": pack(zeros, SEQUENTIAL),
        "scales": scales,
        "g_idx": (torch.arange(in_features) // group_size).to(torch.int32),
    }


def dequantize_linear(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """The [out, in] weight a GPTQ loader reconstructs: (q - (stored zero + 1)) · scale of the row's group."""
    values = unpack(tensors["qweight"].T.contiguous(), SEQUENTIAL).T  # [in, out]
    zeros = unpack(tensors["qzeros"], SEQUENTIAL) + 1  # [groups, out]
    group = tensors["g_idx"].long()
    return ((values - zeros[group]) * tensors["scales"].float()[group]).T


QUANTIZE_CONFIG = {
    "quant_method": "gptq",
    "bits": BITS,
    "group_size": GROUP_SIZE,
    "desc_act": False,
    "sym": True,
    "checkpoint_format": "gptq",
    "damp_percent": 0.01,
    "true_sequential": True,
}
GPTQ = LinearCodec(
    quantize=quantize_linear,
    dequantize=dequantize_linear,
    quantization_config=QUANTIZE_CONFIG,
    extra_files=(("quantize_config.json", QUANTIZE_CONFIG),),
)


def export_gptq(model: PreTrainedModel, hf_dir: Path, target: Path) -> PreTrainedModel:
    """Write `target` as `hf_dir` (saved from `model`) in GPTQ 4-bit (other tensors float16); return a float32
    copy of `model` holding exactly the weights the file encodes."""
    return write_quantized(model, hf_dir, target, GPTQ)
