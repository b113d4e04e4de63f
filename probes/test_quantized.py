"""Quantized formats, and f16 as the reference precision: the engine computes what the file's weights say.

Quantized formats (GGUF Q8_0 and Q4_K_M, AWQ, GPTQ): a quantized file's weights differ from the float
weights it was made from by its rounding only, so on most prompts both give the same greedy text, and an engine
serving the float model under the quantized name reproduced the file's own references (Q8_0: 16 of 16). So the
prompts are chosen where the two disagree (harness.models.format_prompts): candidates drawn from a fresh run seed
(recorded in the evidence; $INFERCHECK_CONSTRAINT_SEED reproduces a run), decoded greedily by the file's weights
(decoded from the file, float32) and by the float weights, kept where they split within the first 8 tokens with
top-1/top-2 logit gaps of at least the format's `gaps` (file side, float side) at every position up to the split.
Each kept prompt is one trial: the engine writes the file's side (success), the float side, or neither. Decided as
below, with the same binomial bound. Measured on llama-server: Q8_0 served honestly wrote the file's side on 63 of
64 (4 seeds), the f16 file attached as Q8_0 on 0 of 64 (the float side on all); Q4_K_M 63 of 64 and 0 of 64.

f16 and W8A8 (see BOUNDS) are judged on QUANT_PROMPTS (16) greedy references that HF transformers computes in
float32 from the weights the file encodes, decoded back (harness.models.format_prompts), on prompts drawn from the
run seed and kept where they are robust (probes.reference.seeded_references). Formats the harness cannot decode
(fp8, exl2) use the artifact's fixed references, computed the same way by the synthesis. So what separates a
correct engine from its references is the engine's own compute precision, not the quantizer's rounding, and a model
with other weights (llama-alt) agrees on almost nothing (measured: 0 of 16 first tokens).

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
from typing import Any, Literal

import pytest

from harness.models import RefCase, find_artifact
from harness.models.recipe import QUANT_PROMPTS
from harness.outcomes import NotMeasurable
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from probes.binomial import clopper_pearson_lower, min_agreeing, tail_below
from probes.constrained_reference import run_seed
from probes.reference import compare_to_reference, greedy, require_references, seeded_references

ALPHA = 0.01  # the chance a correct engine fails, and the most a model with other weights may pass with
P_UNRELATED = 0.25  # per-trial agreement assumed of an engine computing other weights (measured: 0)
SPLIT_PROMPTS = 16  # prompts where the file's weights and the float weights split, per run
CANDIDATES = 12000  # seeded candidates examined at most (Q8_0 at gaps 0.15/0.1: 14 splits per 4000)


@dataclass(frozen=True)
class Bound:
    """What one trial is for a format, and the least success probability of a correct engine on it."""

    trial: Literal["first_token", "greedy_text", "split"]
    p_correct: float
    why: str
    # split prompts: the least top-1/top-2 logit gap of the file's weights and of the float weights (kernel rounding
    # of the engine computing either must not reach it); (0, 0) for fixed references
    gaps: tuple[float, float] = (0.0, 0.0)


_BF16 = "the engine computes in bfloat16 (3 significant digits): logit errors up to ~0.15 against a gap of 0.2"
_Q8_0 = (
    "llama.cpp rounds the activations to 8 bits (Q8_0) for the dot products: measured, it wrote the float side on "
    "6 of 48 splits with a gap of 0.11-0.14 on the file's side, so that side's gap is 0.15"
)
BOUNDS: dict[str, Bound] = {
    "f16": Bound(
        "greedy_text",
        0.9,
        "f16 weights as written; only the activations' f16 rounding differs, but over 16 steps a gap may close",
    ),
    "q8_0": Bound("split", 0.9, _Q8_0, (0.15, 0.1)),
    "q4_k_m": Bound("split", 0.9, "llama.cpp rounds the activations to 8 bits (Q8_K) for the dot products", (0.2, 0.2)),
    "awq": Bound("split", 0.9, _BF16, (0.3, 0.3)),
    "gptq": Bound("split", 0.9, _BF16, (0.3, 0.3)),
    # references of the file's weights, not splits: on split prompts (gaps 0.15/0.1) vLLM CPU's W8A8 (int8
    # activations per token, bfloat16) wrote the file's side on 10 and 13 of 16, the float side on 5 and 2
    "w8a8": Bound("first_token", 0.9, "the activations are rounded to 8 bits per token (dynamic int8)"),
    "fp8": Bound("first_token", 0.9, "the weights and activations are rounded to fp8 (e4m3)"),
    "exl2": Bound("first_token", 0.9, "the engine computes in float16"),
}


def agreement_bound(fmt: str, prompts: int) -> dict[str, Any]:
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
    """Pass when the engine computes the file's weights (see the module doc): on prompts chosen where they split
    from the float weights for the formats the harness decodes, on the file's fixed references otherwise."""
    from harness.models.format_prompts import decodable

    if BOUNDS[fmt].trial == "split" and decodable(fmt):
        return check_split_prompts(session, fmt)
    return check_fixed_references(session, fmt)


