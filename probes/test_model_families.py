"""Model families: Llama, Mistral and Mixtral load and reproduce the HF reference greedy output."""

from __future__ import annotations

import pytest

from harness.models import RefCase
from harness.probing.session import EngineSession
from harness.records.results import Evidence, Status, Verdict
from probes.reference import compare_to_reference, dtype_tolerance, within


def check_matches_reference(session: EngineSession, references: list[RefCase]) -> Verdict:
    """Pass when greedy texts and first-token log-probabilities agree with the float32 reference within the
    tolerance of the engine's compute dtype (probes.reference.dtype_tolerance). Mistral's reference prompts
    are longer than its sliding window, so an engine that attends past the window fails."""
    numbers = compare_to_reference(session, references)
    tolerance, derivation = dtype_tolerance(session)
    numbers["tolerance"] = derivation
    numbers["prompt_tokens"] = [len(case.prompt_ids) for case in references]
    summary = (
        f"{session.model.name} ({session.model.format}, {derivation['compute_dtype'] or 'dtype unknown'}): "
        f"exact greedy {numbers['exact_share']:.0%}, max first-token logprob diff "
        f"{numbers['max_logprob_diff']:.3f}"
    )
    status = Status.PASS if within(numbers, tolerance) else Status.FAIL
    return Verdict(status=status, reason=summary, evidence=Evidence(numbers=numbers))


def _family(name: str) -> pytest.param:
    return pytest.param(name, id=name, marks=[pytest.mark.launch(model=name), pytest.mark.feature(f"model_{name}")])


@pytest.mark.cpu
@pytest.mark.parametrize("family", [_family("llama"), _family("mistral"), _family("mixtral")])
def test_model_family(probe, family):
    session = probe.engine()
    probe.record(check_matches_reference(session, session.model.references))
