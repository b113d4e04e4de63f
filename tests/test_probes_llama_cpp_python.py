"""Probes on real llama-cpp-python (its own server, `python -m llama_cpp.server`): passes and fails, each real.

One engine pool serves the whole module (session scope; a launch takes about a second, the install once ~4-15
minutes and is cached). The failing cases are the engine's own behaviour with its defaults, with their cause shown
beside them: its default repeat_penalty 1.1 applied before the greedy sampler at temperature 0 (the same probe
passes with repeat_penalty 1.0), its chatml-function-calling handler asserting tool_choice == "auto", and a
second request cutting a running stream short (interrupt_requests, on by default).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from harness.engines.base import GrammarSpec, LaunchSpec
from harness.engines.llama_cpp_python import LlamaCppPythonAdapter
from harness.models import ModelArtifact
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import cache_dir
from harness.probing.session import EnginePool, EngineSession
from harness.records.results import Status
from harness.toolchain import llama_cpp_python as toolchain
from harness.wire.client import EngineServerError
from harness.wire.request import ApiRequest
from probes.test_attention import check_flash_attention
from probes.test_continuous_batching import check_continuous_batching
from probes.test_grammar import check_grammar
from probes.test_logit_bias import check_logit_bias
from probes.test_model_families import check_matches_reference
from probes.test_prompt_logprobs import check_prompt_logprobs
from probes.test_regex import check_regex
from probes.test_speculative import DRAFT_MODEL
from probes.test_tool_calling import check_tool_calling

pytestmark = [pytest.mark.engine_integration, pytest.mark.engine]


class NoRepeatPenaltyAdapter(LlamaCppPythonAdapter):
    """Greedy requests with the engine's repeat_penalty set to 1.0 (off): what its default 1.1 changes."""

    def greedy_request(self, model: str, prompt: str, max_tokens: int, top_logprobs: int) -> ApiRequest:
        request = super().greedy_request(model, prompt, max_tokens, top_logprobs)
        return ApiRequest(request.path, {**request.body, "repeat_penalty": 1.0})

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        request = super().grammar_request(model, prompt, grammar, max_tokens)  # regex_request comes here too
        return ApiRequest(request.path, {**request.body, "repeat_penalty": 1.0})


@pytest.fixture(scope="session")
def lcp_pool(artifacts: list[ModelArtifact], tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnginePool]:
    """One pool for the module; llama-cpp-python comes from the shared cache (built on first use)."""
    toolchain.ensure_install(cache_dir(), progress=lambda message: None)
    pool = EnginePool(LlamaCppPythonAdapter(), artifacts, tmp_path_factory.mktemp("llama-cpp-python"))
    yield pool
    pool.close()


class NoPenaltyBiasAdapter(LlamaCppPythonAdapter):
    """logit_bias requests with repeat_penalty 1.0; `keep_min_tokens` False drops the min_tokens that hold EOS off."""

    keep_min_tokens = True

    def logit_bias_request(self, model: str, prompt: str, bias: dict[int, float], max_tokens: int) -> ApiRequest:
        body = {**super().logit_bias_request(model, prompt, bias, max_tokens).body, "repeat_penalty": 1.0}
        if not self.keep_min_tokens:
            body.pop("min_tokens")
        return ApiRequest("/v1/completions", body)


class NoPenaltyNoMinTokensAdapter(NoPenaltyBiasAdapter):
    keep_min_tokens = False


def _with_adapter(session: EngineSession, adapter: LlamaCppPythonAdapter) -> EngineSession:
    adapter._model_path = session.adapter._model_path  # type: ignore[attr-defined]  # the served GGUF's vocabulary
    return dataclasses.replace(session, adapter=adapter)


def test_identity_is_the_pinned_release(lcp_pool):
    session = lcp_pool.session(LaunchSpec())
    assert session.identity.name == "llama-cpp-python"
    assert session.identity.version == toolchain.PACKAGE_VERSION
    assert "-DGGML_NATIVE=OFF" in session.identity.build["cmake_args"]


def test_grammar(lcp_pool):
    """Judged against the reference's constrained argmax: with repeat_penalty 1.0, as greedy decoding means."""
    verdict = check_grammar(_with_adapter(lcp_pool.session(LaunchSpec()), NoRepeatPenaltyAdapter()))
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_regex_as_grammar(lcp_pool):
    verdict = check_regex(_with_adapter(lcp_pool.session(LaunchSpec()), NoRepeatPenaltyAdapter()))
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_model_llama_default_repeat_penalty(lcp_pool):
    """Measured: at temperature 0 its default repeat_penalty 1.1 (server/types.py) runs before the greedy sampler
    (llama.py _init_sampler), so greedy texts leave the reference once a token repeats; first tokens agree."""
    session = lcp_pool.session(LaunchSpec())
    verdict = check_matches_reference(session, session.model.references)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert verdict.evidence.numbers["top1_share"] == 1.0, verdict.evidence.numbers


