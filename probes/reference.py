"""Compare an engine's greedy output and log-probabilities with the HF transformers reference."""

from __future__ import annotations

from dataclasses import dataclass

from harness.engines.base import GreedyOutput, NotMeasurable
from harness.models import RefCase
from harness.session import EngineSession

MAX_TOKENS = 16
TOP_LOGPROBS = 5


@dataclass(frozen=True)
class Tolerance:
    """How close a format must stay to the float32 reference."""

    min_exact_prompts: float  # share of prompts whose 16-token greedy text matches exactly
    min_top1_agreement: float  # share of prompts whose first token matches the reference's
    max_logprob_diff: float  # first position: |engine - reference| logprob of the reference's top token


def require_references(session: EngineSession, references: list[RefCase]) -> None:
    """Not measured when there is nothing to compare with (a model set's real checkpoint)."""
    if not references:
        raise NotMeasurable(f"{session.model.source} has no float32 reference outputs to compare with "
                            "(references exist for the synthesized models only)")


def run_greedy(session: EngineSession, case: RefCase) -> GreedyOutput:
    """Greedy-decode one reference prompt on the engine."""
    request = session.adapter.greedy_request(session.served_model, case.prompt, MAX_TOKENS, TOP_LOGPROBS)
    _, response = session.client.send(request)
    return session.adapter.parse_greedy(response)


def compare_to_reference(session: EngineSession, references: list[RefCase]) -> dict[str, float | list]:
    """Run every reference prompt and measure agreement (numbers for the evidence)."""
    require_references(session, references)
    exact = top1 = 0
    diffs: list[float] = []
    outputs = []
    for case in references:
        output = run_greedy(session, case)
        exact += output.text == case.greedy_text
        ref_first = case.top_logprobs[0]
        ref_token = max(ref_first, key=ref_first.__getitem__)
        engine_first = output.top_logprobs[0] if output.top_logprobs else {}
        if engine_first:
            top1 += max(engine_first, key=engine_first.__getitem__) == ref_token
            if ref_token in engine_first:
                diffs.append(abs(engine_first[ref_token] - ref_first[ref_token]))
            else:
                diffs.append(float("inf"))
        outputs.append({"prompt": case.prompt, "reference": case.greedy_text, "engine": output.text})
    count = len(references)
    return {"prompts": count, "exact_share": exact / count, "top1_share": top1 / count,
            "max_logprob_diff": max(diffs) if diffs else float("inf"), "outputs": outputs}


def within(numbers: dict, tolerance: Tolerance) -> bool:
    """Whether measured agreement meets the tolerance."""
    return (numbers["exact_share"] >= tolerance.min_exact_prompts
            and numbers["top1_share"] >= tolerance.min_top1_agreement
            and numbers["max_logprob_diff"] <= tolerance.max_logprob_diff)
