"""The GPU engines' adapters against their engines' documented flags and request fields, and the GPU model sets
(no GPU needed).

Each assertion quotes the documentation or source line it follows; the modules' docstrings name the files.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.cli.capabilities import engine_table, expressible
from harness.docker.specs import all_specs
from harness.engines import adapter_classes, containerized, get_adapter
from harness.engines.base import GrammarSpec, LaunchSpec, ResolvedModels
from harness.engines.containerized import ContainerEngineAdapter
from harness.engines.exllamav2 import kbnf_from_gbnf
from harness.engines.exllamav3 import _API_KEY as _API_KEY_PATTERN
from harness.models.sets import DEFAULT_GPU_SET, ModelSetError, choose, hub_reachable, load_model_set
from harness.outcomes import NotMeasurable, Unsupported
from harness.paths import REPO_ROOT

GPU_ENGINES = ["TGI", "TensorRT-LLM", "LightLLM", "Fastgen", "ExLlamaV2", "ExLlamaV3", "SGLang"]
EXTRA_COLUMNS = ["SGLang", "ExLlamaV3", "llama-cpp-python"]  # beyond the seed table
SEED_COLUMNS = ["vLLM", "TensorRT-LLM", "llama.cpp", "TGI", "LightLLM", "Fastgen", "ExLlamaV2"]
GRAMMAR = GrammarSpec(gbnf='root ::= "a" [0-9]{1,2}\n', lark='start: "a" /[0-9]/~1..2\n')
SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


@pytest.fixture
def models(tmp_path: Path) -> ResolvedModels:
    for name in ("llama", "llama-draft"):
        (tmp_path / name / "hf").mkdir(parents=True)
    return ResolvedModels(model=tmp_path / "llama" / "hf", draft_model=tmp_path / "llama-draft" / "hf")


def single(models: ResolvedModels) -> ResolvedModels:
    return ResolvedModels(model=models.model)


def after(command: list[str], flag: str) -> str:
    return command[command.index(flag) + 1]


def gpu_adapter(name: str):
    """The adapter as a GPU run sees it: told its GPU image (SGLang runs its CPU path when no image is given)."""
    adapter = get_adapter(name)
    image = next((spec for spec in all_specs() if spec.engine == name and spec.needs_gpu), None)
    if image is not None:
        adapter.use_container(image)
    return adapter


def test_every_column_has_an_adapter_named_like_its_header():
    columns = json.loads((REPO_ROOT / "report" / "claims.json").read_text())["engines"]
    assert columns == SEED_COLUMNS
    assert set(adapter_classes()) == set(SEED_COLUMNS) | set(EXTRA_COLUMNS)
    for name in GPU_ENGINES:
        assert isinstance(get_adapter(name), ContainerEngineAdapter)


@pytest.mark.parametrize("name", GPU_ENGINES)
def test_no_gpu_means_not_measurable(name):
    adapter = gpu_adapter(name)
    with pytest.raises(NotMeasurable, match="needs an NVIDIA GPU; this host has 0"):
        adapter.check_launchable(LaunchSpec(), devices=0)
    adapter.check_launchable(LaunchSpec(), devices=1)
    with pytest.raises(NotMeasurable, match="needs 2 GPUs"):
        adapter.check_launchable(LaunchSpec(tensor_parallel=2), devices=1)


@pytest.mark.parametrize("name", GPU_ENGINES)
def test_prepare_points_to_the_docker_launcher(name, monkeypatch):
    monkeypatch.setattr(containerized, "gpu_names", lambda: [])
    with pytest.raises(FileNotFoundError, match=f"--engine {name} --launcher docker.*no NVIDIA GPU"):
        gpu_adapter(name).prepare()


def test_prepare_accepts_a_native_install_with_a_gpu(monkeypatch):
    monkeypatch.setattr(containerized, "gpu_names", lambda: ["NVIDIA H100 80GB HBM3, 81559 MiB, 570.1"])
    monkeypatch.setattr(containerized.shutil, "which", lambda command: f"/usr/bin/{command}")
    get_adapter("TGI").prepare()


def test_tgi(models):
    adapter = get_adapter("TGI")
    command = adapter.launch_command(
        LaunchSpec(tensor_parallel=2, model_format="awq", prefill_chunk_tokens=64), single(models), 8123
    )
    # launcher.md: "--model-id <MODEL_ID>", "--hostname <HOSTNAME>", "-p, --port <PORT>"
    assert command[:7] == [
        "text-generation-launcher",
        "--model-id",
        str(models.model),
        "--hostname",
        "127.0.0.1",
        "--port",
        "8123",
    ]
    # launcher.md: "--num-shard <NUM_SHARD>"; "--quantize <QUANTIZE> ... awq: 4 bit quantization";
    # "--max-batch-prefill-tokens <MAX_BATCH_PREFILL_TOKENS> Limits the number of tokens for the prefill operation"
    assert (after(command, "--num-shard"), after(command, "--quantize")) == ("2", "awq")
    # launcher.md NUM_SHARD: "the number of shards ... By default it will use all available GPUs": a single-GPU
    # probe on a 2-GPU runner must still ask for one shard
    assert after(adapter.launch_command(LaunchSpec(), single(models), 8123), "--num-shard") == "1"
    assert after(command, "--max-batch-prefill-tokens") == "64"
    # server.rs: `adapter_id: model.as_ref().filter(|m| *m != "tgi")`: any other model name is a LoRA adapter
    assert adapter.served_model_name(single(models)) == "tgi"
    # lib.rs GenerateParameters: `details`, `top_n_tokens`; GrammarType is `#[serde(tag = "type", content = "value")]`
    greedy = adapter.greedy_request("tgi", "p", 16, 5)
    assert greedy.path == "/generate" and greedy.body["parameters"]["top_n_tokens"] == 5
    parsed = adapter.parse_greedy(
        {
            "generated_text": " cat",
            "details": {
                "top_tokens": [
                    [
                        {"id": 1, "text": " cat", "logprob": -0.1, "special": False},
                        {"id": 2, "text": " dog", "logprob": -2.5, "special": False},
                    ]
                ]
            },
        }
    )
    assert parsed.text == " cat" and parsed.top_logprobs == [{" cat": -0.1, " dog": -2.5}]
    # using_guidance.md: grammar={"type": "json", "value": schema}; ChatRequest.response_format: Option<GrammarType>
    body = adapter.json_schema_request("tgi", "p", SCHEMA, 50).body
    assert body["response_format"] == {"type": "json", "value": SCHEMA}
    with pytest.raises(Unsupported, match="1050"):
        adapter.grammar_request("tgi", "p", GRAMMAR, 8)
    with pytest.raises(Unsupported, match="best_of"):
        adapter.beam_search_request("tgi", "p", 3, 8)
    # lib.rs CompletionRequest has no ignore_eos field: nothing is sent that TGI would silently drop
    assert "ignore_eos" not in adapter.fixed_length_request("tgi", "p", 8, stream=True).body
    with pytest.raises(Unsupported, match="pipeline"):
        adapter.check_launchable(LaunchSpec(pipeline_parallel=2), devices=2)
    with pytest.raises(NotMeasurable, match="Medusa"):
        adapter.check_launchable(LaunchSpec(draft_model="llama-draft"), devices=1)


def test_tgi_attention_evidence_reads_the_log(tmp_path):
    from harness.launch.base import RunningEngine

    log = tmp_path / "tgi.log"
    # models/globals.py: log_master(logger.info, f"Using Attention = {ATTENTION}")
    log.write_text(
        "INFO text_generation_launcher: Using prefix caching = True\n"
        "INFO text_generation_launcher: Using Attention = flashinfer\n"
    )
    evidence = get_adapter("TGI").attention_evidence(RunningEngine(base_url="", log_path=log))
    assert evidence["flash_attention"] == "on" and evidence["paged_kv_cache"] is True
    assert "blocks of 1 token" in evidence["kv_layout"]
    # models/globals.py: ATTENTION == "flashdecoding-ipex" (Intel IPEX images) has BLOCK_SIZE 64
    log.write_text("INFO text_generation_launcher: Using Attention = flashdecoding-ipex\n")
    evidence = get_adapter("TGI").attention_evidence(RunningEngine(base_url="", log_path=log))
    assert evidence["flash_attention"] == "on" and "blocks of 64 token" in evidence["kv_layout"]


def test_tensorrt_llm(models):
    adapter = get_adapter("TensorRT-LLM")
    command = adapter.launch_command(
        LaunchSpec(tensor_parallel=2, pipeline_parallel=2, prefill_chunk_tokens=64), models, 8124
    )
    # serve.py: main = DefaultGroup(commands={"serve": serve, ...}); @click.command("serve") @click.argument("model")
    assert command[:2] == ["trtllm-serve", "serve"] and command[-1] == str(models.model)
    # serve.py: @click.option("--tensor_parallel_size", "--tp_size"), ("--pipeline_parallel_size", "--pp_size"),
    # "--backend" ... default="pytorch", "--enable_chunked_prefill", "--max_num_tokens"
    assert (after(command, "--tp_size"), after(command, "--pp_size"), after(command, "--backend")) == (
        "2",
        "2",
        "pytorch",
    )
    assert "--enable_chunked_prefill" in command and after(command, "--max_num_tokens") == "64"
    # speculative-decoding.md: speculative_config: decoding_type: DraftTarget ... speculative_model_dir
    options_path = Path(after(command, "--extra_llm_api_options"))
    assert models.model.parent not in options_path.parents  # never written into the model folder
    options = yaml.safe_load(options_path.read_text())
    assert options["speculative_config"]["speculative_model_dir"] == str(models.draft_model)
    # guided-decoding page: "specifying guided_decoding_backend with xgrammar ... in the YAML configuration file"
    assert options["guided_decoding_backend"] == "xgrammar"
    # NVIDIA/TensorRT-LLM#7368: the PyTorch backend rejects a request whose beam width differs from the launch's
    # max_beam_width, so only the beam-search probe's own launch sets it, to the width it asks for
    assert "--max_beam_width" not in command
    assert "--max_beam_width" not in adapter.launch_command(LaunchSpec(), single(models), 8124)
    beam_launch = adapter.beam_search_launch(LaunchSpec(), 3)
    assert after(adapter.launch_command(beam_launch, single(models), 8124), "--max_beam_width") == "3"
    assert get_adapter("vLLM").beam_search_launch(LaunchSpec(), 3) == LaunchSpec()  # others reuse the probe's launch
    # openai_protocol.py ResponseFormat: type Literal["text", "json", ..., "ebnf", ...]; schema; ebnf
    assert adapter.json_schema_request("m", "p", SCHEMA, 50).body["response_format"] == {
        "type": "json",
        "schema": SCHEMA,
    }
    assert adapter.grammar_request("m", "p", GRAMMAR, 8).body["response_format"] == {
        "type": "ebnf",
        "ebnf": GRAMMAR.gbnf,
    }
    # openai_protocol.py CompletionRequest: "use_beam_search: bool = False", "n: int = 1"
    beam = adapter.beam_search_request("m", "p", 3, 8).body
    assert beam["use_beam_search"] is True and beam["n"] == 3
    # CompletionResponseChoice.avg_decoded_tokens_per_iter: 2 tokens per step over 16 tokens = 8 steps, 8 accepted
    stats = adapter.speculative_stats(
        [{"choices": [{"avg_decoded_tokens_per_iter": 2.0}], "usage": {"completion_tokens": 16}}], None
    )
    assert stats == {"draft_tokens": 32, "accepted_tokens": 8}
    with pytest.raises(NotMeasurable):
        adapter.speculative_stats([{"choices": [{}], "usage": {"completion_tokens": 16}}], None)
    with pytest.raises(Unsupported, match="EXL2"):
        adapter.check_launchable(LaunchSpec(model_format="exl2"), devices=1)


def test_vllm_gpu_image_does_not_reuse_the_cpu_adapter(models):
    """The CUDA image: no float32, no CPU environment, FlashAttention launchable, GGUF not judged by the CPU package."""
    from harness.docker.specs import spec_named

    cpu, gpu = get_adapter("vLLM"), get_adapter("vLLM")
    gpu.use_container(spec_named("vllm"))
    assert after(cpu.launch_command(LaunchSpec(), single(models), 8000), "--dtype") == "float32"
    command = gpu.launch_command(LaunchSpec(flash_attention=True), single(models), 8000)
    assert after(command, "--dtype") == "bfloat16" and after(command, "--attention-backend") == "FLASH_ATTN"
    assert gpu.launch_env(LaunchSpec()) == {} and "VLLM_CPU_KVCACHE_SPACE" in cpu.launch_env(LaunchSpec())
    gpu.check_launchable(LaunchSpec(flash_attention=True), devices=1)
    with pytest.raises(NotMeasurable, match="GPU"):
        cpu.check_launchable(LaunchSpec(flash_attention=True), devices=1)
    with pytest.raises(Unsupported):
        cpu.check_launchable(LaunchSpec(model_format="q8_0"), devices=0)
    with pytest.raises(NotMeasurable, match="vllm-cpu"):
        gpu.check_launchable(LaunchSpec(model_format="q8_0"), devices=1)
    with pytest.raises(NotMeasurable, match="needs 1 NVIDIA GPU"):
        gpu.check_launchable(LaunchSpec(), devices=0)


def test_lightllm(models):
    adapter = get_adapter("LightLLM")
    command = adapter.launch_command(LaunchSpec(tensor_parallel=2, prefill_chunk_tokens=64), single(models), 8125)
    # api_cli.py: "--model_dir", "--tp" ("model tp parral size"), "--chunked_prefill_size",
    # "--output_constraint_mode" choices=["outlines", "xgrammar", "none"], default="none"
    assert command[:4] == ["python3", "-m", "lightllm.server.api_server", "--model_dir"]
    assert (after(command, "--tp"), after(command, "--chunked_prefill_size")) == ("2", "64")
    assert after(command, "--output_constraint_mode") == "xgrammar"
    # api_lightllm.py: prompt = request_dict.pop("inputs"); return_details = sample_params_dict.pop("return_details")
    greedy = adapter.greedy_request("m", "p", 16, 5)
    assert greedy.path == "/generate" and greedy.body["parameters"]["do_sample"] is False
    parsed = adapter.parse_greedy({"generated_text": [" cat"], "tokens": [{"id": 3, "logprob": -0.2, "text": " cat"}]})
    assert parsed.text == " cat" and parsed.top_logprobs == [{" cat": -0.2}]
    # sampling_params.py: guided_grammar = kwargs.get("guided_grammar", "")
    assert adapter.grammar_request("m", "p", GRAMMAR, 8).body["parameters"]["guided_grammar"] == GRAMMAR.gbnf
    # api_openai.py: obj = request.response_format.get("schema") ... sampling_params_dict["guided_json"]
    chat = adapter.json_schema_request("m", "p", SCHEMA, 50).body
    assert chat["response_format"]["schema"] == SCHEMA and "temperature" not in chat  # "temperature must > 0.0"
    assert adapter.fixed_length_request("m", "p", 8, stream=True).body["ignore_eos"] is True
    for need, spec in (("MTP", LaunchSpec(draft_model="llama-draft")), ("pipeline", LaunchSpec(pipeline_parallel=2))):
        with pytest.raises(Unsupported, match=need):
            adapter.check_launchable(spec, devices=2)


def test_fastgen(models):
    adapter = get_adapter("Fastgen")
    command = adapter.launch_command(LaunchSpec(tensor_parallel=2), single(models), 8126)
    # openai_api_server.py: parser.add_argument("--model" ...), ('--tensor-parallel', type=int ...)
    assert command[:5] == ["python3", "-m", "mii.entrypoints.openai_api_server", "--model", str(models.model)]
    assert after(command, "--tensor-parallel") == "2"
    # data_models.py CompletionRequest: "min_tokens: Optional[int] = None", "top_k: Optional[int] = None"
    fixed = adapter.fixed_length_request("m", "p", 8, stream=True).body
    assert fixed["min_tokens"] == fixed["max_tokens"] == 8 and "ignore_eos" not in fixed
    # openai_api_server.py: CompletionResponseChoice(... logprobs=None ...)
    with pytest.raises(NotMeasurable, match="logprobs=None"):
        adapter.greedy_request("m", "p", 16, 5)
    assert adapter.greedy_request("m", "p", 16, 0).body["top_k"] == 1
    for build in (
        lambda: adapter.json_schema_request("m", "p", SCHEMA, 8),
        lambda: adapter.grammar_request("m", "p", GRAMMAR, 8),
        lambda: adapter.beam_search_request("m", "p", 3, 8),
    ):
        with pytest.raises(Unsupported):
            build()
    for spec in (
        LaunchSpec(draft_model="llama-draft"),
        LaunchSpec(pipeline_parallel=2),
        LaunchSpec(model_format="awq"),
    ):
        with pytest.raises(Unsupported):
            adapter.check_launchable(spec, devices=2)


def test_exllamav2_through_tabbyapi(models):
    adapter = get_adapter("ExLlamaV2")
    command = adapter.launch_command(LaunchSpec(prefill_chunk_tokens=64, tensor_parallel=2), models, 8127)
    # config_models.py (as --kebab-case options, args.py): model_dir, model_name, draft_model_dir,
    # draft_model_name, tensor_parallel, chunk_size, max_batch_size
    assert (after(command, "--model-dir"), after(command, "--model-name")) == (str(models.model.parent), "hf")
    assert after(command, "--draft-model-dir") == str(models.draft_model.parent)  # type: ignore[union-attr]
    assert (after(command, "--chunk-size"), after(command, "--tensor-parallel")) == ("64", "true")
    # sampling.py: json_schema: Optional[object]; grammar_string: Optional[str]
    assert adapter.json_schema_request("m", "p", SCHEMA, 50).body["json_schema"] == SCHEMA
    assert adapter.grammar_request("m", "p", GRAMMAR, 8).body["grammar_string"].startswith("start ::=")
    # formatron FormatterBuilder.append_line: "a newline character is appended to the input"
    assert adapter.completion_text({"choices": [{"text": "SELECT id FROM users;\n"}]}) == ["SELECT id FROM users;"]
    identity_notes = adapter.build_notes["server"]
    assert "TabbyAPI" in identity_notes and "no server of its own" in identity_notes
    with pytest.raises(Unsupported, match="AWQ"):
        adapter.check_launchable(LaunchSpec(model_format="awq"), devices=1)
    adapter.check_launchable(LaunchSpec(model_format="exl2"), devices=1)


def test_gbnf_becomes_kbnf():
    # grammar.py: kbnf_definition returns self.kbnf_string.replace("start", self.nonterminal): the root is `start`
    kbnf = kbnf_from_gbnf('root ::= pair (";" pair){1,3}\npair ::= key "=" digit digit?\ndigit ::= [0-9]\n')
    assert kbnf.splitlines() == [
        'start ::= pair (";" pair) (";" pair)? (";" pair)?;',
        'pair ::= key "=" digit digit?;',
        'digit ::= #"[0-9]";',
    ]
    assert kbnf_from_gbnf('root ::= "a" ("b"){2,}\n') == 'start ::= "a" ("b") ("b") ("b")*;\n'


def test_sglang(models):
    adapter = gpu_adapter("SGLang")
    command = adapter.launch_command(
        LaunchSpec(tensor_parallel=2, pipeline_parallel=2, model_format="awq", prefill_chunk_tokens=64), models, 8128
    )
    # server_arguments.md: --model-path, --tp-size, --pp-size, --quantization, --chunked-prefill-size
    assert command[:5] == ["python3", "-m", "sglang.launch_server", "--model-path", str(models.model)]
    assert [
        after(command, flag) for flag in ("--tp-size", "--pp-size", "--quantization", "--chunked-prefill-size")
    ] == ["2", "2", "awq", "64"]
    # server_arguments.md: --speculative-algorithm, --speculative-draft-model-path
    assert after(command, "--speculative-algorithm") == "STANDALONE"
    assert after(command, "--speculative-draft-model-path") == str(models.draft_model)
    # structured_outputs.md: "Only one constraint parameter (json_schema, regex, or ebnf) can be specified"
    assert adapter.grammar_request("m", "p", GRAMMAR, 8).body["ebnf"] == GRAMMAR.gbnf
    # sampling_params.md: return_logprob, top_logprobs_num, return_text_in_logprobs
    greedy = adapter.greedy_request("m", "p", 16, 5).body
    assert greedy["top_logprobs_num"] == 5 and greedy["return_text_in_logprobs"] is True
    parsed = adapter.parse_greedy(
        {"text": " cat", "meta_info": {"output_top_logprobs": [[[-0.1, 7, " cat"], [-2.0, 9, " dog"]]]}}
    )
    assert parsed.top_logprobs == [{" cat": -0.1, " dog": -2.0}]
    # meta_info["spec_verify_ct"]: the first token is the prefill's, each verify step adds one plus its accepted drafts
    stats = adapter.speculative_stats([{"meta_info": {"completion_tokens": 16, "spec_verify_ct": 8}}], None)
    assert stats == {"draft_tokens": 24, "accepted_tokens": 7}
    none_accepted = adapter.speculative_stats([{"meta_info": {"completion_tokens": 16, "spec_verify_ct": 15}}], None)
    assert none_accepted["accepted_tokens"] == 0
    with pytest.raises(NotMeasurable, match="draft-token counts"):
        adapter.speculative_stats([{"meta_info": {"completion_tokens": 16}}], None)
    with pytest.raises(Unsupported, match="exl2"):
        adapter.check_launchable(LaunchSpec(model_format="exl2"), devices=1)


def test_capabilities_follow_the_adapters():
    tgi = expressible(get_adapter("TGI"))
    assert tgi["ebnf_grammar"].mark == "no" and "1050" in tgi["ebnf_grammar"].reason
    assert tgi["json_schema"].mark == "yes" and tgi["speculative_decoding"].mark == "n/p"
    assert expressible(get_adapter("TensorRT-LLM"))["beam_search"].mark == "yes"
    table = engine_table()
    assert [row["engine"] for row in table["engines"]] == sorted(SEED_COLUMNS + EXTRA_COLUMNS, key=str.lower)
    assert all(row["container_specs"] for row in table["engines"])


def test_engines_command_lists_every_column_with_status_and_source():
    result = subprocess.run(
        [sys.executable, "-m", "harness.cli.app", "engines"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert result.returncode == 0, result.stderr
    status_lines = result.stdout.split("project status", 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    assert len(status_lines) == len(SEED_COLUMNS + EXTRA_COLUMNS)
    for name in SEED_COLUMNS + EXTRA_COLUMNS:
        line = next(line for line in status_lines if line.startswith(f"{name} "))
        assert re.search(r" (active|maintenance|dormant|superseded)( since \d{4}-\d\d-\d\d)? +https://", line), line
    assert "deepspeed-mii" in result.stdout and "documented absence" in result.stdout


def test_status_of_each_column_follows_the_research_notes():
    """engines-2026.md: TGI maintenance since 2025-12-11, DeepSpeed-MII dormant since 2025-07, ExLlamaV2 superseded
    (TabbyAPI dropped it 2026-07-14); the rest active."""
    states = {name: cls.status for name, cls in adapter_classes().items()}
    assert (states["TGI"].state, str(states["TGI"].since)) == ("maintenance", "2025-12-11")
    assert (states["Fastgen"].state, str(states["Fastgen"].since)) == ("dormant", "2025-07-01")
    assert (states["ExLlamaV2"].state, str(states["ExLlamaV2"].since)) == ("superseded", "2026-07-14")
    assert {name for name, status in states.items() if status.state == "active"} == {
        "vLLM",
        "SGLang",
        "TensorRT-LLM",
        "llama.cpp",
        "LightLLM",
        "ExLlamaV3",
        "llama-cpp-python",
    }
    assert all(status.source.startswith("https://") for status in states.values())


def test_exllamav3_through_tabbyapi_sends_its_key(models, tmp_path):
    from harness.launch.base import EngineStartError, RunningEngine

    adapter = get_adapter("ExLlamaV3")
    command = adapter.launch_command(LaunchSpec(tensor_parallel=2, prefill_chunk_tokens=64), models, 8129)
    # config_models.py: backend; args.py: model fields as --kebab-case; auth is on: no --disable-auth
    assert after(command, "--backend") == "exllamav3" and "--disable-auth" not in command
    assert (after(command, "--model-dir"), after(command, "--tensor-parallel")) == (str(models.model.parent), "true")
    log = tmp_path / "tabby.log"
    log.write_text("INFO:     Starting...\n")
    with pytest.raises(EngineStartError, match="API key"):
        adapter.identity(RunningEngine(base_url="http://127.0.0.1:9", log_path=log))
    # auth.py load_auth_keys: logger.info(f"Your API key is: {AUTH_KEYS.api_key}\n" ...), check_api_key(x_api_key)
    key = "0123456789abcdef0123456789abcdef"
    log.write_text(f"INFO:     Your API key is: {key}\nYour admin key is: {'f' * 32}\n")
    adapter._api_key = _API_KEY_PATTERN.findall(log.read_text())[-1]
    for request in (
        adapter.greedy_request("m", "p", 8, 2),
        adapter.fixed_length_request("m", "p", 8, stream=True),
        adapter.json_schema_request("m", "p", SCHEMA, 8),
        adapter.grammar_request("m", "p", GRAMMAR, 8),
    ):
        assert request.headers == {"x-api-key": key}
    # sampling.py: json_schema, grammar_string (llguidance: Lark or GBNF)
    assert adapter.json_schema_request("m", "p", SCHEMA, 8).body["json_schema"] == SCHEMA
    assert adapter.grammar_request("m", "p", GRAMMAR, 8).body["grammar_string"] == GRAMMAR.gbnf
    for fmt in ("exl2", "awq"):
        with pytest.raises(Unsupported):
            adapter.check_launchable(LaunchSpec(model_format=fmt), devices=1)
    adapter.check_launchable(LaunchSpec(model_format="exl3"), devices=1)


def test_default_model_set_names_real_checkpoints_for_every_probe_model():
    from probes.test_speculative import DRAFT_MODEL

    model_set = load_model_set(DEFAULT_GPU_SET)
    assert {"llama", "mistral", "mixtral", DRAFT_MODEL} <= set(model_set.models)
    assert model_set.draft_for == {DRAFT_MODEL: "llama"}
    assert {"hf", "awq", "gptq", "exl2", "q8_0", "q4_k_m"} <= set(model_set.models["llama"].formats)
    assert model_set.checkpoint("llama", "exl2").revision  # type: ignore[union-attr]  # one bit rate per branch
    assert model_set.checkpoint("llama", "q4_k_m").file.endswith("Q4_K_M.gguf")  # type: ignore[union-attr]
    assert choose(model_set, "llama", "awq", online=True).repo.endswith("-AWQ-INT4")  # type: ignore[union-attr]
    assert choose(model_set, "llama", "awq", online=False) is None  # offline: the synthesized model
    assert choose(model_set, "llama", "f16", online=True) is None  # left out: the synthesized model


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": {"llama": {"family": "llama", "formats": {"q8_0": {"repo": "a/b"}}}}}, "names its .gguf"),
        (
            {"models": {"llama": {"family": "llama", "formats": {"hf": {"repo": "a/b", "file": "x.gguf"}}}}},
            "only GGUF formats",
        ),
        ({"models": {"llama": {"family": "llama", "formats": {"hf": {"repo": "not a repo"}}}}}, "repo"),
        ({"draft_for": {"mistral": "llama"}}, "share a tokenizer"),
        ({"colour": "blue"}, "Extra inputs"),
    ],
)
def test_invalid_model_sets_are_rejected(tmp_path, change, message):
    data = {**yaml.safe_load(DEFAULT_GPU_SET.read_text()), **change}
    path = tmp_path / "set.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ModelSetError, match=message):
        load_model_set(path)
    with pytest.raises(ModelSetError, match="cannot read"):
        load_model_set(tmp_path / "missing.yaml")


def test_hub_is_not_asked_when_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_reachable() is False
