"""Speculative decoding with a draft model: draft tokens accepted, output identical to plain greedy."""

from __future__ import annotations

import pytest

from harness.models import RefCase
from harness.results import Evidence, Status, Verdict
from harness.session import EngineSession
from probes.reference import MAX_TOKENS, require_references

DRAFT_MODEL = "llama-draft"


def check_speculative(session: EngineSession, references: list[RefCase]) -> Verdict:
    """Pass: the engine reports accepted draft tokens and every output equals the reference greedy text."""
    require_references(session, references)
    responses, outputs = [], []
    identical = 0
    for case in references:
        request = session.adapter.greedy_request(session.served_model, case.prompt, MAX_TOKENS, top_logprobs=0)
        _, response = session.client.send(request)
        text = session.adapter.parse_greedy(response).text
        responses.append(response)
        identical += text == case.greedy_text
        outputs.append({"prompt": case.prompt, "engine": text, "greedy_reference": case.greedy_text})
    status_code, metrics = session.client.get("/metrics", check=False)
    stats = session.adapter.speculative_stats(responses, metrics if status_code == 200 else None)
    proposed, accepted = int(stats.get("draft_tokens", 0)), int(stats.get("accepted_tokens", 0))
    numbers = {"draft_tokens_proposed": proposed, "draft_tokens_accepted": accepted,
               "acceptance_rate": round(accepted / proposed, 3) if proposed else None,
               "identical_to_greedy": f"{identical}/{len(references)}", "outputs": outputs}
    evidence = Evidence(numbers=numbers)
    if accepted == 0:
        return Verdict(status=Status.FAIL, reason="engine reports no accepted draft tokens", evidence=evidence)
    if identical < len(references):
        return Verdict(status=Status.PARTIAL, reason=f"drafts accepted ({accepted}) but output differs from "
                       f"greedy in {len(references) - identical}/{len(references)} prompts", evidence=evidence)
    return Verdict(status=Status.PASS, reason=f"{accepted}/{proposed} draft tokens accepted; output identical to "
                   "greedy for every prompt", evidence=evidence)


@pytest.mark.cpu
@pytest.mark.feature("speculative_decoding")
@pytest.mark.launch(draft_model=DRAFT_MODEL)
def test_speculative_decoding(probe):
    session = probe.engine()
    probe.record(check_speculative(session, session.model.references))
