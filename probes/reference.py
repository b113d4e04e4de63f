"""Compare an engine's greedy output and log-probabilities with the HF transformers reference."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from harness.engines.base import GreedyOutput
from harness.models import RefCase
from harness.outcomes import NotMeasurable
from harness.probing.session import EngineSession

MAX_TOKENS = 16
TOP_LOGPROBS = 5


@dataclass(frozen=True)
class Tolerance:
    """How close a format must stay to the float32 reference."""

    min_exact_prompts: float  # share of prompts whose 16-token greedy text matches exactly
    min_top1_agreement: float  # share of prompts whose first token matches the reference's
    max_logprob_diff: float  # first position: |engine - reference| logprob of the reference's top token


# float32 compute on weights that are exactly float16-representable: only kernel rounding differs.
FLOAT32 = Tolerance(min_exact_prompts=1.0, min_top1_agreement=1.0, max_logprob_diff=0.05)
LOGPROB_SPREAD_FACTOR = 2.0  # an engine's reduced-precision kernels may round twice as far as torch's


def dtype_tolerance(session: EngineSession) -> tuple[Tolerance, dict[str, Any]]:
    """The tolerance for the dtype the engine computes in, and how it was derived (for the evidence).

    float32: FLOAT32. A reduced dtype: from the spread the synthesis measured between the float32 reference
    and the same weights computed in that dtype by torch (ModelArtifact.dtype_spread), one prompt of slack
    on the shares and LOGPROB_SPREAD_FACTOR on the log-probability difference (never tighter than FLOAT32).
    A dtype the engine does not say, or one with no measured spread, gets FLOAT32, and the evidence says so.
    """
    dtype = session.adapter.compute_dtype(session.spec)
    spread = session.model.dtype_spread.get(dtype) if dtype else None
    if dtype == "float32" or spread is None:
        note = "float32" if dtype == "float32" else f"compute dtype {dtype or 'not reported'}: no measured spread"
        return FLOAT32, {"compute_dtype": dtype, "tolerance": asdict(FLOAT32), "derived_from": note}
    slack = 1 / spread.prompts
    tolerance = Tolerance(
        min_exact_prompts=max(0.0, spread.exact_share - slack),
        min_top1_agreement=max(0.0, spread.top1_share - slack),
        max_logprob_diff=max(FLOAT32.max_logprob_diff, LOGPROB_SPREAD_FACTOR * spread.max_logprob_diff),
    )
    return tolerance, {
        "compute_dtype": dtype,
        "tolerance": asdict(tolerance),
        "derived_from": f"torch {dtype} vs float32 on the same weights",
        "spread": spread.model_dump(),
    }


FRESH_CANDIDATES = 2000  # seeded prompts tried at most for a run's fresh references


@lru_cache(maxsize=8)
def seeded_references(
    hf_dir: Path,
    seed: int,
    label: str,
    count: int,
    max_tokens: int | None = None,
    weights: tuple[Path, str, str] | None = None,
) -> tuple[RefCase, ...]:
    """`count` float32 greedy references of prompts drawn from `seed` (fresh per run, recorded in the evidence), as
    robust as the synthesis's own (harness.models.reference.reference_case: every step's top-1/top-2 gap at least
    MIN_MARGIN, not a loop of a few tokens); with `max_tokens`, only prompts whose tokens and the generated ones
    stay under it; with `weights` (a file's path, format and digest), of the weights that file encodes instead of the
    float checkpoint's. NotMeasurable when too few candidates are robust."""
    from harness.models.constrained import load_reference
    from harness.models.format_prompts import decoded_model, one_thread, seeded_prompts
    from harness.models.reference import reference_case

    model, tokenizer = load_reference(hf_dir)
    if weights is not None:
        model = decoded_model(hf_dir, *weights)
    chosen: list[RefCase] = []
    with one_thread():
        for prompt in seeded_prompts(seed, label, FRESH_CANDIDATES):
            ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
            if max_tokens is not None and len(ids) + MAX_TOKENS > max_tokens:
                continue
            if (case := reference_case(model, tokenizer, prompt)) is not None:
                chosen.append(case)
                if len(chosen) == count:
                    return tuple(chosen)
    raise NotMeasurable(
        f"only {len(chosen)} of {FRESH_CANDIDATES} prompts drawn from seed {seed} have a robust reference ({label})"
    )


def require_references(session: EngineSession, references: list[RefCase]) -> None:
    """Not measured when there is nothing to compare with (a model set's real checkpoint)."""
    if not references:
        raise NotMeasurable(
            f"{session.model.source} has no float32 reference outputs to compare with "
            "(references exist for the synthesized models only)"
        )


def run_greedy(session: EngineSession, case: RefCase) -> GreedyOutput:
    """Greedy-decode one reference prompt on the engine."""
    return greedy(session, case.prompt, MAX_TOKENS)


def greedy(session: EngineSession, prompt: str, max_tokens: int) -> GreedyOutput:
    """Greedy-decode `prompt` for `max_tokens` tokens on the engine, with top log-probabilities."""
    request = session.adapter.greedy_request(session.served_model, prompt, max_tokens, TOP_LOGPROBS)
    _, response = session.client.send(request)
    return session.adapter.parse_greedy(response)


def compare_to_reference(session: EngineSession, references: list[RefCase]) -> dict[str, float | list]:
    """Run every reference prompt and measure agreement (numbers for the evidence)."""
    require_references(session, references)
    exact = top1 = 0
    diffs: list[float] = []
    outputs = []
    for case in references:
        output = run_greedy(session, case)
        exact += output.text == case.greedy_text
        ref_first = case.top_logprobs[0]
        ref_token = max(ref_first, key=ref_first.__getitem__)
        engine_first = output.top_logprobs[0] if output.top_logprobs else {}
        if engine_first:
            top1 += max(engine_first, key=engine_first.__getitem__) == ref_token
            if ref_token in engine_first:
                diffs.append(abs(engine_first[ref_token] - ref_first[ref_token]))
            else:
                diffs.append(float("inf"))
        outputs.append({"prompt": case.prompt, "reference": case.greedy_text, "engine": output.text})
    count = len(references)
    return {
        "prompts": count,
        "exact_share": exact / count,
        "top1_share": top1 / count,
        "max_logprob_diff": max(diffs) if diffs else float("inf"),
        "outputs": outputs,
    }


def within(numbers: dict, tolerance: Tolerance) -> bool:
    """Whether measured agreement meets the tolerance."""
    return (
        numbers["exact_share"] >= tolerance.min_exact_prompts
        and numbers["top1_share"] >= tolerance.min_top1_agreement
        and numbers["max_logprob_diff"] <= tolerance.max_logprob_diff
    )
