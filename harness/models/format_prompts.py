"""Prompts that tell a quantized file from the float weights it was made from, drawn fresh from a run seed.

A quantized file's weights differ from the float weights by its rounding only, so on most prompts both greedy
continuations are the same, and an engine serving the float model under the quantized name reproduces the
file's references (measured on llama's Q8_0 GGUF: the first tokens differ on 99 of 4000 prompts). The prompts
that tell them apart are chosen here, as the sliding-window prompts are: candidates are drawn from a seed, both
weight sets decode them greedily (float32, HF transformers), and a prompt is kept where they split, within the
first SPLIT_POSITIONS tokens, with a top-1/top-2 logit gap of at least `gaps` (quantized side, float side) at every
position up to and including the split (kernel rounding cannot move either side's token). An engine that computes the
file's weights writes the quantized side's text there; one that computes the float weights writes the other.

The decoded weights come from the file itself: GGUF through harness.models.gguf_weights, the HF quantized
checkpoints (AWQ, GPTQ, W8A8) through their exporter's `dequantize`. Loaded once per file and digest.
"""

from __future__ import annotations

import inspect
import random
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from harness.models import recipe
from harness.models.awq_export import AWQ
from harness.models.constrained import load_reference
from harness.models.corpus import WORDS
from harness.models.gguf_weights import decoded_gguf_model
from harness.models.gptq_export import GPTQ
from harness.models.quant_checkpoint import QUANTIZED_LAYERS, WEIGHTS, LinearCodec
from harness.models.reference import decode_text
from harness.models.w8a8_export import W8A8

CHECKPOINT_CODECS: dict[str, LinearCodec] = {"awq": AWQ, "gptq": GPTQ, "w8a8": W8A8}
GGUF_FORMATS = ("f16", *recipe.QUANT_TYPES)
SPLIT_POSITIONS = 8  # a split is looked for among the first this many generated tokens
BATCH = 256


def decodable(fmt: str) -> bool:
    """Whether this module can read the weights of a file in `fmt`."""
    return fmt in GGUF_FORMATS or fmt in CHECKPOINT_CODECS


def decoded_checkpoint(hf_dir: Path, target: Path, codec: LinearCodec) -> PreTrainedModel:
    """The float32 model of `hf_dir` with the weights the quantized checkpoint at `target` encodes."""
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    grouped: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    state: dict[str, torch.Tensor] = {}
    for name, tensor in load_file(target / WEIGHTS).items():
        layer, part = name.rsplit(".", 1)
        if layer.rsplit(".", 1)[-1] in QUANTIZED_LAYERS:
            grouped[layer][part] = tensor
        else:
            state[name] = tensor.float()
    state |= {f"{layer}.weight": codec.dequantize(parts).float().contiguous() for layer, parts in grouped.items()}
    model.load_state_dict(state, strict=True)
    return model.eval()


@lru_cache(maxsize=4)
def decoded_model(hf_dir: Path, path: Path, fmt: str, sha256: str) -> PreTrainedModel:
    """The weights the file at `path` (format `fmt`, digest `sha256`: the cache key) encodes, in float32."""
    if fmt in CHECKPOINT_CODECS:
        return decoded_checkpoint(hf_dir, path, CHECKPOINT_CODECS[fmt])
    if fmt in GGUF_FORMATS:
        return decoded_gguf_model(hf_dir, path)
    raise ValueError(f"no decoder for {fmt} weights")


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for a while: the harness's batches are small, and several threads on a busy host's
    cores run them many times slower (measured: 20x on 2 loaded cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def seeded_prompts(seed: int, label: str, count: int) -> list[str]:
    """`count` lowercase word sequences of the corpus vocabulary, determined by `seed` and `label`."""
    rng = random.Random(f"{seed}:{label}")
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) for _ in range(count)]


@dataclass(frozen=True)
class Split:
    """One prompt where the two weight sets write different tokens, each side by a clear gap."""

    prompt: str
    position: int  # index of the first generated token that differs
    quantized_text: str  # the quantized side's greedy text through that token
    float_text: str  # the float side's: the same tokens before it, then its own
    quantized_gap: float  # the smallest top-1/top-2 gap of the quantized side up to the split
    float_gap: float  # the float side's

    def summary(self) -> dict[str, Any]:
        return asdict(self) | {"quantized_gap": round(self.quantized_gap, 3), "float_gap": round(self.float_gap, 3)}


