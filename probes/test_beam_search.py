"""Beam search: the engine's beams are the ones transformers' beam search finds on the same weights.

The reference (harness.models.beams) runs num_beams = num_return_sequences = BEAMS with the length penalty
the request sends (vLLM's default, 1.0; every beam runs to MAX_TOKENS, so it ranks by summed
log-probability). Sampled completions, or n copies of the greedy one, are other texts: fail.
"""

from __future__ import annotations

import pytest

from harness.models import find_artifact
from harness.models.beams import reference_beams
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineRejected
from probes.reference import dtype_tolerance, require_references

BEAMS = 3
MAX_TOKENS = 8
LENGTH_PENALTY = 1.0  # vLLM's BeamSearchParams default; sent explicitly where the API takes it


def _cumulative_logprob(choice: dict) -> float | None:
    logprobs = choice.get("logprobs") or {}
    values = logprobs.get("token_logprobs")
    if values is None and isinstance(logprobs.get("content"), list):
        values = [item["logprob"] for item in logprobs["content"]]
    return sum(values) if values else None


def check_beam_search(session: EngineSession) -> Verdict:
    """The verdict of _check_beam_search, with what the engine's claims about beam search referred to where that
    was not its server (llama.cpp: the seed's ✅ cites a removed library example)."""
    verdict = _check_beam_search(session)
    if note := session.adapter.beam_search_note():
        verdict.reason += f" ({note})"
        verdict.evidence.numbers["claim_note"] = note
    return verdict


def _check_beam_search(session: EngineSession) -> Verdict:
    """Pass: BEAMS beams whose texts are the reference beams', each engine score within the compute dtype's
    tolerance of the reference score (per token), and the best at least greedy's. Partial: the texts match
    but the engine reports no scores. Fail: other texts (sampled, identical copies), or a 4xx."""
    require_references(session, session.model.references)
    prompt = session.model.references[0].prompt
    hf_dir = find_artifact(session.artifacts, session.model.name, "hf").path
    beams, greedy = reference_beams(hf_dir, prompt, BEAMS, MAX_TOKENS, LENGTH_PENALTY)
    request = session.adapter.beam_search_request(session.served_model, prompt, BEAMS, MAX_TOKENS)
    try:
        _, response = session.client.send(request)
    except EngineRejected as exc:  # 4xx only: a 5xx or a lost connection is an error
        return Verdict(status=Status.FAIL, reason=f"beam search request rejected: HTTP {exc.exchange.status_code}")
    texts = session.adapter.completion_text(response)
    scores = [_cumulative_logprob(choice) for choice in response.get("choices", [])]
    tolerance, derivation = dtype_tolerance(session)
    allowed = tolerance.max_logprob_diff * MAX_TOKENS
    reference = {beam.text: beam.cumulative_logprob for beam in beams}
    diffs = [
        abs(score - reference[text]) for text, score in zip(texts, scores) if score is not None and text in reference
    ]
    numbers = {
        "prompt": prompt,
        "beams_requested": BEAMS,
        "engine_texts": texts,
        "engine_scores": scores,
        "reference_beams": [beam.model_dump() for beam in beams],
        "greedy": greedy.model_dump(),
        "max_score_diff": max(diffs) if diffs else None,
        "allowed_score_diff": allowed,
        "tolerance": derivation,
    }
    evidence = Evidence(numbers=numbers)
    if len(texts) > 1 and len(set(texts)) == 1:
        return Verdict(
            status=Status.FAIL, reason=f"{len(texts)} identical outputs, not {BEAMS} beams", evidence=evidence
        )
    if sorted(texts) != sorted(reference):
        missing = len(set(reference) - set(texts))
        return Verdict(
            status=Status.FAIL,
            reason=f"{missing} of the {BEAMS} reference beams missing from the "
            f"{len(texts)} texts returned (sampled or searched otherwise)",
            evidence=evidence,
        )
    if any(score is None for score in scores):
        return Verdict(
            status=Status.PARTIAL, reason="the reference beams came back, without their scores", evidence=evidence
        )
    best = max(score for score in scores if score is not None)
    if max(diffs) > allowed or best < greedy.cumulative_logprob - allowed:
        return Verdict(
            status=Status.FAIL,
            reason=f"the reference beams came back with other scores (max diff "
            f"{max(diffs):.3f} > {allowed:.3f}, or the best below greedy's "
            f"{greedy.cumulative_logprob:.3f})",
            evidence=evidence,
        )
    return Verdict(
        status=Status.PASS,
        reason=f"the {BEAMS} reference beams, scores within {max(diffs):.4f} "
        f"(best {best:.3f} >= greedy {greedy.cumulative_logprob:.3f})",
        evidence=evidence,
    )


@pytest.mark.cpu
@pytest.mark.feature("beam_search")
def test_beam_search(probe):
    # engines that fix the beam width at launch (TRT-LLM) get a launch of their own; others reuse the probe's
    probe.record(check_beam_search(probe.engine(probe.context.adapter.beam_search_launch(probe.spec, BEAMS))))
