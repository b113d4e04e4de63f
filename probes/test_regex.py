"""Regex-constrained output: every constrained output matches its regex in full and is what constrained greedy
decoding of the served weights writes (teacher-forced through the float32 reference under the same language; the
word list's words drawn from a fresh recorded seed); the same prompt without the constraint (the control) does not
match, so a match is the engine's doing."""

from __future__ import annotations

import re

import pytest

from harness.engines.base import RegexSpec
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineRejected
from probes.constrained_reference import check_text, near_tie, reference_dir, run_seed, seeded, word
from probes.test_grammar import constrained_verdict


def fresh_regexes(seed: int) -> dict[str, RegexSpec]:
    """The probe's regexes, the word list's words drawn from `seed` (the date and the phone number have none)."""
    rng = seeded(seed, "regex")
    words = [word(rng) for _ in range(3)]
    items = " | ".join(f'"{w}"' for w in words)
    return {
        "iso_date": RegexSpec(
            pattern=r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]",
            gbnf='root ::= "20" [0-9] [0-9] "-" ("0" [1-9] | "1" [0-2]) "-" [0-2] [0-9]\n',
        ),
        "phone": RegexSpec(
            pattern=r"\([0-9]{3}\) [0-9]{3}-[0-9]{4}", gbnf='root ::= "(" [0-9]{3} ") " [0-9]{3} "-" [0-9]{4}\n'
        ),
        "word_list": RegexSpec(
            pattern=f"({'|'.join(words)})(, ({'|'.join(words)})){{2,3}}\\.",
            gbnf=f'root ::= item (", " item){{2,3}} "."\nitem ::= {items}\n',
        ),
    }


REGEXES = fresh_regexes(0)  # their shape; each run draws its own words
HARNESS_BUILT_MARK = "🟠"  # the engine honoured what the harness translated the regex into, not a regex
PROMPT = "Write it:"
MAX_TOKENS = 48


def check_regex(session: EngineSession) -> Verdict:
    """All constrained outputs match in full -> pass; some -> partial; none (ignored or rejected) -> fail."""
    reference_dir(session)  # not measurable without the float32 reference
    seed = run_seed()
    tolerance, _ = near_tie(session)
    outcomes: dict[str, dict[str, object]] = {}
    for name, regex in fresh_regexes(seed).items():
        compiled = re.compile(regex.pattern)
        request = session.adapter.regex_request(session.served_model, PROMPT, regex, MAX_TOKENS)
        try:
            _, response = session.client.send(request)
            text = session.adapter.completion_text(response)[0]
            outcomes[name] = {
                "output": text,
                "matches": compiled.fullmatch(text) is not None,
                "finish_reason": response["choices"][0].get("finish_reason"),
            }
            if outcomes[name]["matches"]:
                finished = outcomes[name]["finish_reason"] == "stop"
                outcomes[name]["reference"] = check_text(session, PROMPT, text, regex.gbnf, finished, tolerance)
        except EngineRejected as exc:  # 4xx only: a 5xx or a lost connection is an error
            outcomes[name] = {"output": None, "matches": False, "rejected": exc.exchange.status_code}
        control = session.adapter.fixed_length_request(session.served_model, PROMPT, 16, stream=False)
        _, control_response = session.client.send(control)
        outcomes[name]["control_matches"] = (
            compiled.fullmatch(session.adapter.completion_text(control_response)[0]) is not None
        )
    matched = sum(bool(outcome["matches"]) for outcome in outcomes.values())
    controls = sum(bool(outcome["control_matches"]) for outcome in outcomes.values())
    if controls:
        return Verdict(
            status=Status.ERROR,
            reason=f"{controls} unconstrained control output(s) match their regex: "
            "the model's own output cannot tell a constraint from none",
            evidence=Evidence(numbers={"seed": seed, "outcomes": outcomes}),
        )
    note = session.adapter.regex_note()
    verdict = constrained_verdict(
        outcomes,
        matched,
        "regex",
        "regex-constrained outputs match in full (0 controls match)",
        "match",
        note=note,
        seed=seed,
    )
    if note and verdict.status is Status.PASS:  # the harness built the capability itself: an inferior alternative
        verdict.evidence.numbers |= {"seed_mark": HARNESS_BUILT_MARK, "harness_built": note}
        verdict.reason += "; the engine has no regex constraint, the harness wrote the grammar: 🟠"
    return verdict


@pytest.mark.cpu
@pytest.mark.feature("regex")
def test_regex(probe):
    probe.record(check_regex(probe.engine()))
