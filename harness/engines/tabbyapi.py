"""TabbyAPI, the server behind the ExLlamaV2 and ExLlamaV3 columns: its launch flags and request fields.

From TabbyAPI's common/args.py, common/config_models.py and common/sampling.py: `--host`, `--port`,
`--model-dir`, `--model-name`, `--max-batch-size`, `--chunk-size`, `--tensor-parallel`,
`--gpu-split-auto`, `--draft-model-dir`, `--draft-model-name`; the `json_schema` request field.
"""

from __future__ import annotations

from typing import Any

from harness.engines.base import LaunchSpec, ResolvedModels
from harness.wire.request import ApiRequest


def tabby_command(spec: LaunchSpec, models: ResolvedModels, port: int, backend: list[str]) -> list[str]:
    """TabbyAPI's `main.py` serving `models` on 127.0.0.1:`port`; `backend` holds the column's own flags."""
    command = [
        "python3",
        "main.py",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *backend,
        "--model-dir",
        str(models.model.parent),
        "--model-name",
        models.model.name,
        "--max-batch-size",
        str(spec.parallel_slots),
    ]
    if spec.prefill_chunk_tokens is not None:
        command += ["--chunk-size", str(spec.prefill_chunk_tokens)]
    if models.draft_model is not None:
        command += ["--draft-model-dir", str(models.draft_model.parent), "--draft-model-name", models.draft_model.name]
    if spec.tensor_parallel > 1:
        command += ["--tensor-parallel", "true"]
    elif spec.pipeline_parallel > 1:
        command += ["--gpu-split-auto", "true"]
    return command


def tabby_json_schema_request(model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
    """A chat request constrained by TabbyAPI's `json_schema` sampling field."""
    return ApiRequest(
        "/v1/chat/completions",
        {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
            "temperature": 0,
            "json_schema": schema,
        },
    )