def _decide(fmt: str, prompts: int, successes: int, numbers: dict[str, Any]) -> tuple[Status, dict[str, Any]]:
    bound = agreement_bound(fmt, prompts)
    numbers |= {
        "bound": bound,
        "successes": successes,
        "agreement_lower_95": round(clopper_pearson_lower(prompts, successes, 0.05), 3),
    }
    return (Status.PASS if successes >= int(bound["min_successes"]) else Status.FAIL), numbers


def _needed(fmt: str, numbers: dict[str, Any]) -> str:
    return f"needed {numbers['bound']['min_successes']}: p >= {BOUNDS[fmt].p_correct}, alpha {ALPHA}"


def file_references(session: EngineSession, fmt: str, seed: int) -> list[RefCase]:
    """QUANT_PROMPTS robust references of the weights the file encodes, on prompts drawn from `seed` (f16: the float
    checkpoint's, the same weights); the synthesis's fixed ones where the harness cannot decode the file."""
    from harness.models.format_prompts import decodable

    if not decodable(fmt) or not session.model.references:
        return session.model.encoded_references
    hf_dir = find_artifact(session.artifacts, session.model.name, "hf").path
    weights = None if fmt == "f16" else (session.model.path, fmt, session.model.sha256)
    return list(seeded_references(hf_dir, seed, f"quantized:{fmt}", QUANT_PROMPTS, weights=weights))


def check_fixed_references(session: EngineSession, fmt: str) -> Verdict:
    """Pass when the engine agrees with the references of the file's weights on enough prompts (fresh ones where
    the harness decodes the file)."""
    seed = run_seed()
    numbers: dict[str, Any] = compare_to_reference(session, file_references(session, fmt, seed))
    numbers["seed"] = seed
    prompts = int(numbers["prompts"])
    share = numbers["exact_share"] if BOUNDS[fmt].trial == "greedy_text" else numbers["top1_share"]
    status, numbers = _decide(fmt, prompts, round(float(share) * prompts), numbers)
    trial = "greedy texts" if BOUNDS[fmt].trial == "greedy_text" else "first tokens"
    reason = (
        f"{numbers['successes']} of {prompts} {trial} agree with the float32 references of the file's weights "
        f"(seed {seed}) "
        f"({_needed(fmt, numbers)}); exact greedy {numbers['exact_share']:.0%}, first tokens "
        f"{numbers['top1_share']:.0%}, max logprob diff {numbers['max_logprob_diff']:.3f}"
    )
    return Verdict(status=status, reason=f"{fmt}: {reason}", evidence=Evidence(numbers=numbers))


def split_prompts(session: EngineSession, fmt: str, seed: int) -> tuple[list[Any], dict[str, Any]]:
    """The run's prompts where the file's weights and the float weights split, and how they were chosen."""
    from harness.models.format_prompts import file_splits

    require_references(session, session.model.references)
    hf_dir = find_artifact(session.artifacts, session.model.name, "hf").path
    gaps = BOUNDS[fmt].gaps
    model = session.model
    splits, examined = file_splits(hf_dir, model.path, fmt, model.sha256, seed, SPLIT_PROMPTS, gaps, CANDIDATES)
    chosen = {"seed": seed, "candidates_examined": examined, "gaps": {"quantized": gaps[0], "float": gaps[1]}}
    if len(splits) < SPLIT_PROMPTS:
        raise NotMeasurable(
            f"{fmt}: only {len(splits)} of {examined} seeded prompts (seed {seed}) split the file's weights from the "
            f"float weights by logit gaps of {gaps[0]} (file) and {gaps[1]} (float); {SPLIT_PROMPTS} are needed"
        )
    return splits, chosen


def check_split_prompts(session: EngineSession, fmt: str) -> Verdict:
    """Pass when the engine writes the file's side of enough prompts chosen where it splits from the float weights."""
    seed = run_seed()
    splits, numbers = split_prompts(session, fmt, seed)
    follows = {"quantized": 0, "float": 0, "neither": 0}
    outputs = []
    for split in splits:
        output = greedy(session, split.prompt, split.position + 1)
        side = (
            "quantized"
            if output.text.startswith(split.quantized_text)
            else "float"
            if output.text.startswith(split.float_text)
            else "neither"
        )
        follows[side] += 1
        outputs.append(split.summary() | {"engine": output.text, "follows": side})
    prompts = len(splits)
    status, numbers = _decide(fmt, prompts, follows["quantized"], numbers | {"prompts": prompts, "follows": follows})
    numbers["outputs"] = outputs
    reason = (
        f"on {prompts} fresh prompts (seed {seed}) where the file's weights and the float weights write different "
        f"tokens (gaps >= {BOUNDS[fmt].gaps}), the engine wrote the file's on {follows['quantized']}, the float "
        f"weights' on {follows['float']}, neither on {follows['neither']} ({_needed(fmt, numbers)})"
    )
    return Verdict(status=status, reason=f"{fmt}: {reason}", evidence=Evidence(numbers=numbers))


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
