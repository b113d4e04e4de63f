"""JSON schema: several schemas; every output must parse and validate with `jsonschema`."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from harness.client import EngineHTTPError
from harness.results import Evidence, Status, Verdict
from harness.session import EngineSession

SCHEMAS: dict[str, dict[str, Any]] = {
    "enum_and_integer": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}, "count": {"type": "integer", "minimum": 0,
                                                                                 "maximum": 99}},
        "required": ["color", "count"], "additionalProperties": False,
    },
    "nested_object": {
        "type": "object",
        "properties": {"user": {"type": "object",
                                "properties": {"name": {"type": "string", "minLength": 1, "maxLength": 8},
                                               "admin": {"type": "boolean"}},
                                "required": ["name", "admin"], "additionalProperties": False}},
        "required": ["user"], "additionalProperties": False,
    },
    "bounded_array": {
        "type": "object",
        "properties": {"tags": {"type": "array", "items": {"type": "string", "maxLength": 6},
                                "minItems": 2, "maxItems": 3}},
        "required": ["tags"], "additionalProperties": False,
    },
}
PROMPT = "Answer with a JSON object."
MAX_TOKENS = 200


def check_json_schema(session: EngineSession) -> Verdict:
    """All outputs valid -> pass; some -> partial; none (ignored or rejected) -> fail."""
    outcomes: dict[str, str] = {}
    for name, schema in SCHEMAS.items():
        request = session.adapter.json_schema_request(session.served_model, PROMPT, schema, MAX_TOKENS)
        try:
            _, response = session.client.send(request)
        except EngineHTTPError as exc:
            outcomes[name] = f"rejected: HTTP {exc.exchange.status_code}"
            continue
        text = session.adapter.completion_text(response)[0]
        truncated = response["choices"][0].get("finish_reason") == "length"
        try:
            jsonschema.validate(json.loads(text), schema)
            outcomes[name] = "valid"
        except json.JSONDecodeError as exc:
            outcomes[name] = (f"truncated at max_tokens={MAX_TOKENS}: {text[:60]!r}" if truncated
                              else f"not JSON: {exc.msg}")
        except jsonschema.ValidationError as exc:
            outcomes[name] = f"invalid: {exc.message[:200]}"
    valid = sum(outcome == "valid" for outcome in outcomes.values())
    rejected = sum(outcome.startswith("rejected") for outcome in outcomes.values())
    status = Status.PASS if valid == len(SCHEMAS) else Status.PARTIAL if valid else Status.FAIL
    reason = f"{valid}/{len(SCHEMAS)} outputs validate against their schema"
    if rejected:
        reason += f"; {rejected} request(s) rejected"
    elif not valid:
        reason = f"schema accepted but not honoured: 0/{len(SCHEMAS)} outputs validate"
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers={"outcomes": outcomes,
                                                                            "valid": valid}))


@pytest.mark.cpu
@pytest.mark.feature("json_schema")
def test_json_schema(probe):
    probe.record(check_json_schema(probe.engine()))
