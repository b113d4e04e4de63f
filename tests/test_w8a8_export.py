"""The INT8 W8A8 writer: int8 weights with per-channel scales, the compressed-tensors config vLLM reads."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from harness.models import find_artifact
from harness.models.recipe import QUANT_PROMPTS
from harness.models.w8a8_export import LEVELS, QUANTIZATION_CONFIG, dequantize_linear, quantize_linear


def test_weight_is_int8_per_channel_within_half_a_step() -> None:
    weight = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * 0.05
    tensors = quantize_linear(weight)
    assert tensors["weight"].dtype == torch.int8 and tensors["weight_scale"].shape == (64, 1)
    assert int(tensors["weight"].abs().max()) == LEVELS
    assert torch.all((dequantize_linear(tensors) - weight).abs() <= tensors["weight_scale"].float() * 0.5 + 1e-5)


def test_synthesized_w8a8_checkpoint(artifacts) -> None:
    w8a8 = find_artifact(artifacts, "llama", "w8a8")
    config = json.loads((w8a8.path / "config.json").read_text())
    assert config["quantization_config"] == QUANTIZATION_CONFIG
    tensors = load_file(w8a8.path / "model.safetensors")
    assert tensors["model.layers.0.self_attn.q_proj.weight"].dtype == torch.int8
    assert tensors["lm_head.weight"].dtype == torch.float16  # left unquantized ("ignore")
    assert len(w8a8.encoded_references) == QUANT_PROMPTS
