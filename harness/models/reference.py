"""Greedy float32 reference continuations from transformers, screened for robustness."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from harness.models import recipe
from harness.models.corpus import prompt_candidates
from harness.models.schema import DtypeSpread, RefCase


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


@torch.no_grad()
def _cached_greedy_logits(
    model: PreTrainedModel, prompt_ids: list[int], min_margin: float | None = recipe.MIN_MARGIN
) -> list[torch.Tensor] | None:
    """`_greedy_logits` with transformers' KV cache (one token per step after the prompt), for the long
    prompts of windowed models and the reduced-precision copies; no margin check when `min_margin` is None."""
    output = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    steps = []
    for _ in range(recipe.NEW_TOKENS):
        logits = output.logits[0, -1].float()
        if min_margin is not None and _margin(logits) < min_margin:
            return None
        steps.append(logits)
        next_id = int(torch.argmax(logits))
        output = model(input_ids=torch.tensor([[next_id]]), past_key_values=output.past_key_values, use_cache=True)
    return steps


def decode_text(tokenizer: PreTrainedTokenizerBase, ids: list[int]) -> str:
    """The text of one sequence of token ids (decode returns a list only for a batch of sequences)."""
    text = tokenizer.decode(ids)
    assert isinstance(text, str)
    return text


def _top(logits: torch.Tensor, tokenizer: PreTrainedTokenizerBase) -> tuple[dict[str, float], list[int]]:
    """Top-k log-probabilities of one position, keyed by token text, and their ids."""
    values, ids = torch.topk(torch.log_softmax(logits, dim=-1), recipe.TOP_K)
    id_list = ids.tolist()
    return {decode_text(tokenizer, [i]): float(v) for i, v in zip(id_list, values)}, id_list


def reference_case(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, prompt: str, cached: bool = False
) -> RefCase | None:
    """The greedy reference of `prompt` (no BOS), or None when it is not robust enough to compare engines.

    Robust means every step's top-1/top-2 logit gap is at least MIN_MARGIN, and the continuation
    uses at least MIN_DISTINCT_TOKENS different tokens. `cached` steps with the KV cache.
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    steps = _cached_greedy_logits(model, prompt_ids) if cached else _greedy_logits(model, prompt_ids)
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
        greedy_text=decode_text(tokenizer, greedy_ids),
        top_logprobs=[top for top, _ in tops],
        top_token_ids=[ids for _, ids in tops],
        margins=[_margin(logits) for logits in steps],
    )


def select_references(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, count: int = recipe.PROMPTS_PER_MODEL
) -> list[RefCase]:
    """The first `count` robust reference cases from the seeded candidate prompts."""
    chosen: list[RefCase] = []
    for prompt in prompt_candidates(recipe.PROMPT_SEED, recipe.PROMPT_POOL):
        case = reference_case(model, tokenizer, prompt)
        if case is not None:
            chosen.append(case)
            if len(chosen) == count:
                return chosen
    raise NoRobustPromptsError(f"only {len(chosen)} of {recipe.PROMPT_POOL} candidate prompts are robust")


def _window_prompts(tokenizer: PreTrainedTokenizerBase) -> Iterator[str]:
    """Seeded candidate prompts joined until each is at least WINDOW_PROMPT_TOKENS tokens long."""
    words: list[str] = []
    for candidate in prompt_candidates(recipe.PROMPT_SEED, recipe.PROMPT_POOL):
        words += candidate.split()
        prompt = " ".join(words)
        if len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) >= recipe.WINDOW_PROMPT_TOKENS:
            yield prompt
            words = []


def _full_attention_twin(model: PreTrainedModel) -> PreTrainedModel:
    """The same weights with the sliding window switched off (what an engine ignoring it computes)."""
    twin = copy.deepcopy(model)
    twin.config.sliding_window = None
    return twin


def select_window_references(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> list[RefCase]:
    """PROMPTS_PER_MODEL robust cases of prompts longer than the model's sliding window whose greedy text
    differs from what the same weights give with full attention (so ignoring the window shows)."""
    twin = _full_attention_twin(model)
    chosen: list[RefCase] = []
    for prompt in _window_prompts(tokenizer):
        case = reference_case(model, tokenizer, prompt, cached=True)
        if case is None:
            continue
        full = _cached_greedy_logits(twin, case.prompt_ids, min_margin=None) or []
        if [int(torch.argmax(logits)) for logits in full] != case.greedy_ids:
            chosen.append(case)
            if len(chosen) == recipe.PROMPTS_PER_MODEL:
                return chosen
    raise NoRobustPromptsError(f"only {len(chosen)} long prompts are robust and depend on the sliding window")


def dtype_spread(model: PreTrainedModel, references: list[RefCase]) -> dict[str, DtypeSpread]:
    """How the same weights computed in each SPREAD_DTYPES agree with the float32 references: the
    numbers compare_to_reference measures for an engine (exact greedy share, first-token agreement,
    first-position log-probability difference of the reference's top token)."""
    spreads = {}
    for name in recipe.SPREAD_DTYPES:
        reduced = copy.deepcopy(model).to(getattr(torch, name))
        exact = top1 = 0
        diffs = []
        for case in references:
            steps = _cached_greedy_logits(reduced, case.prompt_ids, min_margin=None) or []
            greedy = [int(torch.argmax(logits)) for logits in steps]
            exact += greedy == case.greedy_ids
            top1 += greedy[:1] == case.greedy_ids[:1]
            reference_top = case.top_token_ids[0][0]
            reference_logprob = max(case.top_logprobs[0].values())
            diffs.append(abs(float(torch.log_softmax(steps[0], dim=-1)[reference_top]) - reference_logprob))
        count = len(references)
        spreads[name] = DtypeSpread(
            prompts=count, exact_share=exact / count, top1_share=top1 / count, max_logprob_diff=round(max(diffs), 6)
        )
    return spreads
