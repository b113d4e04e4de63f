"""The `sgl_kernel` module installed beside SGLang's CPU path: every name that path imports, none of them a kernel.

PyPI has no CPU build of SGLang's kernel package (`sgl-kernel` and `sglang-kernel` are CUDA wheels, with no sdist),
yet sglang 0.5.23 imports these names at module load when SGLANG_USE_CPU_ENGINE=1 (`if _is_cpu: from sgl_kernel
import ...` in srt/mem_cache/allocation.py, kernels/ops/kvcache/cache_move.py and the speculative-decoding modules).
Measured on a plain (non-speculative) server, 2026-12-03: chat, completions with logprobs, /generate, ebnf and regex
requests call none of them; only speculative decoding and KV copies between slots do. So nothing is stood in: each
name raises when called, naming what it would have had to compute. SGLang's torch.ops.sgl_kernel CPU ops (RMSNorm,
RoPE, fused MoE) stay unregistered, so its layers take their own torch `forward_native` (srt/utils/common.py
`_is_intel_amx_backend_available` looks for torch.ops.sgl_kernel.convert_weight_packed) on every host, AMX or not.

This file is copied into the engine's venv as `sgl_kernel/__init__.py` by harness.toolchain.sglang_cpu.
"""

from __future__ import annotations

from typing import Any, NoReturn

# name -> what SGLang's CPU kernel computes there (from the Triton kernel or docstring it replaces)
ABSENT: dict[str, str] = {
    "assign_req_to_token_pool_cpu": "KV slot bookkeeping for speculative decoding (alloc_for_spec_decode)",
    "copy_all_layer_kv_cache_cpu": "KV copies between slots in every layer (move_kv_cache)",
    "build_tree_kernel_efficient_cpu": "the draft token tree of EAGLE/STANDALONE speculation",
    "verify_tree_greedy_cpu": "greedy acceptance of draft tokens (speculative sampling math)",
    "assign_draft_cache_locs_contiguous_cpu": "draft KV slot bookkeeping for speculative decoding",
    "assign_extend_cache_locs_cpu": "draft KV slot bookkeeping for speculative decoding",
    "fill_accept_out_cache_loc_cpu": "accepted-draft KV slot bookkeeping for speculative decoding",
    "fill_bonus_tokens_cpu": "the bonus token after accepted drafts (speculative sampling)",
}


class KernelAbsent(NotImplementedError):
    """An sgl_kernel CPU function was called: PyPI has no CPU build of it, and nothing stands in for it."""


def _absent(name: str) -> Any:
    def call(*args: object, **kwargs: object) -> NoReturn:
        raise KernelAbsent(f"sgl_kernel.{name} ({ABSENT[name]}): no CPU build on PyPI, and no stand-in")

    call.__name__ = call.__qualname__ = name
    return call


globals().update({name: _absent(name) for name in ABSENT})
