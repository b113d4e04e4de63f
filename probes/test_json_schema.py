"""JSON schema: outputs must parse and validate with `jsonschema` (formats checked too), and in `json_schema` be
what constrained greedy decoding of the served weights emits.

`json_schema` draws its property names and enum values from a fresh seed (recorded) and teacher-forces each valid
answer through the float32 reference under the schema compiled in the engine's own dialect (llama-server: llama.cpp's
json-schema-to-grammar language; harness.models.constrained): a valid answer with a token the constrained argmax
would not emit is "unexplained" and fails the probe (a server that writes its own instance of the schema); one that
leaves the dialect's grammar is reported as "dialect", with positions: partial at best.

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
import random
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import jsonschema
import pytest

from harness.models.constrained import Constraint, llamacpp_response_format, map_schema
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineHTTPError, EngineTransportError
from probes.constrained_reference import chat_prompt_ids, near_tie, reference_dir, run_seed, seeded
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
# After teacher forcing (reference_outcome), a valid answer is honoured only where the reference agrees:
# "unexplained" (a token the constrained argmax would not write: fails the probe), "dialect" (off the reference's
# copy of the engine's schema language, reported with positions: partial at best), "unchecked" (the reference
# cannot compile the schema: inconclusive).
REFERENCE_OUTCOMES = ("unexplained", "dialect", "unchecked")


@dataclass
class SchemaOutcome:
    """What one schema got: honoured, rejected, ignored, truncated or error, and why."""

    outcome: str
    detail: str
    max_tokens: int
    violated: list[str] = field(default_factory=list)  # the keywords the output broke (jsonschema's validators)
    text: str | None = None  # the answer
    generated: str | None = None  # what the engine decoded, spelled by its returned tokens (llama.cpp: a fence)
    generated_ids: list[int] | None = None  # those tokens
    cut_off: bool = False  # it ended at max_tokens
    reference: dict[str, Any] | None = None  # teacher forcing through the reference (harness.models.constrained)


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
        if session.adapter.name == "llama.cpp":  # its tokens: the content is the JSON with the fence parsed away
            request.body["logprobs"] = True
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
        generated, generated_ids = generated_tokens(response)
        outcome = SchemaOutcome(
            kind, detail, max_tokens, violated=broken, text=text, cut_off=cut_off, generated=generated,
            generated_ids=generated_ids,
        )  # fmt: skip
        if kind != "truncated":
            return outcome
    return outcome


def generated_tokens(response: dict[str, Any]) -> tuple[str | None, list[int] | None]:
    """The tokens the engine returned with their log-probabilities, and the text their bytes spell."""
    content = ((response.get("choices") or [{}])[0].get("logprobs") or {}).get("content")
    if not content or not all(isinstance(entry.get("bytes"), list) for entry in content):
        return None, None
    text = b"".join(bytes(entry["bytes"]) for entry in content).decode(errors="replace")
    ids = [entry.get("id") for entry in content]
    return text, [int(token) for token in ids] if all(isinstance(token, int) for token in ids) else None


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
    parts = [f"{counts[kind]} {kind}" for kind in ("truncated", "error", "unchecked") if counts[kind]]
    return f" ({', '.join(parts)}: inconclusive, not counted)" if parts else ""


def _word(rng: random.Random) -> str:
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 3)))


def fresh_schemas(seed: int) -> dict[str, dict[str, Any]]:
    """SCHEMAS with property names and enum values drawn from `seed` (a canned answer cannot know them)."""
    rng = seeded(seed, "json_schema")
    names: dict[str, str] = {}

    def rename(node: Any) -> Any:
        if isinstance(node, dict):
            renamed = {key: rename(value) for key, value in node.items()}
            if "properties" in node:
                renamed["properties"] = {
                    names.setdefault(k, _word(rng)): rename(v) for k, v in node["properties"].items()
                }
                renamed["required"] = [names[k] for k in node.get("required", [])]
            if "enum" in node:
                renamed["enum"] = [_word(rng) for _ in node["enum"]]
            return renamed
        return node

    return {name: rename(schema) for name, schema in SCHEMAS.items()}


# How each engine compiles a schema, where the reference can say: llama-server with llama.cpp's json-schema-to-grammar
# inside its chat parser's optional ```json fence (harness.models.constrained.llamacpp_response_format: exact where
# its JSON language is reproduced); vLLM with xgrammar, any whitespace around separators (llguidance's flexible
# whitespace is the nearest: approximate).
def reference_constraint(session: EngineSession, schema: dict[str, Any]) -> tuple[Constraint, bool]:
    """The schema compiled in the engine's own dialect, and whether the copy is exact."""
    if session.adapter.name == "llama.cpp":
        return llamacpp_response_format(schema)
    return Constraint("json_schema", schema, (("whitespace_flexible", True),)), False


