"""OpenAI-style API: models, completions, chat, streaming and usage, through the unmodified `openai` client."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import openai
import pytest

from harness.deadline import request_timeout_s
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Exchange, Status, Verdict
from harness.wire.client import excerpt


def _call(exchanges: list[Exchange], path: str, request: dict, action: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    try:
        result = action()
    except openai.APIError as exc:
        status = getattr(exc, "status_code", None)
        exchanges.append(
            Exchange(
                method="POST",
                path=path,
                request=request,
                status_code=status,
                response=excerpt(str(exc)),
                elapsed_s=round(time.perf_counter() - started, 4),
            )
        )
        if status is None or status >= 500:  # lost connection, timeout or server failure: an error, not a "no"
            raise
        return exc
    exchanges.append(
        Exchange(
            method="POST",
            path=path,
            request=request,
            status_code=200,
            response=excerpt(result if isinstance(result, (dict, list, str)) else repr(result)),
            elapsed_s=round(time.perf_counter() - started, 4),
        )
    )
    return result


def check_openai_api(session: EngineSession, api_root: str = "/v1") -> Verdict:
    """Each endpoint works through the official client; all -> pass, some -> partial, none -> fail."""
    client = openai.OpenAI(
        base_url=session.running.base_url + api_root, api_key="infercheck", max_retries=0, timeout=request_timeout_s()
    )
    model = session.served_model
    exchanges: list[Exchange] = []
    checks: dict[str, bool] = {}

    models = _call(exchanges, "models.list", {}, lambda: [m.id for m in client.models.list().data])
    checks["models_list"] = isinstance(models, list) and len(models) > 0

    body = {"model": model, "prompt": "the cat", "max_tokens": 8, "temperature": 0}
    completion = _call(exchanges, "completions.create", body, lambda: client.completions.create(**body).model_dump())
    checks["completions"] = isinstance(completion, dict) and bool(completion["choices"][0]["text"])
    checks["completion_usage"] = (
        isinstance(completion, dict)
        and bool(completion.get("usage"))
        and completion["usage"]["completion_tokens"] == 8
        and completion["usage"]["prompt_tokens"] > 0
    )

    chat_body = {
        "model": model,
        "messages": [{"role": "user", "content": "say something"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    chat = _call(
        exchanges,
        "chat.completions.create",
        chat_body,
        lambda: client.chat.completions.create(**chat_body).model_dump(),
    )
    checks["chat"] = (
        isinstance(chat, dict)
        and chat["choices"][0]["message"]["role"] == "assistant"
        and chat["choices"][0]["message"]["content"] is not None
    )

    stream_body = {**chat_body, "stream": True, "stream_options": {"include_usage": True}}

    def stream() -> dict:
        pieces, usage, chunks = [], None, 0
        for chunk in client.chat.completions.create(**stream_body):
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
            usage = chunk.usage.model_dump() if chunk.usage else usage
        return {"chunks": chunks, "text": "".join(pieces), "usage": usage}

    streamed = _call(exchanges, "chat.completions.create(stream)", stream_body, stream)
    checks["streaming"] = (
        isinstance(streamed, dict)
        and streamed["chunks"] > 1
        and isinstance(chat, dict)
        and streamed["text"] == chat["choices"][0]["message"]["content"]
    )
    checks["stream_usage"] = (
        isinstance(streamed, dict) and bool(streamed["usage"]) and streamed["usage"]["completion_tokens"] == 8
    )

    passed = sorted(name for name, ok in checks.items() if ok)
    failed = sorted(name for name, ok in checks.items() if not ok)
    status = Status.PASS if not failed else Status.PARTIAL if passed else Status.FAIL
    reason = f"openai client: {len(passed)}/{len(checks)} checks passed" + (
        f"; failed: {', '.join(failed)}" if failed else ""
    )
    return Verdict(status=status, reason=reason, evidence=Evidence(exchanges=exchanges, numbers={"checks": checks}))


@pytest.mark.cpu
@pytest.mark.feature("openai_api")
def test_openai_api(probe):
    probe.record(check_openai_api(probe.engine()))