def _gaps(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the argmax and its top-1/top-2 logit gap."""
    top = torch.topk(logits, 2, dim=-1)
    return top.indices[:, 0], top.values[:, 0] - top.values[:, 1]


def _forward(model: PreTrainedModel, ids: torch.Tensor, mask: torch.Tensor, cache: Any = None) -> Any:
    """One forward pass over left-padded rows: positions count real tokens only, so every row computes what it
    computes alone (the cache keyword is `cache` from transformers 5.x, `past_key_values` before)."""
    positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -ids.shape[1] :]
    key = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    return model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **{key: cache})


def _cache(output: Any) -> Any:
    return output.cache if hasattr(output, "cache") else output.past_key_values


@torch.no_grad()
def _splits_of_batch(
    quantized: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompts: list[str],
    gaps: tuple[float, float],
) -> list[tuple[int, Split]]:
    """The splits among `prompts` (by row): the quantized side decodes greedily, the float side is teacher-forced
    on its tokens; the first position where their argmaxes differ is the split."""
    ids = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    width = max(len(row) for row in ids)
    tokens = torch.tensor([[0] * (width - len(row)) + row for row in ids])
    mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in ids])
    alive = torch.ones(len(prompts), dtype=torch.bool)
    low_q = torch.full((len(prompts),), float("inf"))
    low_f = torch.full((len(prompts),), float("inf"))
    generated: list[torch.Tensor] = []
    found = []
    q_out, f_out = _forward(quantized, tokens, mask), _forward(reference, tokens, mask)
    for position in range(SPLIT_POSITIONS):
        q_top, q_gap = _gaps(q_out.logits[:, -1].float())
        f_top, f_gap = _gaps(f_out.logits[:, -1].float())
        low_q, low_f = torch.minimum(low_q, q_gap), torch.minimum(low_f, f_gap)
        clear = alive & (low_q >= gaps[0]) & (low_f >= gaps[1])
        for row in torch.nonzero(clear & (q_top != f_top)).flatten().tolist():
            before = [int(step[row]) for step in generated]
            q_text = decode_text(tokenizer, [*before, int(q_top[row])])
            f_text = decode_text(tokenizer, [*before, int(f_top[row])])
            if not (q_text.startswith(f_text) or f_text.startswith(q_text)):
                split = Split(prompts[row], position, q_text, f_text, float(low_q[row]), float(low_f[row]))
                found.append((row, split))
        alive &= clear & (q_top == f_top)
        if not alive.any() or position == SPLIT_POSITIONS - 1:
            break
        generated.append(q_top)
        mask = torch.cat([mask, torch.ones(len(prompts), 1, dtype=mask.dtype)], dim=1)
        step = q_top[:, None]  # both sides continue with the quantized side's token
        q_out = _forward(quantized, step, mask, _cache(q_out))
        f_out = _forward(reference, step, mask, _cache(f_out))
    return found


def telling_prompts(
    quantized: PreTrainedModel,
    reference: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    seed: int,
    label: str,
    count: int,
    gaps: tuple[float, float],
    pool: int,
) -> tuple[list[Split], int]:
    """Up to `count` splits among the first candidates of `pool` seeded prompts (in their seeded order), and how
    many candidates were examined."""
    prompts = seeded_prompts(seed, label, pool)
    chosen: list[tuple[int, Split]] = []
    with one_thread():
        for start in range(0, pool, BATCH):
            batch = prompts[start : start + BATCH]
            splits = _splits_of_batch(quantized, reference, tokenizer, batch, gaps)
            chosen += [(start + row, split) for row, split in splits]
            if len(chosen) >= count:
                chosen.sort(key=lambda pair: pair[0])
                return [split for _, split in chosen[:count]], chosen[count - 1][0] + 1
    return [split for _, split in sorted(chosen, key=lambda pair: pair[0])], pool


@lru_cache(maxsize=8)
def file_splits(
    hf_dir: Path, path: Path, fmt: str, sha256: str, seed: int, count: int, gaps: tuple[float, float], pool: int
) -> tuple[list[Split], int]:
    """`telling_prompts` of the file at `path` (format `fmt`, digest `sha256`) against the float checkpoint at
    `hf_dir`, drawn from `seed` (the same arguments in one run reuse the choice)."""
    quantized = decoded_model(hf_dir, path, fmt, sha256)
    reference, tokenizer = load_reference(hf_dir)
    return telling_prompts(quantized, reference, tokenizer, seed, f"quantized:{fmt}", count, gaps, pool)
