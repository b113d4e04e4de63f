"""Beam search: n distinct beams come back, ordered by cumulative log-probability."""

from __future__ import annotations

import pytest

from harness.client import EngineRejected
from harness.results import Evidence, Status, Verdict
from harness.session import EngineSession

BEAMS = 3
MAX_TOKENS = 8
PROMPT = "the cat"


def _cumulative_logprob(choice: dict) -> float | None:
    logprobs = choice.get("logprobs") or {}
    values = logprobs.get("token_logprobs")
    if values is None and isinstance(logprobs.get("content"), list):
        values = [item["logprob"] for item in logprobs["content"]]
    return sum(values) if values else None


def check_beam_search(session: EngineSession) -> Verdict:
    """Pass: BEAMS distinct beams, sorted by score. Partial: right count but identical or unsorted. Fail: else."""
    request = session.adapter.beam_search_request(session.served_model, PROMPT, BEAMS, MAX_TOKENS)
    try:
        _, response = session.client.send(request)
    except EngineRejected as exc:  # 4xx only: a 5xx or a lost connection is an error
        return Verdict(status=Status.FAIL, reason=f"beam search request rejected: HTTP {exc.exchange.status_code}")
    choices = response.get("choices", [])
    texts = session.adapter.completion_text(response)
    scores = [_cumulative_logprob(choice) for choice in choices]
    known = [score for score in scores if score is not None]
    ordered = len(known) == len(scores) and known == sorted(known, reverse=True)
    distinct = len(set(texts)) == len(texts)
    numbers = {"beams_requested": BEAMS, "beams_returned": len(choices), "distinct": distinct,
               "cumulative_logprobs": scores, "ordered": ordered}
    if len(choices) == BEAMS and distinct and ordered:
        return Verdict(status=Status.PASS, reason=f"{BEAMS} distinct beams, ordered by cumulative log-probability",
                       evidence=Evidence(numbers=numbers))
    if len(choices) == BEAMS:
        why = "beams identical" if not distinct else "beams not ordered by score (or no scores)"
        return Verdict(status=Status.PARTIAL, reason=f"accepted but not beam search: {why}",
                       evidence=Evidence(numbers=numbers))
    return Verdict(status=Status.FAIL, reason=f"asked for {BEAMS} beams, got {len(choices)} choice(s)",
                   evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("beam_search")
def test_beam_search(probe):
    probe.record(check_beam_search(probe.engine()))
