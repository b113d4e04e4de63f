"""Every probe on real llama-server: it passes where the feature is on, and fails where it is off.

The negative cases are real engine configurations or real requests the server ignores,
never mocks: one slot instead of four, no draft model, flash attention off, the prompt
prefilled in one piece, a wrong model's weights, schema/grammar fields the server ignores.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from harness.engines.base import GrammarSpec, LaunchSpec, RegexSpec, ResolvedModels
from harness.engines.llamacpp import LlamaCppAdapter
from harness.launch.base import RunningEngine
from harness.models import find_artifact
from harness.outcomes import NotMeasurable, Unsupported
from harness.probing.session import EnginePool
from harness.records.results import Status
from harness.wire.client import EngineServerError, EvidenceClient
from harness.wire.request import ApiRequest
from probes.constrained_reference import SEED_ENV
from probes.test_attention import PAGED_SPEC, check_flash_attention, check_paged_attention
from probes.test_beam_search import check_beam_search
from probes.test_chunked_prefill import CHUNK_TOKENS, CONTROL_SPEC, check_chunked_prefill
from probes.test_continuous_batching import check_continuous_batching
from probes.test_grammar import check_grammar
from probes.test_json_schema import check_json_schema, check_json_schema_coverage
from probes.test_logit_bias import check_logit_bias
from probes.test_model_families import check_model_family, check_sliding_window, sliding_window
from probes.test_openai_api import check_openai_api
from probes.test_prefix_caching import check_prefix_caching
from probes.test_prompt_logprobs import check_prompt_logprobs
from probes.test_quantized import check_quantized
from probes.test_regex import check_regex
from probes.test_speculative import BAD_DRAFT_MODEL, DRAFT_MODEL, check_speculative, greedy_texts
from probes.test_tool_calling import check_tool_calling
from tests.cache_faker import CacheFakerProxy
from tests.replica_proxy import ReplicaProxy, fewer_steps

pytestmark = pytest.mark.engine_integration


class IgnoredFieldsAdapter(LlamaCppAdapter):
    """Asks for features with fields llama-server does not know (vLLM's legacy ones): it ignores them."""

    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "guided_json": schema},
        )

    def grammar_request(self, model: str, prompt: str, grammar: GrammarSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {
                "model": model,
                "prompt": prompt,
                "max_tokens": max_tokens,
                "temperature": 0,
                "guided_grammar": grammar.gbnf,
            },
        )


class SlotShareKvAdapter(LlamaCppAdapter):
    """The same KV budget split into one reserved share per slot (llama-server without --kv-unified)."""

    def launch_command(self, spec: LaunchSpec, models: ResolvedModels, port: int) -> list[str]:
        return [arg for arg in super().launch_command(spec, models, port) if arg != "--kv-unified"]


def test_openai_api(start_engine):
    assert check_openai_api(start_engine()).status is Status.PASS


def test_openai_api_absent_under_other_prefix(start_engine):
    verdict = check_openai_api(start_engine(LaunchSpec(api_prefix="/native")))
    assert verdict.status is Status.FAIL, verdict.reason


def test_json_schema(start_engine):
    verdict = check_json_schema(start_engine())
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_json_schema_ignored_field(start_engine, llama_build):
    verdict = check_json_schema(start_engine(adapter=IgnoredFieldsAdapter(llama_build.server)))
    assert verdict.status is Status.FAIL and "not honoured" in verdict.reason


def test_grammar(start_engine):
    verdict = check_grammar(start_engine())
    assert verdict.status is Status.PASS, verdict.evidence.numbers
    assert not any(outcome["control_parses"] for outcome in verdict.evidence.numbers["outcomes"].values())


def test_grammar_ignored_field(start_engine, llama_build):
    verdict = check_grammar(start_engine(adapter=IgnoredFieldsAdapter(llama_build.server)))
    assert verdict.status is Status.FAIL and "not honoured" in verdict.reason


def test_beam_search_n_identical_copies(start_engine):
    """llama-server takes `n` and ignores `use_beam_search`: n copies of the greedy text, not beams."""
    verdict = check_beam_search(start_engine())
    assert verdict.status is Status.FAIL and "identical" in verdict.reason, verdict.evidence.numbers
    assert "examples/beam-search" in verdict.reason and "not llama-server" in verdict.reason  # the seed's ✅ cites it


