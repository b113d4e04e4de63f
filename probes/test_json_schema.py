"""JSON schema: outputs must parse and validate with `jsonschema` (formats checked too).

Two probes share one judgement per schema (`schema_outcome`):
- `json_schema`, the seed row: a few everyday schemas; all honoured -> pass, some -> partial, none -> fail.
- `json_schema_coverage`: the corpus in probes/schema_corpus.py, reported per keyword as honoured,
  rejected (4xx), silently ignored (accepted, finished, invalid), truncated (inconclusive) or error.
An answer cut off by max_tokens inside an unfinished JSON value is retried with a larger budget;
still cut off, it is counted as truncated, never as ignored (text that cannot begin JSON is ignored,
finished or not). A 5xx or a timeout is an error, never a rejection.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema
import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineHTTPError, EngineTransportError
from probes.schema_corpus import SCHEMAS as CORPUS
from probes.schema_corpus import keywords_of

SCHEMAS: dict[str, dict[str, Any]] = {
    "enum_and_integer": {
        "type": "object",
        "properties": {
            "color": {"enum": ["red", "green", "blue"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 99},
        },
        "required": ["color", "count"],
        "additionalProperties": False,
    },
    "nested_object": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1, "maxLength": 8},
                    "admin": {"type": "boolean"},
                },
                "required": ["name", "admin"],
                "additionalProperties": False,
            }
        },
        "required": ["user"],
        "additionalProperties": False,
    },
    "bounded_array": {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "minItems": 2, "maxItems": 3}
        },
        "required": ["tags"],
        "additionalProperties": False,
    },
}
PROMPT = "Answer with a JSON object."
BUDGETS = (200, 800)  # max_tokens of the first try and of the retry after a truncated answer
OUTCOMES = ("honoured", "rejected", "ignored", "truncated", "error")


@dataclass
class SchemaOutcome:
    """What one schema got: honoured, rejected, ignored, truncated or error, and why."""

    outcome: str
    detail: str
    max_tokens: int
    violated: list[str] = field(default_factory=list)  # the keywords the output broke (jsonschema's validators)


def could_start_json(text: str) -> bool:
    """Whether `text` (no complete JSON value in it) can still grow into one: blank, or opening a JSON value."""
    stripped = text.lstrip()
    if not stripped or stripped[0] in '{["-0123456789':
        return True
    return any(literal.startswith(stripped[: len(literal)]) for literal in ("true", "false", "null"))


def _judge(text: str, schema: dict[str, Any], cut_off: bool) -> tuple[str, list[str], str]:
    """(outcome, broken keywords, detail) of one answer; `cut_off`: it ended at max_tokens."""
    stripped = text.lstrip()
    try:
        document, end = json.JSONDecoder().raw_decode(stripped)
    except json.JSONDecodeError as exc:
        if cut_off and could_start_json(stripped):
            return "truncated", [], f"cut off: {text[:80]!r}"
        return "ignored", ["not JSON"], f"not JSON: {exc.msg}: {text[:80]!r}"
    if stripped[end:].strip():
        return "ignored", ["not JSON"], f"text after the JSON value: {text[:80]!r}"
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(document), key=lambda error: error.path)
    if not errors:
        return "honoured", [], "valid"
    return (
        "ignored",
        sorted({str(error.validator) for error in errors}),
        f"invalid: {errors[0].message[:160]}: {text[:80]!r}",
    )


def schema_outcome(session: EngineSession, schema: dict[str, Any], budgets: tuple[int, ...] = BUDGETS) -> SchemaOutcome:
    """Ask for `schema` and judge the answer, retrying one cut off inside an unfinished JSON value with the next
    budget. A complete JSON value is judged whatever the finish reason; text that cannot begin JSON is ignored."""
    outcome = SchemaOutcome("error", "no request sent", 0)
    for max_tokens in budgets:
        request = session.adapter.json_schema_request(session.served_model, PROMPT, schema, max_tokens)
        try:
            _, response = session.client.send(request)
        except EngineHTTPError as exc:  # 4xx: rejected; a 5xx is an error, never a rejection
            kind = "rejected" if exc.rejected else "error"
            return SchemaOutcome(
                kind, f"HTTP {exc.exchange.status_code}: {str(exc.exchange.response)[:160]}", max_tokens
            )
        except EngineTransportError as exc:
            return SchemaOutcome("error", str(exc)[:200], max_tokens)
        text = session.adapter.completion_text(response)[0] or ""
        cut_off = response["choices"][0].get("finish_reason") == "length"
        kind, broken, detail = _judge(text, schema, cut_off)
        outcome = SchemaOutcome(kind, detail, max_tokens, violated=broken)
        if kind != "truncated":
            return outcome
    return outcome


def _all_outcomes(session: EngineSession, schemas: dict[str, dict[str, Any]]) -> dict[str, SchemaOutcome]:
    """Every schema's outcome, as many requests in flight as the engine has sequence slots."""
    with ThreadPoolExecutor(max_workers=max(1, session.spec.parallel_slots)) as pool:
        futures = {name: pool.submit(schema_outcome, session, schema) for name, schema in schemas.items()}
        return {name: future.result() for name, future in futures.items()}