def test_model_llama_without_repeat_penalty(lcp_pool):
    session = _with_adapter(lcp_pool.session(LaunchSpec()), NoRepeatPenaltyAdapter())
    verdict = check_matches_reference(session, session.model.references)
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_logit_bias_dropped_beside_min_tokens(lcp_pool):
    """Measured: with min_tokens (its way to hold EOS off) the bias is lost: the server puts min_tokens' logits
    processor in place, and llama.py then assigns `logits_processor.extend(...)` (None) when adding the bias's, so
    neither runs; the biased ids equal the unbiased ones."""
    verdict = check_logit_bias(_with_adapter(lcp_pool.session(LaunchSpec()), NoPenaltyBiasAdapter()))
    assert verdict.status is Status.FAIL and "not honoured" in verdict.reason, verdict.evidence.numbers
    assert all(case["biased_ids"] == case["plain_ids"] for case in verdict.evidence.numbers["cases"])


def test_logit_bias_without_min_tokens(lcp_pool):
    """The same bias without min_tokens (and repeat_penalty 1.0) is honoured as greedy decoding with the bias."""
    verdict = check_logit_bias(_with_adapter(lcp_pool.session(LaunchSpec()), NoPenaltyNoMinTokensAdapter()))
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_echoed_logprobs_are_one_position_off(lcp_pool):
    """Measured: echoed prompt tokens come back with log-probabilities far from the reference (partial, not pass).
    Against the float32 reference each one is the token's log-probability in the next position's distribution
    (checked to 0.01 nats on two prompts, 2026-12-03): llama.py pairs echoed token i with logits row i, right only
    when a BOS precedes the prompt (row 0 then predicts the first token); the synthesized tokenizer adds no BOS."""
    verdict = check_prompt_logprobs(lcp_pool.session(LaunchSpec()))
    assert verdict.status is Status.PARTIAL, verdict.evidence.numbers
    assert verdict.evidence.numbers["max_logprob_diff"] > 1.0, verdict.evidence.numbers


def test_interrupted_streams(lcp_pool):
    """Measured: one model context serves one request at a time, and a request that arrives while another streams
    ends that stream early (server setting interrupt_requests, on by default): the load's streams come back cut."""
    with pytest.raises(RuntimeError, match="incomplete"):
        check_continuous_batching(lcp_pool.session(LaunchSpec()))


def test_no_separate_draft_model(lcp_pool):
    with pytest.raises(Unsupported, match="prompt-lookup-decoding"):
        lcp_pool.session(LaunchSpec(draft_model=DRAFT_MODEL))


def test_no_prefix_cache_switch(lcp_pool):
    with pytest.raises(NotMeasurable, match="no switch"):
        lcp_pool.session(LaunchSpec(prefix_caching=False))


def test_flash_attention(lcp_pool):
    verdict = check_flash_attention(
        lambda: lcp_pool.session(LaunchSpec(flash_attention=True)),
        lambda: lcp_pool.session(LaunchSpec(flash_attention=False)),
    )
    assert verdict.status is Status.PASS, verdict.evidence.numbers
    assert verdict.evidence.numbers["kernel"] == "fused_own", verdict.evidence.numbers


def test_flash_attention_off(lcp_pool):
    """Asked for flash attention but launched without it (its default): the buffers match."""
    off = lambda: lcp_pool.session(LaunchSpec(flash_attention=False))  # noqa: E731
    verdict = check_flash_attention(off, off)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers


def test_tool_choice_required_is_an_error(lcp_pool):
    """Measured: with --chat_format chatml-function-calling, tool_choice="required" fails with HTTP 500
    (llama_chat_format.py chatml_function_calling: `assert ... tool_choice == "auto"`). A 5xx is an error (issue
    24), never a refusal: the probe raises, and its record names the engine's answer."""
    with pytest.raises(EngineServerError, match="HTTP 500"):
        check_tool_calling(lcp_pool.session(LaunchSpec(tool_calling=True)))


def test_pattern_schema_kills_the_server(lcp_pool):
    """Measured: a JSON schema with a `pattern` becomes a GBNF grammar llama.cpp's parser rejects ("unknown
    escape"), and the server process dies (SIGSEGV) instead of answering an error. Last: it ends the engine."""
    session = lcp_pool.session(LaunchSpec())
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"semver": {"type": "string", "pattern": "^[0-9]\\.[0-9]{1,2}\\.[0-9]$"}},
        "required": ["semver"],
    }
    request = session.adapter.json_schema_request(session.served_model, "Answer with a JSON object.", schema, 50)
    with pytest.raises(httpx.TransportError):  # the connection drops: no HTTP answer at all
        httpx.post(session.running.base_url + request.path, json=request.body, timeout=300)
    deadline = time.monotonic() + 60
    while lcp_pool.engine_exit() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "exit code -11" in (lcp_pool.engine_exit() or ""), lcp_pool.engine_exit()