def _speculative(start_engine, draft: str):
    plain = start_engine()
    control, _ = greedy_texts(plain, plain.model.references)
    session = start_engine(LaunchSpec(draft_model=draft))
    return check_speculative(session, session.model.references, control)


def test_speculative_decoding(start_engine):
    verdict = _speculative(start_engine, DRAFT_MODEL)
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_speculative_draft_never_agrees(start_engine):
    verdict = _speculative(start_engine, BAD_DRAFT_MODEL)
    assert verdict.status is Status.FAIL and "no acceptance" in verdict.reason, verdict.evidence.numbers


def test_speculative_counters_absent_without_draft(start_engine):
    session = start_engine()
    with pytest.raises(NotMeasurable, match="draft_n"):
        check_speculative(session, session.model.references, [case.greedy_text for case in session.model.references])


def test_continuous_batching(start_engine):
    verdict = check_continuous_batching(start_engine())
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_continuous_batching_single_slot(start_engine):
    verdict = check_continuous_batching(start_engine(LaunchSpec(parallel_slots=1)))
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert verdict.evidence.numbers["shared_steps"] != "batched"
    assert not verdict.evidence.numbers["short_finished_first"]


def test_continuous_batching_replicas_without_batching(start_engine):
    """Four one-slot llama-servers behind a round-robin proxy: requests run at once, and a short one
    would overtake a long one, but their streams advance independently."""
    replicas = [start_engine(LaunchSpec(parallel_slots=1)) for _ in range(4)]
    with ReplicaProxy([replica.running.base_url for replica in replicas]) as proxy:
        session = dataclasses.replace(replicas[0], running=RunningEngine(base_url=proxy.url, log_path=None))
        verdict = check_continuous_batching(session)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert verdict.evidence.numbers["shared_steps"] == "independent"
    assert verdict.evidence.numbers["tokens_per_step"] <= 1.0


def test_continuous_batching_replicas_with_rewritten_metrics(start_engine):
    """Two one-slot llama-servers behind a proxy that divides their step counter by 3: the counters claim
    3 tokens per forward pass, the streams still advance independently."""
    replicas = [start_engine(LaunchSpec(parallel_slots=1)) for _ in range(2)]
    with ReplicaProxy([replica.running.base_url for replica in replicas], rewrite_metrics=fewer_steps) as proxy:
        session = dataclasses.replace(replicas[0], running=RunningEngine(base_url=proxy.url, log_path=None))
        verdict = check_continuous_batching(session)
    numbers = verdict.evidence.numbers
    assert verdict.status is Status.FAIL, numbers
    assert numbers["shared_steps"] == "independent" and numbers["counters_say"] == "batched", numbers


# The quantized rows' pass and fail tests draw their split prompts from one seed, so the pair chooses them once
# (harness.models.format_prompts.file_splits); a run draws a fresh one.
SPLIT_SEED = "3"  # Q8_0: 16 splits among the first 3176 candidates (measured)


@pytest.mark.parametrize("fmt", ["f16", "q8_0", "q4_k_m"])
def test_gguf_formats(start_engine, monkeypatch, fmt):
    monkeypatch.setenv(SEED_ENV, SPLIT_SEED)
    verdict = check_quantized(start_engine(LaunchSpec(model_format=fmt)), fmt)
    assert verdict.status is Status.PASS, verdict.evidence.numbers


@pytest.mark.parametrize("fmt", ["f16", "q8_0", "q4_k_m"])
def test_gguf_wrong_weights(start_engine, artifacts, monkeypatch, fmt):
    """llama-alt's file served, llama's judged: the engine writes neither side of llama's split prompts."""
    monkeypatch.setenv(SEED_ENV, SPLIT_SEED)
    session = start_engine(LaunchSpec(model="llama-alt", model_format=fmt))
    session.model = find_artifact(artifacts, "llama", fmt)
    verdict = check_quantized(session, fmt)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers


