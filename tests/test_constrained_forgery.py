"""The constrained probes judge against constrained greedy decoding of the reference: an honest llama-server
passes, and a forging proxy in front of it (tests/forging_proxy.py), reached in attach mode, fails exactly."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.engines.base import LaunchSpec
from harness.engines.llamacpp import LlamaCppAdapter
from harness.models import find_artifact
from harness.paths import REPO_ROOT
from harness.probing.session import EnginePool, EngineSession
from harness.records.results import Status, load_records
from probes.test_grammar import check_grammar
from probes.test_json_schema import check_json_schema, check_json_schema_coverage
from probes.test_logit_bias import check_logit_bias
from probes.test_regex import check_regex
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
    # llama-server's own tokens include the whitespace its chat parser strips; where it trails the JSON the reference
    # writes the end token at the same logit (an exact tie, measured: gap 0.0), so not every position is "agreed"
    assert numbers["positions"] > 30 and numbers["agreed"] > 0.5 * numbers["positions"], numbers["positions"]
    forced = [outcome["reference"] for outcome in numbers["outcomes"].values()]
    assert all(not ref["mismatches"] and not ref["disallowed"] and ref["accepted"] for ref in forced), forced


def test_json_schema_forged(forged):
    session, proxy = forged
    verdict = check_json_schema(session)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert proxy.forged["json_schema"] == 3 and "not constrained greedy decoding" in verdict.reason


def test_json_schema_coverage_forged(forged):
    """Every corpus answer made up from its (fresh) schema: the valid ones are not the reference's constrained
    argmax, so the coverage row fails, however many of them validate."""
    session, proxy = forged
    verdict = check_json_schema_coverage(session)
    counts = verdict.evidence.numbers["counts"]
    assert verdict.status is Status.FAIL, counts
    assert counts["unexplained"] >= 1 and counts["honoured"] < counts["unexplained"], counts
    assert proxy.forged["json_schema"] >= verdict.evidence.numbers["schemas"] - counts["rejected"]


def test_attach_mode_forgeries_fail(start_engine, tmp_path: Path):
    """`infercheck run` attached to the forging proxy, tool calling declared: json_schema, logit_bias and
    tool_calling all fail, and the records say the declared option was not verified."""
    honest = start_engine()
    with ForgingProxy(honest.running.base_url) as proxy:
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli.app", "run", "--base-url", proxy.url, "--attach-option",
             "tool_calling=true", "--results-dir", str(tmp_path), "--no-report",
             "-k", "logit_bias or tool_calling or (json_schema and not coverage)"],
            capture_output=True, text=True, timeout=600, cwd=REPO_ROOT,
        )  # fmt: skip
    records = {record.probe: record for record in load_records(tmp_path)}
    assert {probe: record.status for probe, record in records.items()} == {
        "json_schema": Status.FAIL,
        "logit_bias": Status.FAIL,
        "tool_calling": Status.FAIL,
    }, result.stdout[-3000:]
    assert proxy.forged["tools"] >= 1 and proxy.forged["json_schema"] == 3 and proxy.forged["logit_bias"] == 2
    assert records["tool_calling"].launch.options["declared_not_verified"] == {"tool_calling": True}
    assert "not constrained greedy decoding" in records["tool_calling"].reason


@pytest.fixture
def forged_grammar(
    start_engine, artifacts, llama_build, tmp_path: Path
) -> Iterator[tuple[EngineSession, ForgingProxy]]:
    """The forging proxy with the tokenizer it walks grammars with, attached to."""
    honest = start_engine()
    hf_dir = find_artifact(artifacts, "llama", "hf").path
    with ForgingProxy(honest.running.base_url, hf_dir) as proxy:
        pool = EnginePool(LlamaCppAdapter(llama_build.server), artifacts, tmp_path / "attach", attach_url=proxy.url)
        try:
            yield pool.session(LaunchSpec()), proxy
        finally:
            pool.close()


@pytest.mark.parametrize("check", [check_grammar, check_regex], ids=["ebnf_grammar", "regex"])
def test_grammar_and_regex_forged(forged_grammar, check):
    session, proxy = forged_grammar
    verdict = check(session)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert proxy.forged["grammar"] >= 2 and "not constrained greedy decoding" in verdict.reason
