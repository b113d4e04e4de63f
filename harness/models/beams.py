"""Reference beam searches from transformers on a synthesized model, computed when a probe asks for them.

Not part of the recipe (harness.models.cache hashes the recipe modules): changing how beams are
searched for does not rebuild the models.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch
from pydantic import BaseModel
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationMixin, PreTrainedModel, PreTrainedTokenizerBase

from harness.models.reference import decode_text


class Beam(BaseModel):
    """One reference beam: its generated text and token ids, and their summed float32 log-probability."""

    text: str
    token_ids: list[int]
    cumulative_logprob: float


@torch.no_grad()
def _sequence_logprob(model: PreTrainedModel, prompt_ids: list[int], generated: list[int]) -> float:
    """Summed log-probability of `generated` after `prompt_ids` (one teacher-forced pass)."""
    ids = torch.tensor([prompt_ids + generated])
    logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    positions = range(len(prompt_ids) - 1, len(prompt_ids) + len(generated) - 1)
    return float(sum(logprobs[position, token] for position, token in zip(positions, generated)))


@torch.no_grad()
def search_beams(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    beams: int,
    max_tokens: int,
    length_penalty: float,
) -> tuple[list[Beam], Beam]:
    """transformers' beam search (num_beams = num_return_sequences = `beams`, no sampling, no early stopping,
    EOS allowed) of `prompt`, best first, and the greedy continuation of the same length, each scored by a
    teacher-forced float32 pass."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    inputs = torch.tensor([prompt_ids])
    assert isinstance(model, GenerationMixin)  # a causal LM: transformers types `generate` on the mixin only
    found = model.generate(
        inputs,
        attention_mask=torch.ones_like(inputs),
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=max_tokens,
        do_sample=False,
        length_penalty=length_penalty,
        early_stopping=False,
        pad_token_id=tokenizer.eos_token_id,
    )
    greedy = model.generate(
        inputs,
        attention_mask=torch.ones_like(inputs),
        max_new_tokens=max_tokens,
        do_sample=False,
        pad_token_id=tokenizer.eos_token_id,
    )

    def beam(sequence: torch.Tensor) -> Beam:
        generated = [int(token) for token in sequence[len(prompt_ids) :] if int(token) != tokenizer.eos_token_id]
        return Beam(
            text=decode_text(tokenizer, generated),
            token_ids=generated,
            cumulative_logprob=_sequence_logprob(model, prompt_ids, generated),
        )

    return [beam(sequence) for sequence in found], beam(greedy[0])


@lru_cache(maxsize=8)
def reference_beams(
    hf_dir: Path, prompt: str, beams: int, max_tokens: int, length_penalty: float
) -> tuple[tuple[Beam, ...], Beam]:
    """`search_beams` on the float32 checkpoint at `hf_dir` (loaded once per call site and arguments)."""
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    found, greedy = search_beams(model, tokenizer, prompt, beams, max_tokens, length_penalty)
    return tuple(found), greedy
