"""What the load generator sends: prompt and output lengths, the API, and the requests themselves."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from harness.engines.base import EngineAdapter
from harness.wire.request import ApiRequest

# Common English words: large byte-level BPE vocabularies hold each as one token with its leading
# space; for other tokenizers `harness.loadgen.tokens` measures how many tokens a word makes.
PROMPT_WORDS = (
    "the of and to in is was for on with as by at from that this it be are or an have not they "
    "cat dog bird fish tree river stone hill road house door window table chair book page city town "
    "red blue green small large old new quick slow warm cold day night week year time story game song"
).split()
COMPLETIONS_PATH = "/v1/completions"
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Lengths:
    """A token count: fixed (range_ratio 0) or uniform in [mean*(1-r), mean*(1+r)], as vLLM's random dataset."""

    mean: int
    range_ratio: float = 0.0

    def __post_init__(self) -> None:
        if self.mean < 1 or not 0 <= self.range_ratio < 1:
            raise ValueError(f"need mean >= 1 and 0 <= range_ratio < 1, got {self}")

    def sample(self, rng: random.Random) -> int:
        """One length drawn from this distribution."""
        low = max(1, round(self.mean * (1 - self.range_ratio)))
        high = max(low, round(self.mean * (1 + self.range_ratio)))
        return rng.randint(low, high)


@dataclass(frozen=True)
class PromptScale:
    """Tokens of a prompt of random prompt words: overhead + per_word * words."""

    per_word: float = 1.0
    overhead: float = 0.0

    def words_for(self, tokens: int) -> int:
        """How many words make a prompt of about `tokens` tokens (at least one)."""
        return max(1, round((tokens - self.overhead) / self.per_word))


@dataclass(frozen=True)
class Workload:
    """A seeded request mix: random-word prompts and EOS-ignoring outputs of controlled length.

    Prompt lengths become words through `prompt_scale` (measured by `harness.loadgen.tokens`
    for the engine's tokenizer; the default takes one word for one token).
    """

    input_tokens: Lengths = Lengths(32)
    output_tokens: Lengths = Lengths(64)
    api: Literal["completions", "chat"] = "completions"
    seed: int = 0
    prompt_scale: PromptScale = PromptScale()

    def requests(self, adapter: EngineAdapter, model: str, count: int) -> list[ApiRequest]:
        """`count` streaming requests in the engine's own API (the same seed gives the same requests).

        Prompts differ from each other, so an engine's prompt cache cannot skip the prefill.
        """
        rng = random.Random(self.seed)
        requests = []
        for _ in range(count):
            words = self.prompt_scale.words_for(self.input_tokens.sample(rng))
            prompt = " ".join(rng.choice(PROMPT_WORDS) for _ in range(words))
            request = adapter.fixed_length_request(model, prompt, self.output_tokens.sample(rng), stream=True)
            requests.append(as_chat(request) if self.api == "chat" else request)
        return requests


def as_chat(request: ApiRequest) -> ApiRequest:
    """The same OpenAI completions request as a chat request with one user message."""
    if request.path != COMPLETIONS_PATH:
        raise ValueError(f"only OpenAI completions requests convert to chat, not {request.path}")
    body = dict(request.body)
    body["messages"] = [{"role": "user", "content": body.pop("prompt")}]
    return ApiRequest(CHAT_PATH, body, request.method)
