"""logit_bias (what LMQL needed from an engine): +100 on a token forces it, -100 bans it.

Both are judged against the unbiased greedy output of the same prompt: the forced token is one the
model does not produce for it (taken from another prompt's greedy output, so it is a token the model
can emit), and the banned tokens are every token of the unbiased output.
"""

from __future__ import annotations

import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineRejected

PROMPTS = ("The river", "A quiet morning")
TOKENS = 12


def _generate(session: EngineSession, prompt: str, bias: dict[int, float]) -> tuple[list[int], str]:
    request = session.adapter.logit_bias_request(session.served_model, prompt, bias, TOKENS)
    _, response = session.client.send(request)
    return session.adapter.generated_token_ids(response), session.adapter.completion_text(response)[0]


def _periodic(text: str, times: int) -> bool:
    """Whether `text` is one piece repeated `times` times (the text of one token generated `times` times)."""
    return bool(text) and len(text) % times == 0 and text == text[: len(text) // times] * times


def check_logit_bias(session: EngineSession) -> Verdict:
    """Forced and banned both hold -> pass; one -> partial; neither (ignored or rejected) -> fail."""
    plain_ids, plain_text = _generate(session, PROMPTS[0], {})
    other_ids, _ = _generate(session, PROMPTS[1], {})
    candidates = [token for token in other_ids if token not in plain_ids]
    if len(plain_ids) != TOKENS or not candidates:
        return Verdict(
            status=Status.ERROR,
            reason=f"no usable unbiased output: {len(plain_ids)} tokens, "
            f"no token of the second prompt's output missing from the first's",
            evidence=Evidence(numbers={"plain_ids": plain_ids, "other_ids": other_ids}),
        )
    forced_token, banned = candidates[0], sorted(set(plain_ids))
    numbers: dict[str, object] = {
        "plain_ids": plain_ids,
        "plain_text": plain_text,
        "forced_token": forced_token,
        "banned_tokens": banned,
    }
    try:
        forced_ids, forced_text = _generate(session, PROMPTS[0], {forced_token: 100.0})
        banned_ids, banned_text = _generate(session, PROMPTS[0], {token: -100.0 for token in banned})
    except EngineRejected as exc:  # 4xx only: a 5xx or a lost connection is an error
        return Verdict(
            status=Status.FAIL,
            reason=f"logit_bias rejected: HTTP {exc.exchange.status_code}",
            evidence=Evidence(numbers=numbers),
        )
    forced = forced_ids == [forced_token] * TOKENS and _periodic(forced_text, TOKENS)
    banned_held = len(banned_ids) == TOKENS and not set(banned_ids) & set(banned) and banned_text != plain_text
    numbers.update(
        forced_ids=forced_ids,
        forced_text=forced_text,
        banned_ids=banned_ids,
        banned_text=banned_text,
        forced_share=sum(token == forced_token for token in forced_ids) / TOKENS,
        banned_share=sum(token in banned for token in banned_ids) / TOKENS,
        forced=forced,
        banned=banned_held,
    )
    status = Status.PASS if forced and banned_held else Status.PARTIAL if forced or banned_held else Status.FAIL
    reason = (
        f"+100 forced token {forced_token} at {numbers['forced_share']:.0%} of {TOKENS} positions; "
        f"-100 on the {len(banned)} tokens of the unbiased output left {numbers['banned_share']:.0%} of them"
    )
    if status is Status.FAIL:
        reason = "logit_bias accepted but not honoured: " + reason
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("logit_bias")
def test_logit_bias(probe):
    probe.record(check_logit_bias(probe.engine()))
