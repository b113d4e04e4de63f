"""The AWQ writer: packing matches AutoAWQ's layout and the dequantized weights stay within half a step."""

from __future__ import annotations

import json

import torch

from harness.models import find_artifact
from harness.models.awq_export import GROUP_SIZE, PACK_ORDER, dequantize_linear, pack, quantize_linear, unpack
from harness.models.recipe import PROMPTS_PER_MODEL, QUANT_PROMPTS, QUANTIZED_MODELS


def test_pack_puts_column_order_map_i_in_nibble_i() -> None:
    """AutoAWQ's WQLinear_GEMM: word |= column[order_map[i]] << 4 i, order_map 0 2 4 6 1 3 5 7."""
    values = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 15]])
    word = int(pack(values)[0, 0]) & 0xFFFFFFFF
    assert [(word >> (4 * i)) & 0xF for i in range(8)] == [int(values[0, j]) for j in PACK_ORDER]
    assert torch.equal(unpack(pack(values)), values.float())


def test_dequantized_weight_is_within_half_a_step() -> None:
    weight = torch.randn(128, 256, generator=torch.Generator().manual_seed(0)) * 0.05
    tensors = quantize_linear(weight)
    assert tensors["qweight"].shape == (256, 16) and tensors["qzeros"].shape == (256 // GROUP_SIZE, 16)
    steps = tensors["scales"].float().repeat_interleave(GROUP_SIZE, dim=0).T
    assert torch.all((dequantize_linear(tensors) - weight).abs() <= steps * 0.5 + 1e-4)


def test_synthesized_awq_checkpoints(artifacts) -> None:
    for artifact in artifacts:
        if artifact.format != "awq":
            continue
        assert artifact.name in QUANTIZED_MODELS
        config = json.loads((artifact.path / "config.json").read_text())
        assert config["quantization_config"] == {
            "bits": 4,
            "group_size": GROUP_SIZE,
            "quant_method": "awq",
            "version": "gemm",
            "zero_point": True,
        }
        # both from the dequantized weights (harness.models.quant_checkpoint), the first the same prompts
        assert len(artifact.encoded_references) == QUANT_PROMPTS
        assert artifact.references == artifact.encoded_references[:PROMPTS_PER_MODEL]
    assert find_artifact(artifacts, "llama", "awq").path.is_dir()
