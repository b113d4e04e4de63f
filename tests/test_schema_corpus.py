"""The JSON Schema corpus and the per-schema judgement, without an engine (canned answers)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import pytest

from harness.engines.vllm import VllmCpuAdapter
from harness.records.results import Exchange, Status
from harness.wire.client import http_error
from harness.wire.request import ApiRequest
from probes.schema_corpus import KEYWORDS, SCHEMAS, keywords_of
from probes.test_json_schema import BUDGETS, keyword_table, schema_outcome

REQUIRED_KEYWORDS = (
    "enum",
    "const",
    "pattern",
    "format",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "anyOf",
    "oneOf",
    "$ref",
    "$defs",
    "nested",
    "additionalProperties",
)


def test_corpus_is_large_valid_and_covers_the_keywords():
    assert len(SCHEMAS) >= 50
    used: Counter[str] = Counter()
    for schema in SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)
        used.update(keywords_of(schema))
    assert all(used[keyword] >= 1 for keyword in REQUIRED_KEYWORDS), used
    assert set(used) <= set(KEYWORDS)


def _formats(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        own = {schema["format"]} if isinstance(schema.get("format"), str) else set()
        return own.union(*(_formats(value) for value in schema.values()))
    if isinstance(schema, list):
        return set().union(*(_formats(item) for item in schema))
    return set()


def test_every_format_used_is_checked_by_the_installed_jsonschema():
    """An unchecked format would validate anything, and a backend that ignores it would look honoured."""
    used = set().union(*(_formats(schema) for schema in SCHEMAS.values()))
    assert used <= set(jsonschema.Draft202012Validator.FORMAT_CHECKER.checkers), used


def test_keywords_of_marks_nesting_and_refs():
    assert "nested" not in keywords_of(SCHEMAS["enum_strings"])
    assert {"nested", "minItems", "maxItems"} <= keywords_of(SCHEMAS["array_of_objects"])
    assert {"$ref", "$defs", "pattern"} <= keywords_of(SCHEMAS["ref_chain"])


@dataclass
class CannedClient:
    """Answers each request with the next canned (status, body)."""

    answers: list[tuple[int, Any]]
    sent: list[ApiRequest] = field(default_factory=list)

    def send(self, request: ApiRequest, check: bool = True) -> tuple[int, Any]:
        self.sent.append(request)
        status, body = self.answers.pop(0)
        if status >= 400:
            raise http_error(Exchange(method="POST", path=request.path, status_code=status, response=body))
        return status, body


@dataclass
class CannedSession:
    client: CannedClient
    adapter: VllmCpuAdapter = field(default_factory=VllmCpuAdapter)
    served_model: str = "m"


def _chat(content: str, finish: str) -> tuple[int, dict[str, Any]]:
    return 200, {"choices": [{"message": {"content": content}, "finish_reason": finish}]}


SCHEMA = SCHEMAS["integer_range"]  # {"n": 40..45}


@pytest.mark.parametrize(
    "answers, outcome",
    [
        ([_chat('{"n": 42}', "stop")], "honoured"),
        ([_chat('{"n": 7}', "stop")], "ignored"),
        ([_chat('{"n": 4', "stop")], "ignored"),
        ([_chat("the cat sat on", "length")], "ignored"),
        ([_chat('{"n": 42} and more', "length")], "ignored"),
        ([_chat('{"n": 7}\n\t\t\t', "length")], "ignored"),
        ([_chat('{"n":\t\t\t', "length"), _chat('{"n": 41}', "stop")], "honoured"),
        ([_chat('{"n":\t\t\t', "length"), _chat('{"n":\t\t\t\t\t\t', "length")], "truncated"),
        ([(400, {"error": "bad schema"})], "rejected"),
        ([(500, {"error": "crash"})], "error"),
    ],
)
def test_schema_outcome(answers, outcome):
    session = CannedSession(CannedClient(list(answers)))
    result = schema_outcome(session, SCHEMA)  # type: ignore[arg-type]
    assert result.outcome == outcome, result
    assert [request.body["max_tokens"] for request in session.client.sent] == list(BUDGETS[: len(answers)])


def test_truncation_is_never_counted_as_ignored():
    session = CannedSession(CannedClient([_chat('{"n": ', "length")] * len(BUDGETS)))
    assert schema_outcome(session, SCHEMA).outcome == "truncated"  # type: ignore[arg-type]


def test_keyword_table_counts_broken_keywords():
    session = CannedSession(CannedClient([_chat(json.dumps({"n": 7}), "stop"), _chat('{"n": 42}', "stop")]))
    outcomes = {"a": schema_outcome(session, SCHEMA), "b": schema_outcome(session, SCHEMA)}  # type: ignore[arg-type]
    table = keyword_table(outcomes, {"a": SCHEMA, "b": SCHEMA})
    assert table["minimum"] == {
        "schemas": 2,
        "honoured": 1,
        "rejected": 0,
        "ignored": 1,
        "truncated": 0,
        "error": 0,
        "unexplained": 0,
        "dialect": 0,
        "unchecked": 0,
        "broken": 1,
    }
    assert table["maximum"]["broken"] == 0


def test_verdict_of_no_conclusive_answer_is_error():
    from probes.test_json_schema import _verdict_status

    assert _verdict_status(Counter({"truncated": 3})) is Status.ERROR
    assert _verdict_status(Counter({"truncated": 2, "honoured": 1})) is Status.PASS
    assert _verdict_status(Counter({"ignored": 1, "rejected": 2})) is Status.FAIL


def test_the_unparsable_schemas_are_valid_json_schema_that_llguidance_cannot_compile():
    """ExLlamaV3 builds its filter with llguidance (exllamav3 1.6.5 generator/filter/llguidance.py: an error from
    LLMatcher.validate_grammar raises ValueError) and TabbyAPI then runs the request unconstrained, so these schemas
    make a GPU run measure that fail-open (ignored) against a refusal (rejected)."""
    from llguidance import LLMatcher, grammar_from

    unparsable = {name: schema for name, schema in SCHEMAS.items() if name.startswith("unparsable_")}
    assert set(unparsable) == {"unparsable_not", "unparsable_contains"}
    for name, schema in unparsable.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        error = LLMatcher.validate_grammar(grammar_from("json_schema", json.dumps(schema)))
        assert "Unimplemented keys" in error, (name, error)
    # and llguidance compiles a schema without those keywords
    assert not LLMatcher.validate_grammar(grammar_from("json_schema", json.dumps(SCHEMAS["integer_range"])))
