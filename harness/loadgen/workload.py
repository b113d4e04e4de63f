"""What the load generator sends: prompt and output lengths, the API, and the requests themselves."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from harness.engines.base import ApiRequest, EngineAdapter

# Common English words: most byte-level BPE vocabularies hold each as one token with its leading
# space, so a prompt of n words is close to n tokens. The engine's usage field gives the exact count.
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
class Workload:
    """A seeded request mix: random-word prompts and EOS-ignoring outputs of controlled length."""

    input_tokens: Lengths = Lengths(32)
    output_tokens: Lengths = Lengths(64)
    api: Literal["completions", "chat"] = "completions"
    seed: int = 0

    def requests(self, adapter: EngineAdapter, model: str, count: int) -> list[ApiRequest]:
        """`count` streaming requests in the engine's own API (the same seed gives the same requests).

        Prompts differ from each other, so an engine's prompt cache cannot skip the prefill.
        """
        rng = random.Random(self.seed)
        requests = []
        for _ in range(count):
            prompt = " ".join(rng.choice(PROMPT_WORDS) for _ in range(self.input_tokens.sample(rng)))
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
