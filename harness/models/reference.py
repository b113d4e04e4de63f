"""Greedy float32 reference continuations from transformers, screened for robustness."""

from __future__ import annotations

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.models import recipe
from harness.models.corpus import prompt_candidates
from harness.models.schema import RefCase


class NoRobustPromptsError(RuntimeError):
    """Too few candidate prompts give a continuation that passes the recipe's robustness bar."""


def _margin(logits: torch.Tensor) -> float:
    """Top-1 minus top-2 logit."""
    first, second = torch.topk(logits, 2).values
    return float(first - second)


@torch.no_grad()
def _greedy_logits(model: PreTrainedModel, prompt_ids: list[int]) -> list[torch.Tensor] | None:
    """Next-token logits of NEW_TOKENS greedy steps; None as soon as a step's margin is too small.

    Each step re-runs the whole sequence (no KV cache): the models are tiny and this is the plainest
    reference, the same on every transformers version.
    """
    ids = list(prompt_ids)
    steps = []
    for _ in range(recipe.NEW_TOKENS):
        logits = model(input_ids=torch.tensor([ids])).logits[0, -1].float()
        if _margin(logits) < recipe.MIN_MARGIN:
            return None
        steps.append(logits)
        ids.append(int(torch.argmax(logits)))
    return steps


def _top(logits: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> tuple[dict[str, float], list[int]]:
    """Top-k log-probabilities of one position, keyed by token text, and their ids."""
    values, ids = torch.topk(torch.log_softmax(logits, dim=-1), recipe.TOP_K)
    id_list = ids.tolist()
    return {tokenizer.decode([i]): float(v) for i, v in zip(id_list, values)}, id_list


def reference_case(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str) -> RefCase | None:
    """The greedy reference of `prompt` (no BOS), or None when it is not robust enough to compare engines.

    Robust means every step's top-1/top-2 logit gap is at least MIN_MARGIN, and the continuation
    uses at least MIN_DISTINCT_TOKENS different tokens.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    steps = _greedy_logits(model, prompt_ids)
    if steps is None:
        return None
    greedy_ids = [int(torch.argmax(logits)) for logits in steps]
    if len(set(greedy_ids)) < recipe.MIN_DISTINCT_TOKENS:
        return None
    tops = [_top(logits, tokenizer) for logits in steps[: recipe.TOP_LOGPROB_POSITIONS]]
    return RefCase(
        prompt=prompt,
        prompt_ids=prompt_ids,
        greedy_ids=greedy_ids,
        greedy_text=tokenizer.decode(greedy_ids),
        top_logprobs=[top for top, _ in tops],
        top_token_ids=[ids for _, ids in tops],
        margins=[_margin(logits) for logits in steps],
    )


def select_references(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[RefCase]:
    """The first PROMPTS_PER_MODEL robust reference cases from the seeded candidate prompts."""
    chosen: list[RefCase] = []
    for prompt in prompt_candidates(recipe.PROMPT_SEED, recipe.PROMPT_POOL):
        case = reference_case(model, tokenizer, prompt)
        if case is not None:
            chosen.append(case)
            if len(chosen) == recipe.PROMPTS_PER_MODEL:
                return chosen
    raise NoRobustPromptsError(f"only {len(chosen)} of {recipe.PROMPT_POOL} candidate prompts are robust")
