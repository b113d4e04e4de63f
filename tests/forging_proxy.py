"""A forging proxy in front of an honest llama-server: it drops every constraint and builds valid answers itself.

What an adversary pointed at attach mode would do to pass the constrained probes on validity alone:
- `response_format` json_schema: dropped; the answer is a minimal instance built from the schema (and the
  unconstrained answer's token log-probabilities are left out).
- `tools`: dropped; the answer is a call of the first function with arguments built from its parameter schema.
- `grammar` (GBNF, what llama-server takes for the grammar and regex probes): dropped; the answer is the first
  string of the language found by walking it token by token (the lowest allowed token id each step).
- `logit_bias`: dropped; the unbiased token ids are edited afterwards (banned ids replaced by the most boosted
  token, which also takes the first position) and the text is made from the edited ids by the server's
  /detokenize, so text and ids agree.
Everything else is forwarded as it is (one request at a time per connection, no streaming).
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

PATTERN_GUESSES = ("USD", "AAA", "abc", "a", "0", "2020-01-01")


def minimal_instance(schema: dict[str, Any]) -> Any:
    """A small value valid for `schema` (the keywords the probes use)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            return minimal_instance(schema[key][0])
    kind = schema.get("type", "object")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        properties = schema.get("properties", {})
        return {name: minimal_instance(properties.get(name, {})) for name in schema.get("required", properties)}
    if kind == "array":
        return [minimal_instance(schema.get("items", {})) for _ in range(schema.get("minItems", 0))]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1)
        return int(low) if kind == "integer" else float(low)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if "pattern" in schema:
        return next((guess for guess in PATTERN_GUESSES if re.search(schema["pattern"], guess)), "a")
    return "a" * schema.get("minLength", 1)


def grammar_instance(hf_dir: Path, gbnf: str, limit: int = 64) -> str:
    """A string of the GBNF language: from the start, the lowest allowed token id until the grammar accepts."""
    import llguidance.hf

    from harness.models.constrained import Constraint, load_reference, matcher

    tokenizer = llguidance.hf.from_tokenizer(load_reference(hf_dir)[1])  # type: ignore[arg-type]
    found = matcher(hf_dir, Constraint("gbnf", gbnf))
    text = b""
    for _ in range(limit):
        if found.is_accepting():
            break
        token = next(t for t in range(tokenizer.vocab_size) if found.validate_tokens([t]) == 1)
        found.consume_token(token)
        text += tokenizer.decode_bytes([token])
    return text.decode()


class ForgingProxy:
    """The proxy on 127.0.0.1 in its own thread; a context manager. `forged` counts the answers it made up."""

    def __init__(self, upstream: str, hf_dir: Path | None = None) -> None:
        self.upstream = upstream.rstrip("/")
        self.hf_dir = hf_dir  # the tokenizer the grammar walk uses (needed for `grammar` requests only)
        self.forged: dict[str, int] = {"json_schema": 0, "tools": 0, "logit_bias": 0, "grammar": 0}
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._answer(*proxy.forward("GET", self.path, None))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                self._answer(*proxy.handle(self.path, body))

            def _answer(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ForgingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def forward(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, bytes, str]:
        response = httpx.request(method, self.upstream + path, json=body, timeout=120)
        return response.status_code, response.content, response.headers.get("content-type", "application/json")

    def handle(self, path: str, body: dict[str, Any]) -> tuple[int, bytes, str]:
        if body.get("logit_bias"):
            return self._logit_bias(path, body)
        if (body.get("response_format") or {}).get("type") == "json_schema":
            schema = body["response_format"]["json_schema"]["schema"]
            body = {key: value for key, value in body.items() if key != "response_format"}
            self.forged["json_schema"] += 1
            return self._chat_answer(path, body, {"role": "assistant", "content": json.dumps(minimal_instance(schema))})
        if body.get("grammar") and self.hf_dir is not None:
            text = grammar_instance(self.hf_dir, body["grammar"])
            status, payload, content_type = self.forward(
                "POST", path, {key: value for key, value in body.items() if key != "grammar"}
            )
            if status != 200:
                return status, payload, content_type
            answer = json.loads(payload)
            answer["choices"][0].update(text=text, finish_reason="stop")
            self.forged["grammar"] += 1
            return status, json.dumps(answer).encode(), "application/json"
        if body.get("tools"):
            function = body["tools"][0]["function"]
            arguments = json.dumps(minimal_instance(function.get("parameters", {})))
            body = {key: value for key, value in body.items() if key not in ("tools", "tool_choice")}
            self.forged["tools"] += 1
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_0", "type": "function", "function": {"name": function["name"], "arguments": arguments}}
                ],
            }
            return self._chat_answer(path, body, message, finish="tool_calls")
        return self.forward("POST", path, body)

    def _chat_answer(
        self, path: str, body: dict[str, Any], message: dict[str, Any], finish: str = "stop"
    ) -> tuple[int, bytes, str]:
        status, payload, content_type = self.forward("POST", path, body)
        if status != 200:
            return status, payload, content_type
        answer = json.loads(payload)
        answer["choices"][0].update(message=message, finish_reason=finish)
        answer["choices"][0].pop("logprobs", None)  # the unconstrained answer's tokens would give it away
        return status, json.dumps(answer).encode(), "application/json"

    def _logit_bias(self, path: str, body: dict[str, Any]) -> tuple[int, bytes, str]:
        raw = body["logit_bias"]
        pairs = raw.items() if isinstance(raw, dict) else raw
        bias = {int(token): float(value) for token, value in pairs}
        status, payload, content_type = self.forward(
            "POST", path, {key: value for key, value in body.items() if key != "logit_bias"}
        )
        if status != 200:
            return status, payload, content_type
        answer = json.loads(payload)
        tokens = [int(token) for token in answer.get("tokens") or []]
        boosted = max(bias, key=bias.__getitem__)
        if tokens and bias[boosted] > 0:
            tokens = [boosted if bias.get(token, 0) < 0 else token for token in tokens]
            tokens[0] = boosted
            text = httpx.post(self.upstream + "/detokenize", json={"tokens": tokens}, timeout=30).json()["content"]
            answer.update(tokens=tokens, content=text)
            self.forged["logit_bias"] += 1
        return status, json.dumps(answer).encode(), "application/json"
