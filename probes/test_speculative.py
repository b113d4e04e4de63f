"""Speculative decoding with a draft model: the engine's own counters show drafts accepted, and its greedy
output is the same as the same engine's without a draft, launched in the same run (and as the reference)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from harness.models import RefCase
from harness.outcomes import NotMeasurable
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from probes.reference import MAX_TOKENS, require_references

DRAFT_MODEL = "llama-draft"  # llama's first layer: agrees with llama on most tokens
BAD_DRAFT_MODEL = "llama-draft-bad"  # the same with its output rows shifted: proposes tokens llama never picks
# Least share of proposed draft tokens accepted for the draft to count as used: far above chance (a proposal
# the target ignores matches its pick about once in the 500-odd spoken tokens) and under what a draft that
# shares the target's first layer gets. Measured here: llama-draft 25% on llama.cpp, llama-draft-bad 0%.
MIN_ACCEPTANCE = 0.05


def greedy_texts(session: EngineSession, references: list[RefCase]) -> tuple[list[str], list[dict]]:
    """The engine's greedy text of every reference prompt, and its raw responses."""
    texts, responses = [], []
    for case in references:
        request = session.adapter.greedy_request(session.served_model, case.prompt, MAX_TOKENS, top_logprobs=0)
        _, response = session.client.send(request)
        responses.append(response)
        texts.append(session.adapter.parse_greedy(response).text)
    return texts, responses


def _metrics(session: EngineSession) -> str | None:
    status_code, text = session.client.get("/metrics", check=False)
    return text if status_code == 200 else None


def draft_counts(session: EngineSession, references: list[RefCase]) -> tuple[list[str], dict[str, float]]:
    """Greedy texts plus the draft tokens proposed and accepted while they ran, from the engine's own counters
    (per-response fields, or /metrics read before and after). NotMeasurable when the engine reports none."""
    before = _metrics(session)
    texts, responses = greedy_texts(session, references)
    stats = session.adapter.speculative_stats(responses, _metrics(session))
    try:
        earlier = session.adapter.speculative_stats([], before)
    except NotMeasurable:  # counters that appear with the first speculation, or per-response ones
        earlier = {}
    return texts, {key: stats[key] - earlier.get(key, 0.0) for key in ("draft_tokens", "accepted_tokens")}


def check_speculative(session: EngineSession, references: list[RefCase], control: list[str]) -> Verdict:
    """Pass: at least MIN_ACCEPTANCE of the proposed drafts accepted, and every greedy text equal to `control`
    (the same engine's without a draft, same precision) and, when the engine computes in float32, to the float32
    reference (in a reduced dtype the model-family probe judges that distance). Fail otherwise."""
    require_references(session, references)
    texts, counts = draft_counts(session, references)
    proposed, accepted = counts["draft_tokens"], counts["accepted_tokens"]
    rate = accepted / proposed if proposed else 0.0
    same_as_control = sum(text == plain for text, plain in zip(texts, control))
    same_as_reference = sum(text == case.greedy_text for text, case in zip(texts, references))
    count = len(references)
    numbers = {
        "compute_dtype": session.adapter.compute_dtype(session.spec),
        "draft_tokens_proposed": proposed,
        "draft_tokens_accepted": accepted,
        "acceptance_rate": round(rate, 3),
        "min_acceptance": MIN_ACCEPTANCE,
        "identical_to_no_draft": f"{same_as_control}/{count}",
        "identical_to_reference": f"{same_as_reference}/{count}",
        "outputs": [
            {"prompt": case.prompt, "speculative": text, "no_draft": plain, "reference": case.greedy_text}
            for case, text, plain in zip(references, texts, control)
        ],
    }
    evidence = Evidence(numbers=numbers)
    if same_as_control < count:
        return Verdict(
            status=Status.FAIL,
            reason=f"not lossless: greedy output with the draft differs from the "
            f"same engine's without it in {count - same_as_control}/{count} prompts",
            evidence=evidence,
        )
    if same_as_reference < count and numbers["compute_dtype"] == "float32":
        return Verdict(
            status=Status.FAIL,
            reason=f"greedy output differs from the float32 reference in "
            f"{count - same_as_reference}/{count} prompts (with and without the draft)",
            evidence=evidence,
        )
    if proposed == 0 or rate < MIN_ACCEPTANCE:
        return Verdict(
            status=Status.FAIL,
            reason=f"no acceptance: {accepted:.0f} of {proposed:.0f} proposed draft "
            f"tokens accepted ({rate:.0%} < {MIN_ACCEPTANCE:.0%}); output lossless",
            evidence=evidence,
        )
    return Verdict(
        status=Status.PASS,
        reason=f"{accepted:.0f}/{proposed:.0f} draft tokens accepted ({rate:.0%}); "
        "output identical to the engine without a draft and to the reference",
        evidence=evidence,
    )


@pytest.mark.cpu
@pytest.mark.feature("speculative_decoding")
@pytest.mark.launch(draft_model=DRAFT_MODEL)
def test_speculative_decoding(probe):
    plain = probe.engine(replace(probe.spec, draft_model=None))
    references = plain.model.references
    require_references(plain, references)
    control, _ = greedy_texts(plain, references)
    session = probe.engine()
    probe.record(check_speculative(session, references, control))