def _unfenced(generated: str) -> str:
    """The JSON a fenced or bare answer holds, as llama-server's chat parser hands it back (content)."""
    inner = generated.strip()
    if inner.startswith("```json") and inner.endswith("```"):
        inner = inner[len("```json") : -len("```")].strip()
    return inner


def formatting_freedom(mismatch: dict[str, Any]) -> bool:
    """Whether an approximate copy of the engine's dialect may have allowed the reference's token where the engine's
    own grammar forbids it: whitespace first (llguidance's flexible JSON whitespace repeats, llama.cpp's `space`
    does not), a comma after the engine's whitespace (llama.cpp allows none between a value and its comma), a string
    escape (measured: vLLM 0.32 wrote another character where the reference wanted `\\`), or a digit where the
    engine ended a number (vLLM's number grammar bounds its digits)."""
    reference = str(mismatch.get("reference_text", ""))[:1]
    engine = str(mismatch.get("engine_text", "end"))[:1]
    ended = mismatch.get("engine") == "end" or engine.isspace() or (bool(engine) and engine in ',]}"')
    ended_number = reference.isdigit() and ended
    after_space = reference == "," and str(mismatch.get("previous_text", ""))[-1:].isspace()
    return reference.isspace() or reference == "\\" or ended_number or after_space


def reference_outcome(
    session: EngineSession, hf_dir: Any, tolerance: float, schema: dict[str, Any], outcome: SchemaOutcome
) -> None:
    """Teacher-force an honoured answer through the reference under the engine's schema dialect: a token the
    constrained argmax would not emit makes it "unexplained" (valid, but not constrained decoding of these weights),
    unless the dialect's copy is approximate and the mismatch is a formatting freedom it does not pin down
    (formatting_freedom);
    a token outside the dialect's language, or such whitespace, makes it "dialect" (with positions); a schema the
    reference cannot compile, "unchecked"."""
    from harness.models.constrained import teacher_force_constrained_ids, teacher_force_text

    if outcome.outcome != "honoured" or outcome.text is None:
        return
    text = outcome.text
    if outcome.generated is not None:
        if _unfenced(outcome.generated) != text.strip():
            outcome.outcome = "unexplained"
            outcome.detail = f"the returned tokens spell {outcome.generated[:80]!r}, not the answer"
            return
        text = outcome.generated
    constraint, exact = reference_constraint(session, schema)
    ids = chat_prompt_ids(hf_dir, [{"role": "user", "content": PROMPT}])
    try:
        if outcome.generated_ids is not None:  # the engine's own tokenization
            forced = teacher_force_constrained_ids(
                hf_dir, ids, outcome.generated_ids, constraint, tolerance, finished=not outcome.cut_off
            )
        else:
            forced = teacher_force_text(hf_dir, ids, text, constraint, tolerance, finished=not outcome.cut_off)
    except ValueError as exc:  # the reference cannot compile it (llguidance: unimplemented keywords)
        outcome.outcome, outcome.detail = "unchecked", str(exc).splitlines()[0][:200]
        return
    outcome.reference = {**forced.summary(), "exact_dialect": exact}
    whitespace = [entry for entry in forced.mismatches if not exact and formatting_freedom(entry)]
    unexplained = [entry for entry in forced.mismatches if entry not in whitespace]
    if unexplained:
        outcome.outcome = "unexplained"
        outcome.detail = f"valid, but not the reference's constrained argmax: {unexplained[0]}"
    elif whitespace or forced.disallowed or forced.accepted is False:
        outcome.outcome = "dialect"
        where = (forced.disallowed + whitespace)[:3]
        outcome.detail = f"off the reference's copy of the {session.adapter.name} schema dialect at {where}"