@pytest.mark.parametrize("fmt", ["q8_0", "q4_k_m"])
def test_gguf_float_model_attached_as_quantized(start_engine, llama_build, artifacts, tmp_path, monkeypatch, fmt):
    """The f16 file served by llama-server and attached as a quantized format (`--attach-format`): the float
    weights write the float side of every split prompt, so the row fails (on the file's own fixed references they
    passed 16 of 16)."""
    monkeypatch.setenv(SEED_ENV, SPLIT_SEED)
    served = start_engine(LaunchSpec(model_format="f16"))
    spec = LaunchSpec(model_format=fmt)
    pool = EnginePool(
        LlamaCppAdapter(llama_build.server),
        artifacts,
        tmp_path / "attach",
        attach_url=served.running.base_url,
        attach_spec=spec,
    )
    try:
        verdict = check_quantized(pool.session(spec), fmt)
    finally:
        pool.close()
    numbers = verdict.evidence.numbers
    assert verdict.status is Status.FAIL, numbers
    assert numbers["follows"]["float"] > numbers["follows"]["quantized"], numbers


@pytest.mark.parametrize("fmt", ["awq", "gptq", "w8a8", "exl2"])
def test_hf_quantized_formats_not_loadable(start_engine, fmt):
    """llama-server loads GGUF only: a documented absence with its source in the pinned sdist."""
    with pytest.raises(Unsupported) as raised:
        start_engine(LaunchSpec(model_format=fmt))
    assert "llama-model-loader.cpp" in (raised.value.source or "")


@pytest.mark.parametrize("family", ["llama", "mistral", "mixtral"])
def test_model_families(start_engine, family):
    """The family row on fresh seeded prompts inside Mistral's window, where llama.cpp's "llama" arch computes
    Mistral exactly."""
    session = start_engine(LaunchSpec(model=family))
    verdict = check_model_family(session)
    numbers = verdict.evidence.numbers
    assert verdict.status is Status.PASS, numbers
    assert isinstance(numbers["seed"], int) and len(numbers["outputs"]) == 4, numbers
    window = sliding_window(session)
    assert window is None or max(numbers["prompt_tokens"]) + 16 < window, numbers


def test_mistral_sliding_window_ignored(start_engine):
    """llama.cpp loads Mistral as its "llama" arch, which reads no sliding window (src/models/llama.cpp of
    build 11434): over ~200-token prompts and a 64-token window it attends to everything and diverges. The
    sub-row names the finding: its outputs are full attention's, and its log says n_swa = 0."""
    session = start_engine(LaunchSpec(model="mistral"))
    verdict = check_sliding_window(session)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    numbers = verdict.evidence.numbers
    assert numbers["finding"] == "sliding window ignored", numbers
    assert numbers["engine_window"]["window_ignored"] and numbers["engine_window"]["n_swa"] == 0, numbers
    assert "n_swa = 0" in verdict.reason


def test_model_family_wrong_weights(start_engine, artifacts):
    """llama-alt served, llama judged: its fresh references are llama's, which other weights do not reproduce."""
    session = start_engine(LaunchSpec(model="llama-alt"))
    session.model = find_artifact(artifacts, "llama", "f16")
    verdict = check_model_family(session)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers


def test_flash_attention(start_engine):
    verdict = check_flash_attention(
        lambda: start_engine(LaunchSpec(flash_attention=True)), lambda: start_engine(LaunchSpec(flash_attention=False))
    )
    assert verdict.status is Status.PASS, verdict.evidence.numbers
    assert verdict.evidence.numbers["kernel"] == "fused_own" and verdict.evidence.numbers["seed_mark"] == "🟠"


def test_flash_attention_off(start_engine):
    """Asked for flash attention but launched without it: the buffers match those without it."""
    off = lambda: start_engine(LaunchSpec(flash_attention=False))  # noqa: E731
    verdict = check_flash_attention(off, off)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers


def test_paged_attention_unified_cells(start_engine):
    verdict = check_paged_attention(start_engine(PAGED_SPEC))
    assert verdict.status is Status.PASS, verdict.evidence.numbers
    assert verdict.evidence.numbers["seed_mark"] == "🟠"


def test_paged_attention_reserved_slots(start_engine, llama_build):
    verdict = check_paged_attention(start_engine(PAGED_SPEC, adapter=SlotShareKvAdapter(llama_build.server)))
    assert verdict.status is Status.FAIL, verdict.evidence.numbers


