"""Loaded by every Python process started with this folder on PYTHONPATH (tests only): torch reports no
AVX-512, so vLLM's CPU platform (vllm/platforms/cpu.py, import_kernels) loads its AVX2 extension
`vllm._C_AVX2` as it does on an AVX2-only host, and its CPU attention picks its AVX2 paths too."""

try:
    import torch.cpu
except ImportError:  # not the engine's interpreter: nothing to pretend
    pass
else:
    torch.cpu._is_avx512_supported = lambda: False
    torch.cpu._is_avx512_bf16_supported = lambda: False
    torch.cpu._is_amx_tile_supported = lambda: False
    torch.cpu._is_amx_fp16_supported = lambda: False
    torch.cpu._is_vnni_supported = lambda: False