def check_json_schema(session: EngineSession) -> Verdict:
    """Every conclusive output valid and what constrained greedy decoding of the reference emits -> pass; valid
    output the reference does not emit (forged) -> fail; some honoured, others ignored or off-dialect -> partial;
    none (ignored or rejected) -> fail."""
    hf_dir = reference_dir(session)
    seed = run_seed()
    tolerance, derivation = near_tie(session)
    schemas = fresh_schemas(seed)
    outcomes = {name: schema_outcome(session, schema) for name, schema in schemas.items()}
    for name, outcome in outcomes.items():
        reference_outcome(session, hf_dir, tolerance, schemas[name], outcome)
    counts = Counter(outcome.outcome for outcome in outcomes.values())
    if counts["unexplained"]:
        first = next(name for name, outcome in outcomes.items() if outcome.outcome == "unexplained")
        return Verdict(
            status=Status.FAIL,
            reason=f"{counts['unexplained']}/{len(outcomes)} answers validate but are not constrained greedy decoding "
            f"of the served weights (seed {seed}); {first}: {outcomes[first].detail[:300]}",
            evidence=Evidence(
                numbers={
                    "seed": seed,
                    "schemas": schemas,
                    "outcomes": {n: asdict(o) for n, o in outcomes.items()},
                    **derivation,
                }
            ),
        )
    off_dialect = counts.pop("dialect", 0)  # valid, reported with positions: partial at best, never hidden
    counts["honoured"] += off_dialect
    status = _verdict_status(counts)
    if status is Status.PASS and off_dialect:
        status = Status.PARTIAL
    conclusive = counts["honoured"] + counts["rejected"] + counts["ignored"]
    reason = f"{counts['honoured']}/{conclusive} conclusive outputs validate against their schema"
    if counts["rejected"]:
        reason += f"; {counts['rejected']} request(s) rejected"
    elif status is Status.FAIL:
        reason = f"schema accepted but not honoured: 0/{conclusive} outputs validate"
    elif status is Status.ERROR:
        reason = "no schema answer was conclusive"
    reason += _inconclusive_note(counts)
    positions = sum((outcome.reference or {}).get("positions", 0) for outcome in outcomes.values())
    agreed = sum((outcome.reference or {}).get("agreed", 0) for outcome in outcomes.values())
    reason += f"; {agreed}/{positions} tokens are the reference's constrained argmax (seed {seed})"
    return Verdict(
        status=status,
        reason=reason,
        evidence=Evidence(
            numbers={
                "seed": seed,
                "schemas": schemas,
                "positions": positions,
                "agreed": agreed,
                "outcomes": {name: asdict(outcome) for name, outcome in outcomes.items()},
                "counts": {kind: counts[kind] for kind in OUTCOMES},
                "budgets": list(BUDGETS),
                **derivation,
            }
        ),
    )


