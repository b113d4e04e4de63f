"""The neutral feature vocabulary: which comparison-table row each probe measures.

A feature id names what one probe measures. Its row is a label of the seed table, or a sub-row
written `<seed row>: <what>` (shown under the seed row and combined into it, see SUBROW_SEP), or a
row the seed table does not have (the report's "Beyond the 2024 table" section).
"""

from __future__ import annotations

SUBROW_SEP = ": "  # "Other Quants: GPTQ" is a sub-row of the seed row "Other Quants"
OTHER_QUANTS = "Other Quants"
FLASH_ATTENTION = "FlashAttention2"
LMQL = "LMQL Support"

# probe feature id -> row label of the comparison table (footnote references stripped)
FEATURE_ROWS: dict[str, str] = {
    "flash_attention": FLASH_ATTENTION,
    "paged_attention": "PagedAttention",
    "speculative_decoding": "Speculative Decoding",
    "tensor_parallel": "Tensor Parallel",
    "pipeline_parallel": "Pipeline Parallel",
    "chunked_prefill": "Dyn. SplitFuse",
    "continuous_batching": "Cont. Batching",
    "exl2": "EXL2",
    "awq": "AWQ",
    # "Other Quants": one sub-row per format; the seed row combines them (harness.report.aggregate)
    "other_quants_gguf_q8_0": f"{OTHER_QUANTS}{SUBROW_SEP}GGUF Q8_0",
    "other_quants_gguf_q4_k_m": f"{OTHER_QUANTS}{SUBROW_SEP}GGUF Q4_K_M",
    "other_quants_gptq": f"{OTHER_QUANTS}{SUBROW_SEP}GPTQ",
    "other_quants_int8": f"{OTHER_QUANTS}{SUBROW_SEP}INT8 (W8A8)",
    "other_quants_fp8": f"{OTHER_QUANTS}{SUBROW_SEP}FP8",
    # an unquantized f16 GGUF file: whether the engine loads GGUF and computes its weights as written. Not a
    # quantization (it feeds no quant row); named for the file, so that an engine without a GGUF loader (vLLM's
    # documented absence) does not read as a precision limit (issue 23: it was "Reference precision (f16)")
    "reference_precision": "GGUF F16 (unquantized)",
    "openai_api": "OpenAI-Style API",
    "beam_search": "Beam Search",
    "ebnf_grammar": "EBNF Grammars",
    "json_schema": "JSON Schema",
    "model_llama": "Llama 2 / 3",
    "model_mistral": "Mistral",  # the architecture on prompts inside its window
    "model_mistral_sliding_window": f"Mistral{SUBROW_SEP}sliding window",  # the window past its length
    "model_mixtral": "Mixtral",
    # what LMQL needed from an engine (the project is dormant since 2023-10): sub-rows of the seed's LMQL row
    "logit_bias": f"{LMQL}{SUBROW_SEP}logit_bias",
    "prompt_logprobs": f"{LMQL}{SUBROW_SEP}prompt logprobs (echo)",
    # rows the seed table does not have
    "regex": "Regex",
    "prefix_caching": "Prefix Caching",
    "tool_calling": "Tool Calling",
    "json_schema_coverage": "JSON Schema coverage",
}

# The model format a feature's probe launches with (probes/test_quantized.py); others run the engine's native one.
FEATURE_FORMATS: dict[str, str] = {
    "reference_precision": "f16",
    "other_quants_gguf_q8_0": "q8_0",
    "other_quants_gguf_q4_k_m": "q4_k_m",
    "awq": "awq",
    "other_quants_gptq": "gptq",
    "other_quants_int8": "w8a8",
    "other_quants_fp8": "fp8",
    "exl2": "exl2",
}

# Records written before the per-format ids said feature "other_quants"; their probe names tell the format.
LEGACY_PROBE_FEATURES: dict[str, str] = {
    "quantized_f16": "reference_precision",
    "quantized_q8_0": "other_quants_gguf_q8_0",
    "quantized_q4_k_m": "other_quants_gguf_q4_k_m",
}
LEGACY_FEATURE = "other_quants"


def row_for(feature: str) -> str:
    """The table row a feature id belongs to; unknown ids are a programming error."""
    try:
        return FEATURE_ROWS[record_feature(feature, "")]
    except KeyError as exc:
        raise KeyError(f"unknown feature id {feature!r}; known: {sorted(FEATURE_ROWS)}") from exc


def record_feature(feature: str, probe: str) -> str:
    """The feature id a record counts for: its own, or the per-format id of a legacy `other_quants` record."""
    if feature == LEGACY_FEATURE:
        return LEGACY_PROBE_FEATURES.get(probe, "other_quants_gguf_q8_0")
    return feature


def parent_row(row: str) -> str | None:
    """The seed row a sub-row belongs to (`Other Quants: GPTQ` -> `Other Quants`); None for a top-level row."""
    return row.split(SUBROW_SEP, 1)[0] if SUBROW_SEP in row else None


def subrow_name(row: str) -> str:
    """What a sub-row measures (`Other Quants: GPTQ` -> `GPTQ`); the row itself for a top-level row."""
    return row.split(SUBROW_SEP, 1)[1] if SUBROW_SEP in row else row
