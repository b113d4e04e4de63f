"""Constrained greedy decoding of the float32 reference, checked against an engine's output by teacher forcing.

An engine that decodes greedily under a constraint (a JSON schema, a grammar, a regex, a logit bias) emits, at
every position, the token with the highest logit among those the constraint allows. The weights are the
reference's, so that token is known: run the reference over the engine's own output, ask a grammar matcher
(llguidance) for the allowed set at each position, add the bias, and compare. A server that drops the constraint
and builds a valid answer itself (a minimal instance of the schema, a canned string, rewritten token ids) emits
tokens the constrained argmax does not, and the check says where.

Near ties: where the engine's token is not the reference's argmax but its logit is within `tolerance` of it, the
position counts as a near tie (kernel rounding can swap the two), not a mismatch.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

GRAMMAR_KINDS = ("json_schema", "lark", "gbnf", "regex")
# llama.cpp's json-schema-to-grammar: `space ::= | " " | "\n"{1,2} [ \t]{0,20}` after every value and separator
LLAMACPP_WHITESPACE = r"(?: |\n{1,2}[ \t]{0,20})?"


@dataclass(frozen=True)
class Constraint:
    """What the engine was asked to follow: `kind` one of GRAMMAR_KINDS, `source` the schema (dict) or text."""

    kind: str
    source: Any
    json_options: tuple[tuple[str, Any], ...] = ()  # llguidance JSON options (the engine's whitespace dialect)


@dataclass
class ForcedCheck:
    """Teacher forcing of one engine output: what agreed with the reference's constrained argmax and what not."""

    positions: int = 0  # positions checked
    informative: int = 0  # positions where the constraint left more than one token
    agreed: int = 0  # engine token == reference constrained argmax
    near_ties: list[dict[str, Any]] = field(default_factory=list)  # engine token within tolerance of the argmax
    mismatches: list[dict[str, Any]] = field(default_factory=list)  # allowed, but not the argmax (beyond tolerance)
    disallowed: list[dict[str, Any]] = field(default_factory=list)  # a token the constraint forbids
    accepted: bool | None = None  # whether the constraint accepts the whole output (None: no constraint)
    stopped_early: bool = False  # the engine stopped where the reference continues (beyond tolerance)

    @property
    def agrees(self) -> bool:
        return not self.mismatches and not self.disallowed and self.accepted is not False and not self.stopped_early

    def summary(self) -> dict[str, Any]:
        numbers = asdict(self)
        numbers["agrees"] = self.agrees
        for key in ("near_ties", "mismatches", "disallowed"):
            numbers[key] = numbers[key][:5]
        return numbers


