"""Build the synthetic transformers models from the recipe, deterministically."""

from __future__ import annotations

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
    PretrainedConfig,
    PreTrainedModel,
)

from harness.models import recipe
from harness.models.recipe import ModelSpec

FAMILIES: dict[str, tuple[type[PretrainedConfig], type[PreTrainedModel]]] = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "mixtral": (MixtralConfig, MixtralForCausalLM),
}


def make_config(spec: ModelSpec, vocab_size: int, bos_id: int, eos_id: int) -> PretrainedConfig:
    """The transformers config of one spec: shared shape plus the spec's overrides."""
    config_cls, _ = FAMILIES[spec.family]
    fields = {**recipe.SHAPE, **spec.overrides}
    return config_cls(
        vocab_size=vocab_size,
        initializer_range=recipe.INITIALIZER_RANGE,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        torch_dtype="float32",
        **fields,
    )


def _random_model(spec: ModelSpec, config: PretrainedConfig, silent_ids: list[int]) -> PreTrainedModel:
    """Seeded random init; a wider lm_head makes next-token choices peaked, silent ids never win."""
    torch.manual_seed(spec.seed)
    model = FAMILIES[spec.family][1](config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, recipe.LM_HEAD_STD)
        model.lm_head.weight[silent_ids] = 0.0
    return model


def _truncated_copy(config: PretrainedConfig, source: PreTrainedModel) -> PreTrainedModel:
    """A model with `config`'s (fewer) layers, every weight copied from `source`."""
    model = type(source)(config)
    state = {name: tensor for name, tensor in source.state_dict().items() if name in model.state_dict()}
    model.load_state_dict(state, strict=True)
    return model


def build_model(
    spec: ModelSpec, config: PretrainedConfig, silent_ids: list[int], built: dict[str, PreTrainedModel]
) -> PreTrainedModel:
    """The float32 eval-mode model of `spec`; `built` holds earlier models a draft copies from."""
    if spec.first_layers_of is not None:
        model = _truncated_copy(config, built[spec.first_layers_of])
    else:
        model = _random_model(spec, config, silent_ids)
    return model.to(torch.float32).eval()