def _verdict_status(counts: Counter[str]) -> Status:
    """Decided by the conclusive outcomes only; none conclusive -> error."""
    conclusive = counts["honoured"] + counts["rejected"] + counts["ignored"]
    if not conclusive:
        return Status.ERROR
    return Status.PASS if counts["honoured"] == conclusive else Status.PARTIAL if counts["honoured"] else Status.FAIL


def _inconclusive_note(counts: Counter[str]) -> str:
    parts = [f"{counts[kind]} {kind}" for kind in ("truncated", "error") if counts[kind]]
    return f" ({', '.join(parts)}: inconclusive, not counted)" if parts else ""


def check_json_schema(session: EngineSession) -> Verdict:
    """All conclusive outputs valid -> pass; some -> partial; none (ignored or rejected) -> fail."""
    outcomes = {name: schema_outcome(session, schema) for name, schema in SCHEMAS.items()}
    counts = Counter(outcome.outcome for outcome in outcomes.values())
    status = _verdict_status(counts)
    conclusive = counts["honoured"] + counts["rejected"] + counts["ignored"]
    reason = f"{counts['honoured']}/{conclusive} conclusive outputs validate against their schema"
    if counts["rejected"]:
        reason += f"; {counts['rejected']} request(s) rejected"
    elif status is Status.FAIL:
        reason = f"schema accepted but not honoured: 0/{conclusive} outputs validate"
    elif status is Status.ERROR:
        reason = "no schema answer was conclusive"
    reason += _inconclusive_note(counts)
    return Verdict(
        status=status,
        reason=reason,
        evidence=Evidence(
            numbers={
                "outcomes": {name: asdict(outcome) for name, outcome in outcomes.items()},
                "counts": {kind: counts[kind] for kind in OUTCOMES},
                "budgets": list(BUDGETS),
            }
        ),
    )


def keyword_table(outcomes: dict[str, SchemaOutcome], schemas: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per keyword: how many schemas using it got each outcome, and how often an output broke it."""
    table: dict[str, dict[str, int]] = {}
    for name, outcome in outcomes.items():
        for keyword in sorted(keywords_of(schemas[name])):
            row = table.setdefault(keyword, {"schemas": 0, **{kind: 0 for kind in OUTCOMES}, "broken": 0})
            row["schemas"] += 1
            row[outcome.outcome] += 1
            row["broken"] += keyword in outcome.violated
    return table


def check_json_schema_coverage(session: EngineSession, schemas: dict[str, dict[str, Any]] = CORPUS) -> Verdict:
    """The share of the corpus honoured, rejected, ignored; per keyword in evidence.numbers["keywords"]."""
    outcomes = _all_outcomes(session, schemas)
    counts = Counter(outcome.outcome for outcome in outcomes.values())
    status = _verdict_status(counts)
    conclusive = counts["honoured"] + counts["rejected"] + counts["ignored"]
    total = len(schemas)
    backend = session.adapter.structured_output_backend(session.running)
    reason = (
        f"{backend}: {counts['honoured']}/{total} schemas honoured, {counts['rejected']} rejected (4xx), "
        f"{counts['ignored']} silently ignored" + _inconclusive_note(counts)
    )
    if not conclusive:
        reason = f"{backend}: no schema answer was conclusive" + _inconclusive_note(counts)
    keywords = keyword_table(outcomes, schemas)
    not_honoured = sorted(keyword for keyword, row in keywords.items() if row["honoured"] < row["schemas"])
    return Verdict(
        status=status,
        reason=reason,
        evidence=Evidence(
            numbers={
                "backend": backend,
                "schemas": total,
                "counts": {kind: counts[kind] for kind in OUTCOMES},
                "shares": {kind: round(counts[kind] / total, 3) for kind in OUTCOMES},
                "keywords": keywords,
                "keywords_not_always_honoured": not_honoured,
                "budgets": list(BUDGETS),
                "outcomes": {name: asdict(outcome) for name, outcome in outcomes.items()},
            }
        ),
    )


@pytest.mark.cpu
@pytest.mark.feature("json_schema")
def test_json_schema(probe):
    probe.record(check_json_schema(probe.engine()))


@pytest.mark.cpu
@pytest.mark.feature("json_schema_coverage")
def test_json_schema_coverage(probe):
    probe.record(check_json_schema_coverage(probe.engine()))
