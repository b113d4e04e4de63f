"""Build the synthetic transformers models from the recipe, deterministically."""

from __future__ import annotations

from collections.abc import Callable

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

# The config classes take their family's fields as keyword arguments (PretrainedConfig's own signature does not).
FAMILIES: dict[str, tuple[Callable[..., PretrainedConfig], type[PreTrainedModel]]] = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "mistral": (MistralConfig, MistralForCausalLM),
    "mixtral": (MixtralConfig, MixtralForCausalLM),
}
# Attention output, then dense MLP down (llama, mistral) or fused expert down (mixtral, transformers v5).
RESIDUAL_OUTPUTS = ("self_attn.o_proj.weight", "mlp.down_proj.weight", "mlp.experts.down_proj")


def make_config(spec: ModelSpec, vocab_size: int, bos_id: int, eos_id: int) -> PretrainedConfig:
    """The transformers config of one spec: shared shape plus the spec's overrides."""
    config_cls, _ = FAMILIES[spec.family]
    fields = {**recipe.SHAPE, **spec.overrides}
    return config_cls(
        vocab_size=vocab_size,
        initializer_range=recipe.INITIALIZER_RANGE,
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        **fields,
    )


def _random_model(spec: ModelSpec, config: PretrainedConfig, silent_ids: list[int]) -> PreTrainedModel:
    """Seeded random init: a wider lm_head (peaked choices), silent ids never win, quieter later layers."""
    torch.manual_seed(spec.seed)
    model = FAMILIES[spec.family][1](config)
    with torch.no_grad():
        model.lm_head.weight.normal_(0.0, recipe.LM_HEAD_STD)
        model.lm_head.weight[silent_ids] = 0.0
        for layer in model.model.layers[1:]:
            _scale_residual_outputs(layer, recipe.LATER_LAYER_OUTPUT_SCALE)
    return model


def _scale_residual_outputs(layer: torch.nn.Module, factor: float) -> None:
    """Scale the projections a decoder layer writes into the residual stream (attention and MLP out)."""
    outputs = [param for name, param in layer.named_parameters() if name.endswith(RESIDUAL_OUTPUTS)]
    if len(outputs) != 2:
        raise ValueError(f"expected an attention and an MLP output in {RESIDUAL_OUTPUTS}, got {len(outputs)}")
    for param in outputs:
        param.mul_(factor)


def _shift_head(model: PreTrainedModel, silent_ids: list[int]) -> None:
    """Move every spoken token's output row to the next spoken token: the model then predicts, in place of
    each token, a token it never put there (silent ids stay silent)."""
    silent = set(silent_ids)
    spoken = torch.tensor([i for i in range(model.lm_head.weight.shape[0]) if i not in silent])
    with torch.no_grad():
        model.lm_head.weight[spoken] = model.lm_head.weight[spoken.roll(1)].clone()


def _truncated_copy(config: PretrainedConfig, source: PreTrainedModel) -> PreTrainedModel:
    """A model with `config`'s (fewer) layers, every weight copied from `source`."""
    model = type(source)(config)
    state = {name: tensor for name, tensor in source.state_dict().items() if name in model.state_dict()}
    model.load_state_dict(state, strict=True)
    return model


def build_model(
    spec: ModelSpec, config: PretrainedConfig, silent_ids: list[int], built: dict[str, PreTrainedModel]
) -> PreTrainedModel:
    """The float32 eval-mode model of `spec`; `built` holds earlier models a draft copies from.

    Every weight is rounded to a float16-representable value, so the f16 GGUF holds exactly the
    weights the float32 reference ran with.
    """
    if spec.first_layers_of is not None:
        model = _truncated_copy(config, built[spec.first_layers_of])
    else:
        model = _random_model(spec, config, silent_ids)
    if spec.permute_head:
        _shift_head(model, silent_ids)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(param.half().float())
    # transformers declares `to` as @wraps(torch.nn.Module.to), which types it as the unbound function
    return model.to(torch.float32).eval()  # type: ignore[arg-type]
