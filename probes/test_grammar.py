"""EBNF/GBNF grammars: outputs must parse under an independent Lark parser of the same grammar."""

from __future__ import annotations

import lark
import pytest

from harness.engines.base import GrammarSpec
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineRejected

GRAMMARS: dict[str, GrammarSpec] = {
    "select_statement": GrammarSpec(
        gbnf='root ::= "SELECT " col ("," col){0,2} " FROM " table ";"\n'
        'col ::= "id" | "name" | "price"\n'
        'table ::= "users" | "orders"\n',
        lark='start: "SELECT " col ("," col)~0..2 " FROM " table ";"\n'
        'col: "id" | "name" | "price"\n'
        'table: "users" | "orders"\n',
    ),
    "key_values": GrammarSpec(
        gbnf='root ::= pair (";" pair){1,3}\npair ::= key "=" digit digit?\nkey ::= "a" | "b" | "c"\ndigit ::= [0-9]\n',
        lark='start: pair (";" pair)~1..3\npair: KEY "=" DIGIT DIGIT?\nKEY: "a" | "b" | "c"\nDIGIT: /[0-9]/\n',
    ),
}
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
    outcomes: dict[str, dict[str, object]] = {}
    for name, grammar in GRAMMARS.items():
        parser = lark.Lark(grammar.lark, parser="earley", lexer="dynamic")
        request = session.adapter.grammar_request(session.served_model, PROMPT, grammar, MAX_TOKENS)
        try:
            _, response = session.client.send(request)
            text = session.adapter.completion_text(response)[0]
            outcomes[name] = {"output": text, "parses": _parses(parser, text)}
        except EngineRejected as exc:  # 4xx only: a 5xx or a lost connection is an error
            outcomes[name] = {"output": None, "parses": False, "rejected": exc.exchange.status_code}
        control = session.adapter.fixed_length_request(session.served_model, PROMPT, 16, stream=False)
        _, control_response = session.client.send(control)
        outcomes[name]["control_parses"] = _parses(parser, session.adapter.completion_text(control_response)[0])
    parsed = sum(bool(outcome["parses"]) for outcome in outcomes.values())
    return constrained_verdict(
        outcomes, parsed, "grammar", "grammar-constrained outputs parse under the Lark grammar", "parse"
    )


def constrained_verdict(
    outcomes: dict[str, dict], honoured: int, kind: str, honoured_text: str, verb: str, note: str = ""
) -> Verdict:
    """Pass when every constrained output is honoured, partial when some, fail when none (rejected, or
    accepted but not honoured); `outcomes` (one per constraint, "rejected" where refused) is the evidence."""
    total = len(outcomes)
    rejected = sum("rejected" in outcome for outcome in outcomes.values())
    status = Status.PASS if honoured == total else Status.PARTIAL if honoured else Status.FAIL
    reason = f"{honoured}/{total} {honoured_text}"
    if rejected:
        reason += f"; {rejected} request(s) rejected"
    elif not honoured:
        reason = f"{kind} accepted but not honoured: 0/{total} outputs {verb}"
    if note:
        reason += f" ({note})"
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers={"outcomes": outcomes}))


@pytest.mark.cpu
@pytest.mark.feature("ebnf_grammar")
def test_ebnf_grammar(probe):
    probe.record(check_grammar(probe.engine()))
