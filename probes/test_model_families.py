"""Model families: Llama, Mistral and Mixtral load and reproduce the HF reference greedy output."""

from __future__ import annotations

import pytest

from harness.models import RefCase
from harness.results import Evidence, Status, Verdict
from harness.session import EngineSession
from probes.reference import Tolerance, compare_to_reference, within

NATIVE_PRECISION = Tolerance(min_exact_prompts=1.0, min_top1_agreement=1.0, max_logprob_diff=0.05)


def check_matches_reference(session: EngineSession, references: list[RefCase]) -> Verdict:
    """Pass when every prompt's greedy text equals the reference and first-token logprobs agree."""
    numbers = compare_to_reference(session, references)
    summary = (f"{session.model.name} ({session.model.format}): exact greedy {numbers['exact_share']:.0%}, "
               f"max first-token logprob diff {numbers['max_logprob_diff']:.3f}")
    status = Status.PASS if within(numbers, NATIVE_PRECISION) else Status.FAIL
    return Verdict(status=status, reason=summary, evidence=Evidence(numbers=numbers))


def _family(name: str) -> pytest.param:
    return pytest.param(name, id=name, marks=[pytest.mark.launch(model=name), pytest.mark.feature(f"model_{name}")])


@pytest.mark.cpu
@pytest.mark.parametrize("family", [_family("llama"), _family("mistral"), _family("mixtral")])
def test_model_family(probe, family):
    session = probe.engine()
    probe.record(check_matches_reference(session, session.model.references))
