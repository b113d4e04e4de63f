"""Prompt log-probabilities (what lm-eval's loglikelihood tasks need): `/v1/completions` with `echo`
and `logprobs` returns each prompt token's log-probability, compared with HF transformers (float32)
on the same weights, computed here, on prompts drawn fresh from a run seed (recorded in the evidence).

An engine that refuses the echo request (4xx) while the same request without echo works refuses the
feature: fail; one that answers 200 without the prompt's log-probabilities (the pinned llama-server) fails
too. A 5xx is an error whatever the control answers (the engine failed: nothing about the feature), and so is
an error on both.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from harness.models import find_artifact
from harness.outcomes import NotMeasurable
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineHTTPError
from probes.constrained_reference import run_seed

MAX_LOGPROB_DIFF = 0.05  # nats, any prompt position (float32 engine vs float32 reference)
PROMPTS = 4


def fresh_prompts(seed: int) -> list[str]:
    """The run's prompts: word sequences drawn from `seed` (recorded; $INFERCHECK_CONSTRAINT_SEED reproduces them),
    so no published prompt's log-probabilities can be replayed."""
    from harness.models.format_prompts import seeded_prompts

    return seeded_prompts(seed, "prompt_logprobs", PROMPTS)


def reference_prompt_logprobs(hf_dir: Path, prompts: list[str]) -> list[list[float]]:
    """log P(token_i | tokens_<i) of every prompt token after the first, by HF transformers in float32."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    results = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            logprobs = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
            results.append([float(logprobs[i - 1, ids[i]]) for i in range(1, len(ids))])
    return results


def _hf_dir(session: EngineSession) -> Path:
    if session.model.source != "synthesized":
        raise NotMeasurable(f"{session.model.source}: HF float32 references exist for the synthesized models only")
    return find_artifact(session.artifacts, session.model.name, "hf").path


def _refusal(session: EngineSession, prompt: str, exc: EngineHTTPError) -> Verdict:
    """The echo request failed: a refusal (4xx) when the same request without echo works, else an error."""
    if not exc.rejected:
        raise exc  # 5xx: the engine failed (an error verdict), even when the control answers 200
    request = session.adapter.echo_logprobs_request(session.served_model, prompt)
    plain = replace(request, body={key: value for key, value in request.body.items() if key != "echo"})
    try:
        session.client.send(plain)
    except EngineHTTPError:
        raise exc from None
    message = str(exc.exchange.response)[:200]
    return Verdict(
        status=Status.FAIL,
        reason=f"echo with logprobs refused: HTTP {exc.exchange.status_code} "
        f"{message!r}; the same request without echo answers 200",
        evidence=Evidence(numbers={"status_code": exc.exchange.status_code, "message": message}),
    )


def check_prompt_logprobs(session: EngineSession) -> Verdict:
    """Every prompt token's echoed log-probability within MAX_LOGPROB_DIFF of the reference -> pass;
    echoed but off -> partial; refused, or prompt tokens missing -> fail."""
    hf_dir = _hf_dir(session)
    seed = run_seed()
    prompts = fresh_prompts(seed)
    reference = reference_prompt_logprobs(hf_dir, prompts)
    diffs: list[float] = []
    per_prompt = []
    for prompt, expected in zip(prompts, reference):
        request = session.adapter.echo_logprobs_request(session.served_model, prompt)
        try:
            _, response = session.client.send(request)
        except EngineHTTPError as exc:  # _refusal tells a refusal (4xx, control works) from an error
            return _refusal(session, prompt, exc)
        positions = session.adapter.parse_prompt_logprobs(response)
        echoed = positions[: len(expected) + 1]
        prompt_text = "".join(token for token, _ in echoed)
        values = [value for _, value in echoed[1:]]
        complete = prompt_text == prompt and len(values) == len(expected) and all(v is not None for v in values)
        worst = max((abs(v - e) for v, e in zip(values, expected)), default=math.inf) if complete else math.inf
        diffs.append(worst)
        per_prompt.append(
            {
                "prompt": prompt,
                "echoed_tokens": len(positions),
                "reference_tokens": len(expected) + 1,
                "echoed_text_matches": prompt_text == prompt,
                "max_diff": worst,
                "engine": values[:8],
                "reference": expected[:8],
            }
        )
    echoed_all = all(math.isfinite(diff) for diff in diffs)
    worst = max(diffs)
    numbers = {"seed": seed, "prompts": per_prompt, "max_logprob_diff": worst, "tolerance": MAX_LOGPROB_DIFF}
    if not echoed_all:
        return Verdict(
            status=Status.FAIL,
            reason="echo accepted but the prompt tokens' log-probabilities are missing or do not cover the prompt",
            evidence=Evidence(numbers=numbers),
        )
    status = Status.PASS if worst <= MAX_LOGPROB_DIFF else Status.PARTIAL
    reason = (
        f"{len(prompts)} fresh prompts (seed {seed}) echoed with per-token log-probabilities; max |engine - HF "
        f"reference| {worst:.4f} nats (tolerance {MAX_LOGPROB_DIFF})"
    )
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("prompt_logprobs")
def test_prompt_logprobs(probe):
    probe.record(check_prompt_logprobs(probe.engine()))
