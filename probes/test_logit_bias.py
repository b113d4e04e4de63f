"""logit_bias (what LMQL needed from an engine): the biased greedy output is what greedy decoding of the same
weights with the same bias added to the logits produces.

Each run draws its biases from a fresh seed (recorded): a few token ids get a moderate boost (+2 to +9, so which
of them wins where depends on the weights) and a few tokens of the unbiased output are banned (-100). The engine's
biased tokens are teacher-forced through the float32 reference with the bias added: every one must be the
reference's argmax (or within the compute dtype's tolerance of it), and the returned text must be those tokens.
The control (no bias) must differ from the biased output, else the case is inconclusive. A server that drops the
bias and edits the token ids afterwards cannot know the biased argmax: it fails.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from harness.wire.client import EngineRejected
from probes.constrained_reference import near_tie, prompt_ids, reference_dir, run_seed, seeded

PROMPTS = ("The river", "A quiet morning")
TOKENS = 12
BOOSTED = 4  # token ids with a moderate positive bias
BOOST_RANGE = (2.0, 9.0)
BANNED = 3  # tokens of the unbiased output banned with -100
FIRST_ORDINARY_ID = 6  # ids below are <s>, </s>, <unk> and the chat markers of the synthesized tokenizer
DRAWS = 20  # bias sets tried per prompt for one whose reference output differs from the unbiased one


def _generate(session: EngineSession, prompt: str, bias: dict[int, float]) -> tuple[list[int], str]:
    request = session.adapter.logit_bias_request(session.served_model, prompt, bias, TOKENS)
    _, response = session.client.send(request)
    return session.adapter.generated_token_ids(response), session.adapter.completion_text(response)[0]


def draw_bias(hf_dir: Path, ids: list[int], plain: list[int], seed: int, label: str) -> tuple[dict[int, float], int]:
    """A bias drawn from `seed` under which the reference's greedy output differs from `plain` in at least a third
    of the positions, uses a boosted token and is not one token repeated; (bias, draws it took)."""
    from harness.models.constrained import constrained_greedy, load_reference

    rng = seeded(seed, label)
    vocab = load_reference(hf_dir)[0].config.vocab_size
    bias: dict[int, float] = {}
    for draw in range(1, DRAWS + 1):
        boosted = rng.sample(range(FIRST_ORDINARY_ID, vocab), BOOSTED)
        bias = {token: round(rng.uniform(*BOOST_RANGE), 2) for token in boosted}
        bias.update({token: -100.0 for token in rng.sample(sorted(set(plain)), min(BANNED, len(set(plain))))})
        expected = constrained_greedy(hf_dir, ids, TOKENS, bias=bias, stop_at_eos=False)
        changed = sum(a != b for a, b in zip(expected, plain))
        if changed >= TOKENS // 3 and len(set(expected)) > 2 and set(expected) & set(boosted):
            return bias, draw
    return bias, DRAWS


def _case(session: EngineSession, hf_dir: Path, prompt: str, seed: int, tolerance: float) -> dict[str, Any]:
    """One prompt: control, bias, biased output and its teacher forcing."""
    from harness.models.constrained import load_reference, teacher_force_ids

    ids = prompt_ids(hf_dir, prompt)
    plain_ids, plain_text = _generate(session, prompt, {})
    control = teacher_force_ids(hf_dir, ids, plain_ids, tolerance)
    bias, draws = draw_bias(hf_dir, ids, plain_ids, seed, prompt)
    biased_ids, biased_text = _generate(session, prompt, bias)
    forced = teacher_force_ids(hf_dir, ids, biased_ids, tolerance, bias=bias)
    decoded = load_reference(hf_dir)[1].decode(biased_ids)
    return {
        "prompt": prompt,
        "bias": {str(token): value for token, value in bias.items()},
        "bias_draws": draws,
        "plain_ids": plain_ids,
        "plain_text": plain_text,
        "control_follows_reference": control.agrees,
        "biased_ids": biased_ids,
        "biased_text": biased_text,
        "text_is_the_tokens": decoded == biased_text,
        "differs_from_control": biased_ids != plain_ids,
        "forcing": forced.summary(),
        "agrees": forced.agrees and len(biased_ids) == TOKENS and decoded == biased_text,
    }


def check_logit_bias(session: EngineSession) -> Verdict:
    """Every biased output is the reference's biased greedy output -> pass; any that is not -> fail; a rejected
    bias -> fail; a control that already differs from the reference, or equals the biased output -> inconclusive."""
    hf_dir = reference_dir(session)
    seed = run_seed()
    tolerance, derivation = near_tie(session)
    numbers: dict[str, Any] = {"seed": seed, "tokens": TOKENS, "near_tie_logit_gap": tolerance, **derivation}
    try:
        cases = [_case(session, hf_dir, prompt, seed, tolerance) for prompt in PROMPTS]
    except EngineRejected as exc:  # 4xx only: a 5xx or a lost connection is an error
        return Verdict(
            status=Status.FAIL,
            reason=f"logit_bias rejected: HTTP {exc.exchange.status_code}",
            evidence=Evidence(numbers=numbers),
        )
    numbers["cases"] = cases
    positions = sum(case["forcing"]["positions"] for case in cases)
    agreed = sum(case["forcing"]["agreed"] + len(case["forcing"]["near_ties"]) for case in cases)
    numbers.update(positions=positions, agreed=agreed)
    off = [case for case in cases if not case["control_follows_reference"]]
    if off:
        return Verdict(
            status=Status.ERROR,
            reason=f"inconclusive: the unbiased output of {off[0]['prompt']!r} already differs from the reference's "
            "greedy output, so the biased one cannot be judged against it",
            evidence=Evidence(numbers=numbers),
        )
    wrong = [case for case in cases if not case["agrees"]]
    same = [case for case in cases if not case["differs_from_control"]]
    summary = f"{agreed}/{positions} biased tokens are the reference's argmax under the same bias (seed {seed})"
    if wrong:
        first = wrong[0]
        detail = (first["forcing"]["mismatches"] or [{}])[0]
        why = (
            f"at position {detail.get('position')} the engine emitted {detail.get('engine_text')!r}, the reference "
            f"{detail.get('reference_text')!r} (logit gap {detail.get('gap')})"
            if detail
            else "its text is not the text of its token ids"
            if not first["text_is_the_tokens"]
            else f"{len(first['biased_ids'])} of {TOKENS} tokens"
        )
        return Verdict(
            status=Status.FAIL,
            reason=f"logit_bias not honoured as greedy decoding with the bias: {summary}; {first['prompt']!r}: {why}",
            evidence=Evidence(numbers=numbers),
        )
    if same:
        return Verdict(
            status=Status.ERROR,
            reason=f"inconclusive: the biased output of {same[0]['prompt']!r} equals the unbiased control",
            evidence=Evidence(numbers=numbers),
        )
    return Verdict(
        status=Status.PASS,
        reason=summary + ", all differing from the unbiased control",
        evidence=Evidence(numbers=numbers),
    )


@pytest.mark.cpu
@pytest.mark.feature("logit_bias")
def test_logit_bias(probe):
    probe.record(check_logit_bias(probe.engine()))
