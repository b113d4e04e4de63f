"""Tool calling: an OpenAI `tools` request with tool_choice="required" and strict functions returns tool
calls naming a declared function, with arguments that validate against that function's parameter schema.

The synthesized models know nothing of tools, so only an engine that constrains its output to a tool call
(as "required" asks) can pass. Their chat template is a tool-capable one (Hermes style, `<tool_call>` JSON),
as a real tool-using checkpoint's is, so the engine has a tool-call format to apply. A request the engine
answers with an error while the same chat request without tools works is refused: fail, whatever the status
code (llama-server started with --no-jinja answers HTTP 500 "tools param requires --jinja flag"). An answer
cut off by max_tokens is retried with a larger budget and, still cut off, is inconclusive: it may be inside a
tool call, or in text the engine lets come first (llama-server's grammar for "required" allows content
before its call marker). Only an answer that ended without a call is "no tool call".
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import jsonschema
import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineHTTPError
from harness.wire.request import ApiRequest


# `strict: true` is how the OpenAI API asks for arguments that follow the schema; without it vLLM 0.32 constrains
# only the call's envelope and function name (its --tool-strict-level auto; measured: free-text `parameters`).
def declared_tools(nonce: str) -> list[dict[str, Any]]:
    """The two functions offered, their names and city values made fresh by `nonce`: a server that answers a
    canned call cannot name them, only one that builds its output from the schema it was sent."""
    cities = [f"{city}-{nonce}" for city in ("Paris", "Tokyo", "Lima")]
    return [
        {
            "type": "function",
            "function": {
                "name": f"get_weather_{nonce}",
                "description": "Weather forecast for a city.",
                "strict": True,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "enum": cities},
                        "days": {"type": "integer", "minimum": 1, "maximum": 7},
                    },
                    "required": ["city", "days"],
                    "additionalProperties": False,
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": f"convert_currency_{nonce}",
                "description": "Convert an amount between currencies.",
                "strict": True,
                "parameters": {
                    "type": "object",
                    "properties": {
                        "amount": {"type": "number", "minimum": 0, "maximum": 1000},
                        "to": {"type": "string", "pattern": "^[A-Z]{3}$"},
                    },
                    "required": ["amount", "to"],
                    "additionalProperties": False,
                },
            },
        },
    ]


PROMPTS = ("What is the weather in Lima for three days?", "Convert 20 euros to yen.", "Help me plan a trip.")
BUDGETS = (200, 800)


def _judge_calls(session: EngineSession, response: dict[str, Any], tools: list[dict[str, Any]]) -> tuple[str, str]:
    """("valid" | "invalid" | "no tool call", detail) for one answer."""
    schemas = {tool["function"]["name"]: tool["function"]["parameters"] for tool in tools}
    calls = session.adapter.parse_tool_calls(response)
    if not calls:
        return "no tool call", f"text answer: {(session.adapter.completion_text(response)[0] or '')[:80]!r}"
    for call in calls:
        if call.name not in schemas:
            return "invalid", f"undeclared function {call.name!r}"
        try:
            jsonschema.validate(json.loads(call.arguments), schemas[call.name])
        except (json.JSONDecodeError, TypeError) as exc:
            return "invalid", f"{call.name}: arguments not JSON ({exc}): {call.arguments!r:.80}"
        except jsonschema.ValidationError as exc:
            return "invalid", f"{call.name}: {exc.message[:120]}"
    return "valid", ", ".join(f"{call.name}({call.arguments})" for call in calls)[:200]


def _ask(session: EngineSession, prompt: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    """One prompt's outcome, retrying an answer cut off by max_tokens."""
    outcome: dict[str, Any] = {}
    for max_tokens in BUDGETS:
        _, response = session.client.send(
            session.adapter.tool_call_request(session.served_model, prompt, tools, max_tokens)
        )
        kind, detail = _judge_calls(session, response, tools)
        outcome = {
            "outcome": kind,
            "detail": detail,
            "max_tokens": max_tokens,
            "finish_reason": response["choices"][0].get("finish_reason"),
        }
        if kind != "valid" and outcome["finish_reason"] == "length":
            # cut off: inside what may be a tool call, or in text an engine may let come before the call
            # (llama-server's required grammar allows content up to its <tool_call> marker): ask with more room
            outcome["outcome"] = "truncated"
            continue
        return outcome
    return outcome


def _refusal(session: EngineSession, request: ApiRequest, exc: EngineHTTPError) -> Verdict:
    """The tools request failed: a refusal when the same chat without tools works, else an error."""
    body = {key: value for key, value in request.body.items() if key not in ("tools", "tool_choice")}
    try:
        session.client.send(ApiRequest(request.path, body))
    except EngineHTTPError:
        raise exc from None
    message = str(exc.exchange.response)[:200]
    return Verdict(
        status=Status.FAIL,
        reason=f"tools request refused: HTTP {exc.exchange.status_code} {message!r}; "
        "the same chat request without tools answers 200",
        evidence=Evidence(numbers={"status_code": exc.exchange.status_code, "message": message}),
    )


def check_tool_calling(session: EngineSession) -> Verdict:
    """Every conclusive answer a valid tool call -> pass; some -> partial; none (text, invalid, refused) -> fail."""
    outcomes: dict[str, dict[str, Any]] = {}
    for prompt in PROMPTS:
        tools = declared_tools(secrets.token_hex(3))
        try:
            outcomes[prompt] = _ask(session, prompt, tools)
        except EngineHTTPError as exc:  # any status: _refusal tells a refusal (control works) from an error
            return _refusal(
                session, session.adapter.tool_call_request(session.served_model, prompt, tools, BUDGETS[0]), exc
            )
    kinds = [outcome["outcome"] for outcome in outcomes.values()]
    valid, conclusive = kinds.count("valid"), len(kinds) - kinds.count("truncated")
    numbers = {"outcomes": outcomes, "valid": valid, "conclusive": conclusive}
    if not conclusive:
        return Verdict(
            status=Status.ERROR,
            reason="every tool-call answer was cut off by max_tokens",
            evidence=Evidence(numbers=numbers),
        )
    status = Status.PASS if valid == conclusive else Status.PARTIAL if valid else Status.FAIL
    reason = (
        f"tool_choice=required: {valid}/{conclusive} conclusive answers are tool calls whose arguments "
        f"validate against the function's schema"
    )
    if kinds.count("truncated"):
        reason += f" ({kinds.count('truncated')} truncated: inconclusive)"
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("tool_calling")
@pytest.mark.launch(tool_calling=True)  # the engine's tool-call support switched on, as a user serving tools would
def test_tool_calling(probe):
    probe.record(check_tool_calling(probe.engine()))
