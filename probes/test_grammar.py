"""EBNF/GBNF grammars: outputs must parse under an independent Lark parser of the same grammar, and be what
constrained greedy decoding of the served weights writes (teacher-forced through the float32 reference under the
GBNF; literals drawn from a fresh recorded seed). An unconstrained control that already parses makes the run
inconclusive."""

from __future__ import annotations

from typing import Any

import lark
import pytest

from harness.engines.base import GrammarSpec
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineRejected
from probes.constrained_reference import check_text, near_tie, reference_dir, run_seed, seeded, word


def fresh_grammars(seed: int) -> dict[str, GrammarSpec]:
    """The probe's two grammars with their literals (column, table and key names) drawn from `seed`."""
    rng = seeded(seed, "ebnf_grammar")
    col, table, key = ([word(rng) for _ in range(count)] for count in (3, 2, 3))

    def alts(words: list[str]) -> str:
        return " | ".join(f'"{w}"' for w in words)

    return {
        "select_statement": GrammarSpec(
            gbnf=f'root ::= "SELECT " col ("," col){{0,2}} " FROM " table ";"\ncol ::= {alts(col)}\n'
            f"table ::= {alts(table)}\n",
            lark=f'start: "SELECT " col ("," col)~0..2 " FROM " table ";"\ncol: {alts(col)}\ntable: {alts(table)}\n',
        ),
        "key_values": GrammarSpec(
            gbnf=f'root ::= pair (";" pair){{1,3}}\npair ::= key "=" digit digit?\nkey ::= {alts(key)}\n'
            "digit ::= [0-9]\n",
            lark=f'start: pair (";" pair)~1..3\npair: KEY "=" DIGIT DIGIT?\nKEY: {alts(key)}\nDIGIT: /[0-9]/\n',
        ),
    }


GRAMMARS = fresh_grammars(0)  # their shape; each run draws its own literals
PROMPT = "Write it:"
MAX_TOKENS = 64


def _parses(parser: lark.Lark, text: str) -> bool:
    try:
        parser.parse(text)
    except lark.LarkError:
        return False
    return True


def check_grammar(session: EngineSession) -> Verdict:
    """All constrained outputs parse -> pass; some -> partial; none (or rejected) -> fail.

    Each grammar is also asked for without the constraint, as a control: the synthesized
    model's free output does not follow these grammars, so a parse is the engine's doing.
    """
    reference_dir(session)  # not measurable without the float32 reference
    seed = run_seed()
    tolerance, _ = near_tie(session)
    outcomes: dict[str, dict[str, object]] = {}
    for name, grammar in fresh_grammars(seed).items():
        parser = lark.Lark(grammar.lark, parser="earley", lexer="dynamic")
        request = session.adapter.grammar_request(session.served_model, PROMPT, grammar, MAX_TOKENS)
        try:
            _, response = session.client.send(request)
            text = session.adapter.completion_text(response)[0]
            outcomes[name] = {"output": text, "parses": _parses(parser, text)}
            if outcomes[name]["parses"]:
                finished = response["choices"][0].get("finish_reason") == "stop"
                outcomes[name]["reference"] = check_text(session, PROMPT, text, grammar.gbnf, finished, tolerance)
        except EngineRejected as exc:  # 4xx only: a 5xx or a lost connection is an error
            outcomes[name] = {"output": None, "parses": False, "rejected": exc.exchange.status_code}
        control = session.adapter.fixed_length_request(session.served_model, PROMPT, 16, stream=False)
        _, control_response = session.client.send(control)
        outcomes[name]["control_parses"] = _parses(parser, session.adapter.completion_text(control_response)[0])
    if any(outcome["control_parses"] for outcome in outcomes.values()):
        return Verdict(
            status=Status.ERROR,
            reason="inconclusive: an unconstrained control output parses under its grammar",
            evidence=Evidence(numbers={"seed": seed, "outcomes": outcomes}),
        )
    parsed = sum(bool(outcome["parses"]) for outcome in outcomes.values())
    return constrained_verdict(
        outcomes, parsed, "grammar", "grammar-constrained outputs parse under the Lark grammar", "parse", seed=seed
    )


def constrained_verdict(
    outcomes: dict[str, dict],
    honoured: int,
    kind: str,
    honoured_text: str,
    verb: str,
    note: str = "",
    seed: int | None = None,
) -> Verdict:
    """Pass when every constrained output is honoured, partial when some, fail when none (rejected, or
    accepted but not honoured); `outcomes` (one per constraint, "rejected" where refused) is the evidence. An output
    that honours its constraint but is not what constrained greedy decoding of the reference writes (its "reference"
    teacher forcing disagrees) fails the probe: the engine did not decode under the constraint."""
    total = len(outcomes)
    forced = [outcome["reference"] for outcome in outcomes.values() if outcome.get("reference")]
    numbers: dict[str, Any] = {"seed": seed, "outcomes": outcomes}
    if forced:
        numbers["positions"] = sum(entry["positions"] for entry in forced)
        numbers["agreed"] = sum(entry["agreed"] + len(entry["near_ties"]) for entry in forced)
    wrong = [
        name for name, outcome in outcomes.items() if outcome.get("reference") and not outcome["reference"]["agrees"]
    ]
    if wrong:
        entry = outcomes[wrong[0]]["reference"]
        first = (entry["mismatches"] or entry["disallowed"] or [{}])[0]
        return Verdict(
            status=Status.FAIL,
            reason=f"{len(wrong)}/{total} {kind} outputs {verb} but are not constrained greedy decoding of the served "
            f"weights (seed {seed}); {wrong[0]}: {first}"[:600],
            evidence=Evidence(numbers=numbers),
        )
    rejected = sum("rejected" in outcome for outcome in outcomes.values())
    status = Status.PASS if honoured == total else Status.PARTIAL if honoured else Status.FAIL
    reason = f"{honoured}/{total} {honoured_text}"
    if rejected:
        reason += f"; {rejected} request(s) rejected"
    elif not honoured:
        reason = f"{kind} accepted but not honoured: 0/{total} outputs {verb}"
    if forced:
        reason += f"; {numbers['agreed']}/{numbers['positions']} tokens are the reference's constrained argmax"
    if seed is not None:
        reason += f" (seed {seed})"
    if note:
        reason += f" ({note})"
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("ebnf_grammar")
def test_ebnf_grammar(probe):
    probe.record(check_grammar(probe.engine()))
