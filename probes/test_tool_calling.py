"""Tool calling: an OpenAI `tools` request with tool_choice="required" and strict functions returns tool
calls naming a declared function, with arguments that validate against that function's parameter schema, and the
call text is what constrained greedy decoding of the served weights writes: teacher-forced through the float32
reference under the required-call grammar (`required_calls_lark`), every token the constrained argmax. Function
names and argument values are drawn from a fresh recorded seed. A valid call the reference would not write (a server
that makes one up from the schema) fails.

The synthesized models know nothing of tools, so only an engine that constrains its output to a tool call
(as "required" asks) can pass. Their chat template is a tool-capable one (Hermes style, `<tool_call>` JSON),
as a real tool-using checkpoint's is, so the engine has a tool-call format to apply. A request the engine
refuses (4xx) while the same chat request without tools works is refused: fail. A 5xx is an error, whatever the
control answers: the engine failed, which says nothing about the feature (llama-server started with --no-jinja
answers HTTP 500 "tools param requires --jinja flag": an error naming that message). An answer
cut off by max_tokens is retried with a larger budget and, still cut off, is inconclusive: it may be inside a
tool call, or in text the engine lets come first (llama-server's grammar for "required" allows content
before its call marker). Only an answer that ended without a call is "no tool call".
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineHTTPError
from harness.wire.request import ApiRequest
from probes.constrained_reference import chat_prompt_ids, near_tie, reference_dir, run_seed, seeded


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


def required_calls_lark(tools: list[dict[str, Any]]) -> str:
    """tool_choice="required" as vLLM 0.32's hermes structural tag constrains it (tool_parsers/structural_tag_registry
    `_hermes_tool_tags`): one or more `<tool_call>` tags, each `{"name": "<function>", "arguments": ` + the function's
    parameters as JSON (any whitespace) + `}`, with or without the newlines around it, as an llguidance lark grammar.
    Hermes-style templates (the synthesized models', llama-server's format for them) write calls the same way."""
    alternatives, rules = [], []
    for index, tool in enumerate(tools):
        schema = {**tool["function"]["parameters"], "x-guidance": {"whitespace_flexible": True}}
        rules.append(f"args{index}: %json {json.dumps(schema)}")
        for begin, end in (("<tool_call>\n", "}\n</tool_call>"), ("<tool_call>", "}</tool_call>")):
            head = json.dumps(begin + '{"name": "' + tool["function"]["name"] + '", "arguments": ')
            alternatives.append(f"{head} args{index} {json.dumps(end)}")
    return "start: tag+\ntag: " + "\n    | ".join(alternatives) + "\n" + "\n".join(rules) + "\n"


def call_reference(
    session: EngineSession, prompt: str, tools: list[dict[str, Any]], response: dict[str, Any], tolerance: float
) -> dict[str, Any]:
    """Teacher-force the engine's call text through the reference under the required-call constraint.

    The generated text is the token ids the engine returns (vLLM: return_token_ids); where it returns none, the calls
    are written back as the template writes them, after the answer's content."""
    from harness.models.constrained import Constraint, load_reference, teacher_force_text

    hf_dir = reference_dir(session)
    tokenizer = load_reference(hf_dir)[1]
    ids = chat_prompt_ids(hf_dir, [{"role": "user", "content": prompt}], tools)
    token_ids = response["choices"][0].get("token_ids")
    engine_prompt = response.get("prompt_token_ids") or []
    prompt_source = "the chat template"
    rendered = tokenizer.decode(engine_prompt)
    if prompt in rendered and all(tool["function"]["name"] in rendered for tool in tools):
        # the engine's own rendering of the tools (vLLM dumps its parsed request: other key order, more fields)
        ids, prompt_source = list(engine_prompt), "the engine's prompt token ids (they hold the prompt and the tools)"
    if token_ids:
        text = tokenizer.decode(token_ids, skip_special_tokens=True)
        source = "token ids"
    else:
        content = session.adapter.completion_text(response)[0] or ""
        ids = ids + list(tokenizer(content, add_special_tokens=False)["input_ids"])
        calls = session.adapter.parse_tool_calls(response)
        text = "".join(
            f'<tool_call>\n{{"name": "{call.name}", "arguments": {call.arguments}}}\n</tool_call>' for call in calls
        )
        source = "the calls written as the template writes them"
    forced = teacher_force_text(hf_dir, ids, text, Constraint("lark", required_calls_lark(tools)), tolerance, False)
    return {"source": source, "prompt_source": prompt_source, "text": text[:300], **forced.summary()}


def _ask(session: EngineSession, prompt: str, tools: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """One prompt's outcome, retrying an answer cut off by max_tokens."""
    outcome: dict[str, Any] = {}
    for max_tokens in BUDGETS:
        request = session.adapter.tool_call_request(session.served_model, prompt, tools, max_tokens)
        _, response = session.client.send(ApiRequest(request.path, {**request.body, "return_token_ids": True}))
        kind, detail = _judge_calls(session, response, tools)
        if kind == "valid":
            outcome["reference"] = call_reference(session, prompt, tools, response, tolerance)
            if not outcome["reference"]["agrees"]:
                kind = "unexplained"
                first = (outcome["reference"]["mismatches"] or outcome["reference"]["disallowed"] or [{}])[0]
                detail = f"valid, but not the reference's constrained argmax at {first}: {detail}"[:400]
        outcome = {
            **outcome,
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
    """The tools request failed: a refusal (4xx) when the same chat without tools works, else an error."""
    if not exc.rejected:
        raise exc  # 5xx: the engine failed (an error verdict), even when the control answers 200
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
    reference_dir(session)  # not measurable without the float32 reference
    seed = run_seed()
    tolerance, derivation = near_tie(session)
    for prompt in PROMPTS:
        tools = declared_tools(seeded(seed, prompt).randbytes(3).hex())
        try:
            outcomes[prompt] = _ask(session, prompt, tools, tolerance)
        except EngineHTTPError as exc:  # _refusal tells a refusal (4xx, control works) from an error
            return _refusal(
                session, session.adapter.tool_call_request(session.served_model, prompt, tools, BUDGETS[0]), exc
            )
    kinds = [outcome["outcome"] for outcome in outcomes.values()]
    valid, conclusive = kinds.count("valid"), len(kinds) - kinds.count("truncated")
    numbers = {"seed": seed, "outcomes": outcomes, "valid": valid, "conclusive": conclusive, **derivation}
    if "unexplained" in kinds:
        return Verdict(
            status=Status.FAIL,
            reason=f"{kinds.count('unexplained')}/{len(kinds)} tool calls validate but are not constrained greedy "
            f"decoding of the served weights (seed {seed}): "
            + next(o["detail"] for o in outcomes.values() if o["outcome"] == "unexplained")[:300],
            evidence=Evidence(numbers=numbers),
        )
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
    forced = [outcome["reference"] for outcome in outcomes.values() if "reference" in outcome]
    if forced:
        numbers["positions"] = sum(entry["positions"] for entry in forced)
        numbers["agreed"] = sum(entry["agreed"] + len(entry["near_ties"]) for entry in forced)
        reason += f"; {numbers['agreed']}/{numbers['positions']} call tokens are the reference's constrained argmax"
    reason += f" (seed {seed})"
    if kinds.count("truncated"):
        reason += f" ({kinds.count('truncated')} truncated: inconclusive)"
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


@pytest.mark.cpu
@pytest.mark.feature("tool_calling")
@pytest.mark.launch(tool_calling=True)  # the engine's tool-call support switched on, as a user serving tools would
def test_tool_calling(probe):
    probe.record(check_tool_calling(probe.engine()))
