"""The GPTQ writer: AutoGPTQ's packing (along the input dimension, zero - 1 stored) and a faithful decode."""

from __future__ import annotations

import json

import torch

from harness.models import find_artifact
from harness.models.gptq_export import GROUP_SIZE, QUANTIZE_CONFIG, dequantize_linear, quantize_linear
from harness.models.recipe import QUANT_PROMPTS


def test_qweight_packs_eight_input_rows_per_word_in_sequence() -> None:
    """Word [r, c] holds the 4-bit values of input rows 8r..8r+7 of output column c, row 8r + j at bits 4j."""
    weight = torch.randn(8, GROUP_SIZE, generator=torch.Generator().manual_seed(1)) * 0.05
    tensors = quantize_linear(weight)
    scales = tensors["scales"].float()
    expected = (weight.T / scales[0]).round().add(8).clamp(0, 15)  # [in, out]: one group
    word = int(tensors["qweight"][0, 3]) & 0xFFFFFFFF
    assert [(word >> (4 * j)) & 0xF for j in range(8)] == [int(expected[j, 3]) for j in range(8)]
    assert tensors["qweight"].shape == (GROUP_SIZE // 8, 8) and tensors["qzeros"].shape == (1, 1)
    assert int(tensors["qzeros"][0, 0]) & 0xFFFFFFFF == 0x77777777  # zero point 8, stored as 8 - 1
    assert torch.equal(tensors["g_idx"], torch.zeros(GROUP_SIZE, dtype=torch.int32))


def test_dequantized_weight_is_within_half_a_step() -> None:
    weight = torch.randn(128, 256, generator=torch.Generator().manual_seed(0)) * 0.05
    tensors = quantize_linear(weight)
    steps = tensors["scales"].float().repeat_interleave(GROUP_SIZE, dim=0).T
    assert torch.all((dequantize_linear(tensors) - weight).abs() <= steps * 0.5 + 1e-4)


def test_synthesized_gptq_checkpoints(artifacts) -> None:
    gptq = find_artifact(artifacts, "llama", "gptq")
    config = json.loads((gptq.path / "config.json").read_text())
    assert config["quantization_config"] == QUANTIZE_CONFIG
    assert json.loads((gptq.path / "quantize_config.json").read_text()) == QUANTIZE_CONFIG
    assert len(gptq.encoded_references) == QUANT_PROMPTS  # from the dequantized weights
