"""The constrained probes judge against constrained greedy decoding of the reference: an honest llama-server
passes, and a forging proxy in front of it (tests/forging_proxy.py), reached in attach mode, fails exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.engines.base import LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.probing.session import EnginePool, EngineSession
from harness.records.results import Status
from probes.test_json_schema import check_json_schema
from probes.test_logit_bias import check_logit_bias
from tests.forging_proxy import ForgingProxy

pytestmark = pytest.mark.engine_integration


@pytest.fixture
def forged(start_engine, artifacts, llama_build, tmp_path: Path) -> Iterator[tuple[EngineSession, ForgingProxy]]:
    """An attach-mode session whose server is the forging proxy in front of an honest llama-server."""
    honest = start_engine()
    with ForgingProxy(honest.running.base_url) as proxy:
        pool = EnginePool(LlamaCppAdapter(llama_build.server), artifacts, tmp_path / "attach", attach_url=proxy.url)
        try:
            yield pool.session(LaunchSpec()), proxy
        finally:
            pool.close()


def test_logit_bias_honest(start_engine):
    verdict = check_logit_bias(start_engine())
    numbers = verdict.evidence.numbers
    assert verdict.status is Status.PASS, numbers
    assert numbers["agreed"] == numbers["positions"] == 24 and isinstance(numbers["seed"], int)


def test_logit_bias_forged(forged):
    session, proxy = forged
    verdict = check_logit_bias(session)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert proxy.forged["logit_bias"] == 2 and "not honoured" in verdict.reason


def test_json_schema_honest(start_engine):
    verdict = check_json_schema(start_engine())
    numbers = verdict.evidence.numbers
    assert verdict.status is Status.PASS, numbers["outcomes"]
    assert numbers["agreed"] == numbers["positions"] > 30


def test_json_schema_forged(forged):
    session, proxy = forged
    verdict = check_json_schema(session)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert proxy.forged["json_schema"] == 3 and "not constrained greedy decoding" in verdict.reason