def test_chunked_prefill(start_engine):
    verdict = check_chunked_prefill(
        lambda: start_engine(LaunchSpec(prefill_chunk_tokens=CHUNK_TOKENS)), lambda: start_engine(CONTROL_SPEC)
    )
    assert verdict.status is Status.PASS, verdict.evidence.numbers
    numbers = verdict.evidence.numbers
    assert numbers["launch_flags"] == ["--batch-size", "64", "--ubatch-size", "64"], numbers
    assert "`--batch-size 64 --ubatch-size 64`" in verdict.reason
    # llama-server's own log: prompt chunks of 63 tokens beside a decode token while the decode ran
    assert numbers["engine_batches"]["n_batch"] == CHUNK_TOKENS and numbers["engine_batches"]["mixed"] > 0, numbers


def test_whole_prompt_prefill(start_engine):
    whole = start_engine(CONTROL_SPEC)
    verdict = check_chunked_prefill(lambda: whole, lambda: whole)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers


@pytest.mark.parametrize("spec", [LaunchSpec(tensor_parallel=2), LaunchSpec(pipeline_parallel=2)])
def test_parallel_needs_gpus_on_a_gpu_build_and_processes_outside_a_container(llama_build, spec, monkeypatch):
    """A CPU build splits over local RPC stages (tests/test_parallel.py); a GPU build needs the GPUs, and in a
    container the stages cannot be started."""
    monkeypatch.setenv("INFERCHECK_LLAMA_BACKEND", "cuda")
    with pytest.raises(NotMeasurable, match="GPUs"):
        LlamaCppAdapter(llama_build.server).check_launchable(spec, devices=0)
    monkeypatch.setenv("INFERCHECK_LLAMA_BACKEND", "cpu")
    adapter = LlamaCppAdapter(llama_build.server)
    adapter.check_launchable(spec, devices=0)
    adapter.use_container(None)
    with pytest.raises(NotMeasurable, match="container"):
        adapter.check_launchable(spec, devices=0)


class UnknownFieldsAdapter(LlamaCppAdapter):
    """Asks for the newer rows' features with fields llama-server does not know: it ignores them."""

    def regex_request(self, model: str, prompt: str, regex: RegexSpec, max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/completions",
            {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "regex": regex.pattern},
        )

    def logit_bias_request(self, model: str, prompt: str, bias: dict[int, float], max_tokens: int) -> ApiRequest:
        request = super().logit_bias_request(model, prompt, bias, max_tokens)
        body = {key: value for key, value in request.body.items() if key != "logit_bias"}
        return ApiRequest(request.path, {**body, "token_bias": request.body["logit_bias"]})

    def json_schema_request(self, model: str, prompt: str, schema: dict[str, Any], max_tokens: int) -> ApiRequest:
        return ApiRequest(
            "/v1/chat/completions",
            {
                "model": model,
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": max_tokens,
                "temperature": 0,
                "guided_json": schema,
            },
        )


def test_regex(start_engine):
    """llama-server has no regex field: the harness sends the same language as GBNF, so the pass reads 🟠."""
    verdict = check_regex(start_engine())
    assert verdict.status is Status.PASS, verdict.evidence.numbers
    assert verdict.evidence.numbers["seed_mark"] == "🟠" and "harness wrote the grammar" in verdict.reason


def test_regex_unknown_field(start_engine, llama_build):
    verdict = check_regex(start_engine(adapter=UnknownFieldsAdapter(llama_build.server)))
    assert verdict.status is Status.FAIL and "not honoured" in verdict.reason, verdict.evidence.numbers


def test_logit_bias(start_engine):
    verdict = check_logit_bias(start_engine())
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_logit_bias_unknown_field(start_engine, llama_build):
    verdict = check_logit_bias(start_engine(adapter=UnknownFieldsAdapter(llama_build.server)))
    assert verdict.status is Status.FAIL and "not honoured" in verdict.reason, verdict.evidence.numbers


def test_prompt_logprobs_echo_without_prompt_logprobs(start_engine):
    """Measured on the pinned llama-server (b11434): /v1/completions accepts echo (HTTP 200) but the answer
    carries no prompt-token log-probabilities."""
    verdict = check_prompt_logprobs(start_engine())
    assert verdict.status is Status.FAIL and "missing" in verdict.reason, verdict.evidence.numbers