def keyword_table(outcomes: dict[str, SchemaOutcome], schemas: dict[str, dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per keyword: how many schemas using it got each outcome, and how often an output broke it."""
    table: dict[str, dict[str, int]] = {}
    for name, outcome in outcomes.items():
        for keyword in sorted(keywords_of(schemas[name])):
            kinds = (*OUTCOMES, *REFERENCE_OUTCOMES)
            row = table.setdefault(keyword, {"schemas": 0, **{kind: 0 for kind in kinds}, "broken": 0})
            row["schemas"] += 1
            row[outcome.outcome] += 1
            row["broken"] += keyword in outcome.violated
    return table


def fresh_corpus(seed: int) -> dict[str, dict[str, Any]]:
    """The corpus with its property names and string enum and const values drawn from `seed` (a canned answer
    cannot know them); each name maps to one fresh word (distinct words, so $defs and required stay consistent);
    numbers, patterns, formats, bounds and $defs names are the corpus's own."""
    rng = seeded(seed, "json_schema_coverage")
    fresh: dict[Any, str] = {}

    def word_for(key: Any) -> str:
        while key not in fresh:
            candidate = _word(rng)
            if candidate not in fresh.values():
                fresh[key] = candidate
        return fresh[key]

    def value(item: Any) -> Any:
        return word_for(("value", item)) if isinstance(item, str) else item

    def rename(node: dict[str, Any], renamed: dict[str, Any]) -> dict[str, Any]:
        if isinstance(node.get("properties"), dict):
            renamed["properties"] = {word_for(("name", k)): v for k, v in renamed["properties"].items()}
        if isinstance(node.get("required"), list):
            renamed["required"] = [word_for(("name", k)) for k in node["required"]]
        if isinstance(node.get("enum"), list):
            renamed["enum"] = [value(item) for item in node["enum"]]
        if "const" in node:
            renamed["const"] = value(node["const"])
        return renamed

    return {name: map_schema(schema, rename) for name, schema in CORPUS.items()}


def check_json_schema_coverage(session: EngineSession, schemas: dict[str, dict[str, Any]] | None = None) -> Verdict:
    """The share of the corpus (fresh names and values from the run seed) honoured, rejected, ignored; per keyword
    in evidence.numbers["keywords"]. Honoured means valid and what constrained greedy decoding of the reference
    emits: one valid answer the reference would not write (unexplained) fails the probe; answers off the
    reference's copy of the engine's dialect count as honoured but make a pass partial."""
    hf_dir = reference_dir(session)
    seed = run_seed()
    tolerance, derivation = near_tie(session)
    schemas = fresh_corpus(seed) if schemas is None else schemas
    outcomes = _all_outcomes(session, schemas)
    for name, outcome in outcomes.items():
        reference_outcome(session, hf_dir, tolerance, schemas[name], outcome)
    counts = Counter(outcome.outcome for outcome in outcomes.values())
    status = _verdict_status(Counter({**counts, "honoured": counts["honoured"] + counts["dialect"]}))
    if counts["unexplained"]:
        status = Status.FAIL
    elif status is Status.PASS and counts["dialect"]:
        status = Status.PARTIAL
    total = len(schemas)
    backend = session.adapter.structured_output_backend(session.running)
    positions = sum((outcome.reference or {}).get("positions", 0) for outcome in outcomes.values())
    agreed = sum((outcome.reference or {}).get("agreed", 0) for outcome in outcomes.values())
    reason = (
        f"{backend}: {counts['honoured']}/{total} schemas honoured (valid and the reference's constrained argmax), "
        f"{counts['dialect']} off the reference's copy of the dialect, {counts['unexplained']} valid but not the "
        f"reference's argmax, {counts['rejected']} rejected (4xx), {counts['ignored']} silently ignored"
        + _inconclusive_note(counts)
        + f"; {agreed}/{positions} tokens agree (seed {seed})"
    )
    if not counts["honoured"] + counts["dialect"] + counts["unexplained"] + counts["rejected"] + counts["ignored"]:
        reason = f"{backend}: no schema answer was conclusive" + _inconclusive_note(counts)
    keywords = keyword_table(outcomes, schemas)
    not_honoured = sorted(keyword for keyword, row in keywords.items() if row["honoured"] < row["schemas"])
    kinds = (*OUTCOMES, *REFERENCE_OUTCOMES)
    return Verdict(
        status=status,
        reason=reason,
        evidence=Evidence(
            numbers={
                "backend": backend,
                "seed": seed,
                "schemas": total,
                "positions": positions,
                "agreed": agreed,
                "counts": {kind: counts[kind] for kind in kinds},
                "shares": {kind: round(counts[kind] / total, 3) for kind in kinds},
                "keywords": keywords,
                "keywords_not_always_honoured": not_honoured,
                "budgets": list(BUDGETS),
                "fresh_schemas": schemas,
                "outcomes": {name: asdict(outcome) for name, outcome in outcomes.items()},
                **derivation,
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