@lru_cache(maxsize=2)
def load_reference(hf_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The float32 checkpoint at `hf_dir` and its tokenizer (loaded once per run)."""
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(hf_dir)


@lru_cache(maxsize=2)
def _ll_tokenizer(hf_dir: Path) -> Any:
    import llguidance.hf

    return llguidance.hf.from_tokenizer(load_reference(hf_dir)[1])  # type: ignore[arg-type]


def _grammar(constraint: Constraint) -> str:
    import llguidance
    from llguidance.gbnf_to_lark import gbnf_to_lark

    if constraint.kind == "json_schema":
        return llguidance.LLMatcher.grammar_from_json_schema(
            constraint.source,
            defaults=dict(constraint.json_options),  # type: ignore[arg-type]
        )
    if constraint.kind == "regex":
        return llguidance.LLMatcher.grammar_from_regex(constraint.source)
    lark = gbnf_to_lark(constraint.source) if constraint.kind == "gbnf" else constraint.source
    return llguidance.LLMatcher.grammar_from_lark(lark)


def matcher(hf_dir: Path, constraint: Constraint) -> Any:
    """A fresh llguidance matcher of `constraint` over the reference's vocabulary."""
    import llguidance

    found = llguidance.LLMatcher(_ll_tokenizer(hf_dir), _grammar(constraint))
    if found.is_error():
        raise ValueError(f"the reference cannot compile the {constraint.kind} constraint: {found.get_error()}")
    return found


def _allowed(found: Any, vocab: int, eos: set[int]) -> np.ndarray:
    """Every token the constraint lets come next, byte for byte (llguidance's own mask keeps only the canonical
    tokenization of forced text; an engine's grammar sampler, llama.cpp's for one, allows any token that fits);
    the end-of-generation tokens where the constraint accepts."""
    allowed = np.array([found.validate_tokens([token]) == 1 for token in range(vocab)], dtype=bool)
    if found.is_accepting():
        allowed[sorted(eos)] = True
    return allowed


def end_tokens(hf_dir: Path) -> set[int]:
    """The tokens that end a generation: EOS and the chat template's end-of-turn marker (llama.cpp's EOT)."""
    model, tokenizer = load_reference(hf_dir)
    ends = {int(token) for token in np.atleast_1d(model.generation_config.eos_token_id or tokenizer.eos_token_id)}
    end_of_turn = tokenizer.convert_tokens_to_ids("<|end|>")
    return ends | ({end_of_turn} if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id else set())


def _biased(logits: torch.Tensor, bias: dict[int, float] | None) -> torch.Tensor:
    logits = logits.clone()
    for token, value in (bias or {}).items():
        logits[..., token] += value
    return logits


@torch.no_grad()
def teacher_force_ids(
    hf_dir: Path,
    prompt_ids: list[int],
    engine_ids: list[int],
    tolerance: float,
    bias: dict[int, float] | None = None,
) -> ForcedCheck:
    """Each of `engine_ids` (the engine's tokens after `prompt_ids`) against the argmax of the reference's logits
    plus `bias` at that position (one forward pass over the whole sequence)."""
    model, tokenizer = load_reference(hf_dir)
    check = ForcedCheck()
    if not engine_ids:
        return check
    logits = model(input_ids=torch.tensor([prompt_ids + engine_ids])).logits[0].float()
    logits = _biased(logits[len(prompt_ids) - 1 : len(prompt_ids) - 1 + len(engine_ids)], bias)
    for position, (row, token) in enumerate(zip(logits, engine_ids)):
        _judge(check, position, row, token, None, tolerance, tokenizer)
    return check


def _judge(
    check: ForcedCheck,
    position: int,
    row: torch.Tensor,
    token: int,
    allowed: np.ndarray | None,
    tolerance: float,
    tokenizer: PreTrainedTokenizerBase,
    previous: int | None = None,
) -> None:
    """Count one position: agreed, near tie, mismatch or disallowed (`previous`: the token before it)."""
    check.positions += 1
    if allowed is not None:
        check.informative += int(allowed.sum()) > 1
        row = row.masked_fill(~torch.from_numpy(allowed), float("-inf"))
    else:
        check.informative += 1
    best = int(torch.argmax(row))
    gap = round(float(row[best] - row[token]), 4)
    entry: dict[str, Any] = {
        "position": position,
        "engine": token,
        "engine_text": tokenizer.decode([token]),
        "reference": best,
        "reference_text": tokenizer.decode([best]),
        "gap": gap,
    }
    if previous is not None:
        entry["previous_text"] = tokenizer.decode([previous])
    if token == best:
        check.agreed += 1
    elif allowed is not None and not allowed[token]:
        check.disallowed.append(entry)
    elif gap <= tolerance:
        check.near_ties.append(entry)
    else:
        check.mismatches.append(entry)


def _judge_end(
    check: ForcedCheck,
    found: Any,
    row: torch.Tensor,
    allowed: np.ndarray,
    eos: set[int],
    position: int,
    tolerance: float,
    tokenizer: PreTrainedTokenizerBase,
    finished: bool,
) -> ForcedCheck:
    """Where the output ends: the constraint must accept there, and, where the engine ended it (`finished`),
    ending must be the reference's constrained choice too (within `tolerance`)."""
    check.accepted = bool(found.is_accepting())
    if finished and check.accepted:
        masked = row.masked_fill(~torch.from_numpy(allowed), float("-inf"))
        best = int(torch.argmax(masked))
        stop_gap = min((float(masked[best] - masked[token]) for token in eos if allowed[token]), default=None)
        check.stopped_early = best not in eos and (stop_gap is None or stop_gap > tolerance)
        if check.stopped_early:
            check.mismatches.append(
                {
                    "position": position,
                    "engine": "end",
                    "reference": best,
                    "reference_text": tokenizer.decode([best]),
                    "gap": stop_gap,
                }
            )
    return check


@torch.no_grad()
def teacher_force_constrained_ids(
    hf_dir: Path,
    prompt_ids: list[int],
    engine_ids: list[int],
    constraint: Constraint,
    tolerance: float,
    finished: bool = True,
) -> ForcedCheck:
    """The engine's own tokens (its tokenization, where it returns them) under `constraint`: each must be the
    reference's constrained argmax (or within `tolerance` of it), and the output must end where the constraint
    accepts (`finished`: where the reference ends it too). A token the constraint forbids ends the check."""
    model, tokenizer = load_reference(hf_dir)
    found = matcher(hf_dir, constraint)
    vocab = model.config.vocab_size
    eos = end_tokens(hf_dir)
    if engine_ids and engine_ids[-1] in eos:  # the end token the engine stopped on (llama-server returns it)
        engine_ids, finished = engine_ids[:-1], True
    check = ForcedCheck()
    logits = model(input_ids=torch.tensor([prompt_ids + engine_ids])).logits[0].float()
    for position in range(len(engine_ids) + 1):
        row = logits[len(prompt_ids) - 1 + position]
        allowed = _allowed(found, vocab, eos)
        if position == len(engine_ids):
            return _judge_end(check, found, row, allowed, eos, position, tolerance, tokenizer, finished)
        token, previous = engine_ids[position], engine_ids[position - 1] if position else None
        _judge(check, position, row, token, allowed, tolerance, tokenizer, previous)
        if not allowed[token] or not found.consume_token(token):
            check.accepted = False
            return check
    return check


@torch.no_grad()
def teacher_force_text(
    hf_dir: Path,
    prompt_ids: list[int],
    text: str,
    constraint: Constraint,
    tolerance: float,
    finished: bool = True,
) -> ForcedCheck:
    """Walk the engine's `text` token by token under `constraint`: at each position the reference's constrained
    argmax must continue the text (or a token within `tolerance` of it that does). Where none of the allowed tokens
    continues the text, the token the text continues with is disallowed and the walk ends. `finished`: the engine
    ended the output itself (then the constraint must accept there, and ending must be the reference's choice too);
    False (cut off by max_tokens): the walk checks what came."""
    model, tokenizer = load_reference(hf_dir)
    found = matcher(hf_dir, constraint)
    vocab = model.config.vocab_size
    pieces = [_ll_tokenizer(hf_dir).decode_bytes([token]) for token in range(vocab)]
    eos = end_tokens(hf_dir)
    rest = text.encode()
    check = ForcedCheck()
    output = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    position = 0
    previous: int | None = None
    while True:
        row = output.logits[0, -1].float()
        allowed = _allowed(found, vocab, eos)
        masked = row.masked_fill(~torch.from_numpy(allowed), float("-inf"))
        if not rest:
            return _judge_end(check, found, row, allowed, eos, position, tolerance, tokenizer, finished)
        continuing = [token for token in range(vocab) if pieces[token] and rest.startswith(pieces[token])]
        options = [token for token in continuing if allowed[token] and token not in eos]
        if not options:  # nothing the constraint allows continues the text
            check.positions += 1
            check.disallowed.append({"position": position, "engine_text": rest[:40].decode(errors="replace")})
            check.accepted = False
            return check
        best = int(torch.argmax(masked))
        token = best if best in options else max(options, key=lambda t: float(masked[t]))
        _judge(check, position, row, token, allowed, tolerance, tokenizer, previous)
        if not found.consume_token(token):
            check.accepted = False
            return check
        previous = token
        rest = rest[len(pieces[token]) :]
        position += 1
        output = model(input_ids=torch.tensor([[token]]), past_key_values=output.past_key_values, use_cache=True)


@torch.no_grad()
def constrained_greedy(
    hf_dir: Path,
    prompt_ids: list[int],
    max_tokens: int,
    constraint: Constraint | None = None,
    bias: dict[int, float] | None = None,
    stop_at_eos: bool = True,
) -> list[int]:
    """The reference's own greedy tokens under `constraint` and `bias` (what an honest engine emits)."""
    model, _ = load_reference(hf_dir)
    found = matcher(hf_dir, constraint) if constraint else None
    vocab = model.config.vocab_size
    eos = end_tokens(hf_dir)
    output = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
    tokens: list[int] = []
    for _ in range(max_tokens):
        row = _biased(output.logits[0, -1].float(), bias)
        if found is not None:
            row = row.masked_fill(~torch.from_numpy(_allowed(found, vocab, eos)), float("-inf"))
        token = int(torch.argmax(row))
        if stop_at_eos and token in eos:
            break
        tokens.append(token)
        if found is not None and (not found.consume_token(token) or found.is_stopped()):
            break
        output = model(input_ids=torch.tensor([[token]]), past_key_values=output.past_key_values, use_cache=True)
    return tokens


def draw_seed() -> int:
    """A fresh run seed (recorded in the evidence: the run can be reproduced from it, not replayed)."""
    return random.SystemRandom().randrange(2**32)


class DialectUnsupported(ValueError):
    """A schema keyword the llama.cpp dialect below does not reproduce."""


LLAMACPP_CHAR = r'[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})'
LLAMACPP_PRIMITIVES = {
    "boolean": '("true" | "false")',
    "null": '"null"',
    "integer": '("-"? ([0] | [1-9] [0-9]{0,15}))',
    "number": '("-"? ([0] | [1-9] [0-9]{0,15})) ("." [0-9]{1,16})? ([eE] [-+]? ([0] | [1-9] [0-9]{0,15}))?',
    "string": '"\\"" char* "\\""',
}
MAX_ENUMERATED_INTEGERS = 1000


def _gbnf_literal(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def _repeat(item: str, low: int, high: int | None, separator: str | None = None) -> str:
    """llama.cpp's _build_repetition: `item` low..high times, `separator` between."""
    if high == 0:
        return ""
    if low == 0 and high == 1:
        return f"({item})?"
    if separator is None:
        return f"({item})*" if low == 0 and high is None else f"({item}){{{low},{'' if high is None else high}}}"
    rest = _repeat(f"{separator} {item}", max(low - 1, 0), None if high is None else high - 1)
    return f"{item} {rest}" if low > 0 else f"({item} {rest})?"


def llamacpp_json_gbnf(schema: dict[str, Any]) -> str:
    """The language llama-server's json-schema-to-grammar builds for `schema` (llama.cpp's rules: objects
    `"{" space kv ("," space kv)* space "}"` with `"key" space ":" space value`, required properties in order, no
    space after a value, `space ::= | " " | "\\n"{1,2} [ \\t]{0,20}`), as GBNF; for the keywords the json_schema
    probe uses (enum, const, object with required properties, array of items with min/maxItems, string with
    min/maxLength, bounded integers, boolean, null, number). Other keywords raise DialectUnsupported."""

    def visit(node: dict[str, Any]) -> str:
        if "const" in node:
            return _gbnf_literal(json.dumps(node["const"]))
        if "enum" in node:
            return "(" + " | ".join(_gbnf_literal(json.dumps(value)) for value in node["enum"]) + ")"
        kind = node.get("type")
        if kind == "object" and "properties" in node:
            required = node.get("required", [])
            if set(node["properties"]) != set(required) or node.get("additionalProperties", True) is not False:
                raise DialectUnsupported("optional or additional properties")
            pairs = [
                f'{_gbnf_literal(json.dumps(name))} space ":" space {visit(node["properties"][name])}'
                for name in sorted(required, key=list(node["properties"]).index)
            ]
            return '"{" space ' + ' "," space '.join(pairs) + ' space "}"'
        if kind == "array" and isinstance(node.get("items"), dict):
            items = _repeat(visit(node["items"]), node.get("minItems", 0), node.get("maxItems"), '"," space')
            return f'"[" space {items} space "]"'
        if kind == "string" and set(node) <= {"type", "minLength", "maxLength"}:
            if len(node) == 1:
                return LLAMACPP_PRIMITIVES["string"]
            return '"\\"" ' + _repeat("char", node.get("minLength", 0), node.get("maxLength")) + ' "\\""'
        if kind == "integer" and set(node) <= {"type", "minimum", "maximum"}:
            if len(node) == 1:
                return LLAMACPP_PRIMITIVES["integer"]
            low, high = node.get("minimum"), node.get("maximum")
            if low is None or high is None or high - low > MAX_ENUMERATED_INTEGERS:
                raise DialectUnsupported("open or wide integer range")
            return "(" + " | ".join(_gbnf_literal(str(value)) for value in range(int(low), int(high) + 1)) + ")"
        if kind in LLAMACPP_PRIMITIVES and set(node) == {"type"}:
            return LLAMACPP_PRIMITIVES[kind]
        raise DialectUnsupported(f"schema {json.dumps(node)[:80]}")

    root = visit(schema)
    return f'root ::= {root}\nspace ::= | " " | "\\n"{{1,2}} [ \\t]{{0,20}}\nchar ::= {LLAMACPP_CHAR}\n'


# llama-server (b11434) builds the grammar of a chat request's response_format with its chat parser
# (common/chat-auto-parser-generator.cpp): whitespace, then the schema's JSON either fenced as ```json ... ``` or
# bare, with whitespace around it; the reply's content is the JSON alone (the fence and whitespace parsed away).
LLAMACPP_FENCED = 'space space ("```json" space {json} space "```" | space {json} space)'
LLAMACPP_DIGITS = 16  # llama.cpp's integral-part: at most 16 digits, bounded or not


def map_schema(node: Any, adjust: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]) -> Any:
    """`node` rebuilt bottom-up: each object's values mapped first, then `adjust(original, rebuilt)` of it."""
    if isinstance(node, list):
        return [map_schema(item, adjust) for item in node]
    if not isinstance(node, dict):
        return node
    return adjust(node, {key: map_schema(value, adjust) for key, value in node.items()})


def _capped_integers(node: Any) -> Any:
    """`node` with every integer schema bounded to llama.cpp's 16 digits where it leaves a side open."""
    return map_schema(node, _cap_integer)


def _cap_integer(_original: dict[str, Any], capped: dict[str, Any]) -> dict[str, Any]:
    if capped.get("type") == "integer":
        limit = 10**LLAMACPP_DIGITS - 1
        if "minimum" not in capped and "exclusiveMinimum" not in capped:
            capped["minimum"] = -limit
        if "maximum" not in capped and "exclusiveMaximum" not in capped:
            capped["maximum"] = limit
    return capped


def llamacpp_response_format(schema: dict[str, Any]) -> tuple[Constraint, bool]:
    """The language llama-server's chat endpoint decodes a json_schema response_format in, and whether it is
    exact: llama.cpp's own JSON language (llamacpp_json_gbnf) where it reproduces the schema; otherwise llguidance's
    JSON of the schema with llama.cpp's whitespace and integer digits (an approximation: a mismatch there may be
    the dialect's)."""
    try:
        inner = llamacpp_json_gbnf(schema).replace("root ::= ", "json ::= ", 1)
        return Constraint("gbnf", f"root ::= {LLAMACPP_FENCED.format(json='json')}\n{inner}"), True
    except DialectUnsupported:
        pass
    options = {"whitespace_flexible": True, "whitespace_pattern": LLAMACPP_WHITESPACE}
    lark = (
        f"start: {LLAMACPP_FENCED.format(json='json').replace('space', 'sp')}\n"
        "sp: SP?\n"
        f"SP: /{LLAMACPP_WHITESPACE[3:-2]}/\n"
        f"json: %json {json.dumps({**_capped_integers(schema), 'x-guidance': options})}\n"
    )
    return Constraint("lark", lark), False
