"""Quantize an f16 GGUF with llama.cpp's `llama-quantize`."""

from __future__ import annotations

import subprocess
from pathlib import Path


class QuantizeError(RuntimeError):
    """llama-quantize failed."""


def quantize_gguf(quantize_bin: Path, source: Path, target: Path, qtype: str) -> None:
    """Run `<quantize_bin> source target qtype`, raising QuantizeError with its output on failure."""
    result = subprocess.run(
        [str(quantize_bin), str(source), str(target), qtype], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        output = f"{result.stdout}\n{result.stderr}"
        raise QuantizeError(f"{quantize_bin} {qtype} failed ({result.returncode}):\n{output}")
