"""The neutral feature vocabulary: which comparison-table row each probe measures."""

from __future__ import annotations

# probe feature id -> row label of the comparison table (footnote references stripped)
FEATURE_ROWS: dict[str, str] = {
    "flash_attention": "FlashAttention2",
    "paged_attention": "PagedAttention",
    "speculative_decoding": "Speculative Decoding",
    "tensor_parallel": "Tensor Parallel",
    "pipeline_parallel": "Pipeline Parallel",
    "chunked_prefill": "Dyn. SplitFuse",
    "continuous_batching": "Cont. Batching",
    "exl2": "EXL2",
    "awq": "AWQ",
    "other_quants": "Other Quants",
    "openai_api": "OpenAI-Style API",
    "beam_search": "Beam Search",
    "ebnf_grammar": "EBNF Grammars",
    "json_schema": "JSON Schema",
    "model_llama": "Llama 2 / 3",
    "model_mistral": "Mistral",
    "model_mixtral": "Mixtral",
}


def row_for(feature: str) -> str:
    """The table row a feature id belongs to; unknown ids are a programming error."""
    try:
        return FEATURE_ROWS[feature]
    except KeyError as exc:
        raise KeyError(f"unknown feature id {feature!r}; known: {sorted(FEATURE_ROWS)}") from exc
