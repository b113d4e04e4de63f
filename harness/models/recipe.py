"""Every constant that decides what the synthesized models are."""

from __future__ import annotations

from pydantic import BaseModel

CORPUS_SEED = 1234
CORPUS_LINES = 4000
BPE_VOCAB_SIZE = 512
VOCAB_MULTIPLE = 64
BOS, EOS, UNK = "<s>", "</s>", "<unk>"
CHAT_TOKENS = ("<|user|>", "<|assistant|>", "<|end|>")
SPECIAL_TOKENS = (BOS, EOS, UNK, *CHAT_TOKENS)
# Tool-capable (Hermes style, as Qwen2.5 and Hermes 2 Pro checkpoints): with `tools` it lists their signatures and
# renders calls as <tool_call>{json}</tool_call>; without tools it renders exactly the plain chat turns.
CHAT_TEMPLATE = (
    "{% if tools %}<|user|>\nYou may call one or more functions. Their signatures, within <tools></tools>:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n"
    "Return each call within <tool_call></tool_call>:\n"
    '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call><|end|>\n{% endif %}'
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}<|assistant|>\n{% if message['content'] %}{{ message['content'] }}{% endif %}"  # noqa: E501
    "{% if message['tool_calls'] %}{% for call in message['tool_calls'] %}"
    "{% if call['function'] is defined %}{% set call = call['function'] %}{% endif %}"
    '<tool_call>\n{"name": "{{ call[\'name\'] }}", "arguments": '
    "{% if call['arguments'] is string %}{{ call['arguments'] }}{% else %}{{ call['arguments'] | tojson }}{% endif %}"
    "}\n</tool_call>{% endfor %}{% endif %}<|end|>\n"
    "{% elif message['role'] == 'tool' %}<|user|>\n<tool_response>\n{{ message['content'] }}\n</tool_response><|end|>\n"
    "{% else %}<|user|>\n{{ message['content'] }}<|end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

SHAPE = {
    "hidden_size": 256,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 512,
    "num_hidden_layers": 2,
    "max_position_embeddings": 2048,
    "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
}
# Body init std (transformers' initializer_range) and a wider lm_head init: 0.05 keeps the two layers
# close to linear, so f16/Q8_0 rounding barely moves the logits; the 0.3 lm_head makes them peaked.
INITIALIZER_RANGE = 0.05
LM_HEAD_STD = 0.3
# Layers after the first write this much less into the residual stream, so "llama-draft" (llama's
# first layer only) often predicts what llama does.
LATER_LAYER_OUTPUT_SCALE = 0.25

# Reference prompts: the first PROMPTS_PER_MODEL of a seeded candidate pool whose greedy continuation
# keeps a top-1/top-2 logit gap of MIN_MARGIN at every step and is not a loop of a few tokens.
PROMPT_SEED = 7
PROMPT_POOL = 1000
PROMPTS_PER_MODEL = 4
NEW_TOKENS = 16
MIN_MARGIN = 0.2
MIN_DISTINCT_TOKENS = 8
TOP_LOGPROB_POSITIONS = 4
TOP_K = 10
# Mistral's sliding window, and the length of its reference prompts: longer than the window, so an engine
# that attends to the whole prompt computes something else (references whose full-attention greedy text
# would be the same are skipped).
SLIDING_WINDOW = 64
WINDOW_PROMPT_TOKENS = 200
# Reduced-precision copies of every model whose greedy agreement with float32 sets each compute dtype's
# tolerance (probes.reference): harness.models.reference.dtype_spread.
SPREAD_DTYPES = ("bfloat16", "float16")


class ModelSpec(BaseModel):
    """One synthetic model: its family (HF class), init seed and config overrides.

    With `first_layers_of`, the model is instead that earlier model cut to its first layers.
    """

    name: str
    family: str
    seed: int
    overrides: dict[str, int | float] = {}
    first_layers_of: str | None = None
    permute_head: bool = False  # shift the output head's rows: a draft that (almost) never agrees with its source


MODEL_SPECS = (
    ModelSpec(name="llama", family="llama", seed=0),
    ModelSpec(name="mistral", family="mistral", seed=1, overrides={"sliding_window": SLIDING_WINDOW}),
    ModelSpec(
        name="mixtral",
        family="mixtral",
        seed=2,
        overrides={"num_local_experts": 8, "num_experts_per_tok": 2, "intermediate_size": 256},
    ),
    ModelSpec(
        name="llama-draft",
        family="llama",
        seed=0,
        overrides={"num_hidden_layers": 1},
        first_layers_of="llama",
    ),
    ModelSpec(
        name="llama-draft-bad",
        family="llama",
        seed=0,
        overrides={"num_hidden_layers": 1},
        first_layers_of="llama",
        permute_head=True,
    ),
    ModelSpec(name="llama-alt", family="llama", seed=100),
)

QUANT_TYPES = {"q8_0": "Q8_0", "q4_k_m": "Q4_K_M"}
# The quantized-format probes' model and its wrong-weights control get weight-quantized copies
# (harness.models.awq_export, gptq_export, w8a8_export) and, in every format, QUANT_PROMPTS references from the
# weights the file encodes (the probes' sample).
QUANTIZED_MODELS = ("llama", "llama-alt")
QUANT_PROMPTS = 16
