"""Prompt lengths in the engine's own tokens: how many tokens a prompt of n words becomes.

A tokenizer splits words into a varying number of tokens (the synthesized models' small
vocabularies split most words in two), so prompts are sized by measuring: two prompts of
different lengths give tokens = overhead + per_word * words, read from the engine's usage.
"""

from __future__ import annotations

import httpx

from harness.engines.base import EngineAdapter
from harness.loadgen.workload import PROMPT_WORDS, PromptScale
from harness.wire.streaming import StreamError, stream_request

_PROBE_WORDS = (8, 72)


async def measure_prompt_scale(
    base_url: str, adapter: EngineAdapter, model: str, timeout_s: float = 120
) -> PromptScale:
    """Fit the engine's prompt token counts for two prompt lengths (two one-token streamed requests)."""
    counts = []
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s) as client:
        for words in _PROBE_WORDS:
            prompt = " ".join(PROMPT_WORDS[i % len(PROMPT_WORDS)] for i in range(words))
            timing = await stream_request(client, adapter.fixed_length_request(model, prompt, 1, stream=True))
            if timing.prompt_tokens is None:
                raise StreamError("the engine reports no prompt token count (usage) to size prompts by")
            counts.append(timing.prompt_tokens)
    per_word = (counts[1] - counts[0]) / (_PROBE_WORDS[1] - _PROBE_WORDS[0])
    return PromptScale(per_word=per_word, overhead=counts[0] - per_word * _PROBE_WORDS[0])
