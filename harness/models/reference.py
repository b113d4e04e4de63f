"""Greedy float32 reference continuations from transformers."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.models import recipe
from harness.models.schema import RefCase


def _top(logits: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> tuple[dict[str, float], list[int]]:
    """Top-k log-probabilities of one position, keyed by token text, and their ids."""
    values, ids = torch.topk(torch.log_softmax(logits.float(), dim=-1), recipe.TOP_K)
    id_list = ids.tolist()
    return {tokenizer.decode([i]): float(v) for i, v in zip(id_list, values)}, id_list


def reference_case(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str) -> RefCase:
    """Generate NEW_TOKENS greedy tokens from `prompt` (no BOS) and record the top log-probs."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        out = model.generate(
            torch.tensor([prompt_ids]),
            attention_mask=torch.ones(1, len(prompt_ids), dtype=torch.long),
            max_new_tokens=recipe.NEW_TOKENS,
            min_new_tokens=recipe.NEW_TOKENS,
            do_sample=False,
            output_logits=True,
            return_dict_in_generate=True,
            pad_token_id=tokenizer.eos_token_id,
        )
    greedy_ids = out.sequences[0, len(prompt_ids) :].tolist()
    logits = [step[0] for step in out.logits]
    tops = [_top(step, tokenizer) for step in logits[: recipe.TOP_LOGPROB_POSITIONS]]
    margins = [float(pair[0] - pair[1]) for pair in (torch.topk(step, 2).values for step in logits)]
    return RefCase(
        prompt=prompt,
        prompt_ids=prompt_ids,
        greedy_ids=greedy_ids,
        greedy_text=tokenizer.decode(greedy_ids),
        top_logprobs=[top for top, _ in tops],
        top_token_ids=[ids for _, ids in tops],
        min_margin=min(margins),
    )