def test_prefix_caching(start_engine):
    verdict = check_prefix_caching(start_engine())
    assert verdict.status is Status.PASS, verdict.evidence.numbers


def test_prefix_caching_off(start_engine):
    verdict = check_prefix_caching(start_engine(LaunchSpec(prefix_caching=False)))
    assert verdict.status is Status.FAIL, verdict.evidence.numbers


def test_prefix_caching_faked(start_engine):
    """llama-server with its cache off behind a proxy that claims cached tokens for every prompt it has seen the
    start of and answers every other prompt (what it takes for controls) late: its hits still prefill the whole
    prompt, so they grow with the prefix as the fresh prompts do."""
    session = start_engine(LaunchSpec(prefix_caching=False))
    with CacheFakerProxy(session.running.base_url) as proxy:
        faked = dataclasses.replace(
            session, running=RunningEngine(base_url=proxy.url, log_path=None), client=EvidenceClient(proxy.url)
        )
        verdict = check_prefix_caching(faked)
    assert verdict.status is Status.FAIL, verdict.evidence.numbers
    assert verdict.evidence.numbers["reported"], verdict.evidence.numbers


def test_tool_calling_truncated_before_a_call_is_inconclusive(start_engine):
    """Measured: the pinned llama-server finds the synthesized template's <tool_call> format, and its grammar for
    tool_choice=required lets content come first; the random model writes that content until max_tokens, so no
    answer ends and none is evidence either way: an error, never a fail."""
    verdict = check_tool_calling(start_engine(LaunchSpec(tool_calling=True)))
    assert verdict.status is Status.ERROR, verdict.evidence.numbers
    assert {o["outcome"] for o in verdict.evidence.numbers["outcomes"].values()} == {"truncated"}


def test_tool_calling_without_jinja_is_an_error(start_engine):
    """Measured: llama-server started with --no-jinja answers the tools request HTTP 500 "tools param requires
    --jinja flag" (and the same chat without tools 200). A 5xx is an error (issue 24), never a refusal: the
    probe raises, and its record names the engine's message."""
    with pytest.raises(EngineServerError, match="HTTP 500.*jinja"):
        check_tool_calling(start_engine(LaunchSpec(tool_calling=False)))


# llama.cpp's grammar for some bounds lets through text its own chat parser then refuses (measured: `"maximum": -50`
# admits "-0", answered with this HTTP 500); which schemas meet it depends on the run seed's property names.
PARSER_REFUSAL = "does not match the expected peg-native format"


def test_json_schema_coverage(start_engine):
    """Every valid answer is teacher-forced through the reference under llama-server's own schema language (the
    chat parser's optional ```json fence around llama.cpp's JSON grammar): none is unexplained, and where the copy
    of that language is exact every valid answer is the reference's constrained argmax; off-dialect answers
    (approximate copy: llguidance's repeatable whitespace) keep the row partial."""
    verdict = check_json_schema_coverage(start_engine())
    numbers = verdict.evidence.numbers
    counts, outcomes = numbers["counts"], numbers["outcomes"]
    assert verdict.status in (Status.PASS, Status.PARTIAL), counts
    assert counts["unexplained"] == 0, {n: o["detail"] for n, o in outcomes.items() if o["outcome"] == "unexplained"}
    assert counts["honoured"] + counts["dialect"] >= 0.5 * numbers["schemas"], counts
    exact = [o for o in outcomes.values() if (o["reference"] or {}).get("exact_dialect")]
    assert len(exact) >= 15 and all(o["outcome"] == "honoured" for o in exact), counts
    assert numbers["agreed"] > 0.8 * numbers["positions"], numbers["positions"]  # measured 0.93-0.99 (7 seeds)
    errors = [o["detail"] for o in outcomes.values() if o["outcome"] == "error"]
    assert all(PARSER_REFUSAL in detail for detail in errors), errors


def test_json_schema_coverage_unknown_field(start_engine, llama_build):
    verdict = check_json_schema_coverage(start_engine(adapter=UnknownFieldsAdapter(llama_build.server)))
    assert verdict.status is Status.FAIL, verdict.evidence.numbers["counts"]
    assert verdict.evidence.numbers["counts"]["ignored"] == verdict.evidence.numbers["schemas"]
