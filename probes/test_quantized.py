"""Quantized formats, and f16 as the reference precision: the engine computes what the file's weights say.

Ruler: every artifact carries QUANT_PROMPTS (16) greedy references that HF transformers computed in
float32 from the weights the file encodes, decoded back (harness.models.gguf_weights for GGUF, the
exporters for AWQ/GPTQ/W8A8). So what separates a correct engine from its references is the engine's
own compute precision, not the quantizer's rounding, and a model with other weights (llama-alt) agrees
on almost nothing (measured: 0 of 16 first tokens).

Decision: each prompt is one Bernoulli trial (its first generated token is the reference's; for f16,
its whole 16-token greedy text is). Every reference keeps a top-1/top-2 logit gap of at least
MIN_MARGIN (0.2) at every step, so a correct engine succeeds on a trial with probability at least
`p_correct` (per format below, with why). The check passes when the successes reach
`min_agreeing(n, p_correct, ALPHA)`: a correct engine falls below that with probability <= ALPHA,
and an engine agreeing with probability P_UNRELATED or less reaches it with the probability the
evidence records (for 16 prompts: 11 of 16 needed at p 0.9, false pass 3e-4 at 0.25).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from probes.binomial import clopper_pearson_lower, min_agreeing, tail_below
from probes.reference import compare_to_reference

ALPHA = 0.01  # the chance a correct engine fails, and the most a model with other weights may pass with
P_UNRELATED = 0.25  # per-trial agreement assumed of an engine computing other weights (measured: 0)


@dataclass(frozen=True)
class Bound:
    """What one trial is for a format, and the least success probability of a correct engine on it."""

    trial: Literal["first_token", "greedy_text"]
    p_correct: float
    why: str


_BF16 = "the engine computes in bfloat16 (3 significant digits): logit errors up to ~0.15 against a gap of 0.2"
BOUNDS: dict[str, Bound] = {
    "f16": Bound(
        "greedy_text",
        0.9,
        "f16 weights as written; only the activations' f16 rounding differs, but over 16 steps a gap may close",
    ),
    "q8_0": Bound("first_token", 0.9, "llama.cpp rounds the activations to 8 bits (Q8_0) for the dot products"),
    "q4_k_m": Bound("first_token", 0.9, "llama.cpp rounds the activations to 8 bits (Q8_K) for the dot products"),
    "awq": Bound("first_token", 0.9, _BF16),
    "gptq": Bound("first_token", 0.9, _BF16),
    "w8a8": Bound("first_token", 0.9, "the activations are rounded to 8 bits per token (dynamic int8)"),
    "fp8": Bound("first_token", 0.9, "the weights and activations are rounded to fp8 (e4m3)"),
    "exl2": Bound("first_token", 0.9, "the engine computes in float16"),
}


def agreement_bound(fmt: str, prompts: int) -> dict[str, float | int | str]:
    """The pass threshold for `prompts` trials of `fmt` and the error rates it implies (for the evidence)."""
    bound = BOUNDS[fmt]
    needed = min_agreeing(prompts, bound.p_correct, ALPHA)
    return {
        **asdict(bound),
        "alpha": ALPHA,
        "min_successes": needed,
        "false_fail_max": tail_below(prompts, bound.p_correct, needed),
        "false_pass_at_unrelated": 1 - tail_below(prompts, P_UNRELATED, needed),
        "p_unrelated": P_UNRELATED,
    }


def check_quantized(session: EngineSession, fmt: str) -> Verdict:
    """Pass when the engine agrees with the file's own references on enough prompts (see the module doc)."""
    numbers = compare_to_reference(session, session.model.encoded_references)
    prompts = int(numbers["prompts"])
    bound = agreement_bound(fmt, prompts)
    share = numbers["exact_share"] if bound["trial"] == "greedy_text" else numbers["top1_share"]
    successes = round(float(share) * prompts)
    numbers |= {
        "bound": bound,
        "successes": successes,
        "agreement_lower_95": round(clopper_pearson_lower(prompts, successes, 0.05), 3),
    }
    status = Status.PASS if successes >= int(bound["min_successes"]) else Status.FAIL
    trial = "greedy texts" if bound["trial"] == "greedy_text" else "first tokens"
    reason = (
        f"{fmt}: {successes} of {prompts} {trial} agree with the file's own float32 references "
        f"(needed {bound['min_successes']}: p >= {bound['p_correct']}, alpha {ALPHA}); exact greedy "
        f"{numbers['exact_share']:.0%}, first tokens {numbers['top1_share']:.0%}, "
        f"max logprob diff {numbers['max_logprob_diff']:.3f}"
    )
    return Verdict(status=status, reason=reason, evidence=Evidence(numbers=numbers))


def _format_case(fmt: str, feature: str) -> pytest.param:
    return pytest.param(fmt, id=fmt, marks=[pytest.mark.launch(model_format=fmt), pytest.mark.feature(feature)])


@pytest.mark.cpu
@pytest.mark.parametrize(
    "fmt",
    [
        _format_case("f16", "reference_precision"),
        _format_case("q8_0", "other_quants_gguf_q8_0"),
        _format_case("q4_k_m", "other_quants_gguf_q4_k_m"),
        _format_case("awq", "awq"),
        _format_case("gptq", "other_quants_gptq"),
        _format_case("w8a8", "other_quants_int8"),
        _format_case("fp8", "other_quants_fp8"),
        _format_case("exl2", "exl2"),
    ],
)
def test_quantized(probe, fmt):
    probe.record(check_quantized(probe.engine(), fmt))
