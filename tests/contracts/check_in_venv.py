"""Run inside an engine's own virtual environment: parse commands with its argument parser and read request
bodies with its request models. stdin: {"engine", "commands": [argv...], "bodies": [{"path", "body"}]};
stdout: one JSON object with a verdict per command and body, and `unavailable` (what could not be imported).

A body is refused when the engine's model rejects it, or when it carries a field the model does not define:
vLLM and SGLang accept unknown fields and ignore them (the request then runs unconstrained), so an unknown
field is as wrong as a rejected one.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from typing import Any


def _parse(parser: Any, argv: list[str]) -> dict[str, Any]:
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parser.parse_args(argv)
    except SystemExit:
        return {"ok": False, "error": err.getvalue().strip().splitlines()[-1:] or ["rejected"]}
    except Exception as exc:  # the engine's own type converters (JSON configs)
        return {"ok": False, "error": [f"{type(exc).__name__}: {exc}"]}
    return {"ok": True}


def _body(models: dict[str, Any], path: str, body: dict[str, Any]) -> dict[str, Any]:
    model = models.get(path)
    if model is None:
        return {"ok": None, "error": [f"no request model for {path} here"]}
    fields = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    unknown = sorted(set(body) - fields)
    try:
        model.model_validate(body)
    except Exception as exc:
        return {"ok": False, "error": [str(exc).splitlines()[0], *str(exc).splitlines()[1:3]], "unknown": unknown}
    return {"ok": not unknown, "unknown": unknown, "error": [f"unknown field(s) {unknown}"] if unknown else []}


def vllm() -> tuple[Any, dict[str, Any]]:
    from vllm.entrypoints.launchers.cli_args import make_arg_parser
    from vllm.entrypoints.openai.chat_completion.protocol import ChatCompletionRequest
    from vllm.entrypoints.openai.completion.protocol import CompletionRequest
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = make_arg_parser(FlexibleArgumentParser())
    return parser, {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatCompletionRequest}


def sglang() -> tuple[Any, dict[str, Any]]:
    import argparse

    from sglang.srt.entrypoints.openai.protocol import ChatCompletionRequest, CompletionRequest
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    return parser, {"/v1/completions": CompletionRequest, "/v1/chat/completions": ChatCompletionRequest}


def main() -> None:
    task = json.load(sys.stdin)
    parser, models = {"vllm": vllm, "sglang": sglang}[task["engine"]]()
    print(
        json.dumps(
            {
                "commands": [_parse(parser, argv) for argv in task["commands"]],
                "bodies": [_body(models, item["path"], item["body"]) for item in task["bodies"]],
            }
        )
    )


if __name__ == "__main__":
    main()
