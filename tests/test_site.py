"""The evidence site without a browser: atomic folder swap, history, escaping, the `site` command, and which
cells a run changed (the browser checks are in test_site_browser.py)."""

from __future__ import annotations

import os
from pathlib import Path

import headless_chromium
import pytest
import yaml
from site_records import HOSTILE, site_record, write_site_records
from typer.testing import CliRunner

from harness.cli.app import app
from harness.records.results import Status, load_records, run_dir_for, write_record
from harness.report.changes import changed_cells, describe_changes, table_state
from harness.site import SITE_MARKER, SiteError, build_site
from harness.site import build as site_build
from harness.site.history import cell_history

REPO = Path(__file__).resolve().parent.parent
CLAIMS = REPO / "report" / "claims.json"


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write_site_records(tmp_path / "results")
    return tmp_path / "results"


def test_the_site_is_replaced_whole_and_a_crash_keeps_the_old_one(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    build_site(CLAIMS, results, site)
    (site / "stale.html").write_text("old")
    build_site(CLAIMS, results, site)
    assert not (site / "stale.html").exists() and (site / SITE_MARKER).is_file()
    (site / "stale.html").write_text("old")

    def crash(*_: object) -> list[str]:
        raise RuntimeError("crash in the middle")

    monkeypatch.setattr(site_build, "write_plots", crash)
    with pytest.raises(RuntimeError):
        build_site(CLAIMS, results, site)
    assert (site / "stale.html").read_text() == "old" and (site / "index.html").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["results", "site"]  # no temporary folders left


def test_a_killed_build_s_leftovers_are_swept_by_the_next(results: Path, tmp_path: Path) -> None:
    stale, fresh = tmp_path / ".tmp-site-killed", tmp_path / ".tmp-site-running"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "index.html").write_text("half")
    os.utime(stale, (0, 0))
    build_site(CLAIMS, results, tmp_path / "site")
    assert not stale.exists() and fresh.exists()


def test_a_folder_that_is_not_a_site_is_never_replaced(results: Path, tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(SiteError, match="not a site"):
        build_site(CLAIMS, results, tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_history_says_when_and_what_changed(results: Path) -> None:
    history = cell_history(load_records(results), "llama.cpp", "JSON Schema", set(), {})
    assert [entry.record.run_id for entry in history] == [
        "20261101T120000Z-cpu001",
        "20261102T120000Z-cpu002",
        "20261102T130000Z-gpu001",
    ]
    first, second, gpu = history
    assert first.changes == ["first record of this probe here"] and not first.verdict_changed
    assert second.verdict_changed and "verdict fail ❌ → pass ✅" in second.changes
    assert "engine b11000 → b11434" in second.changes
    assert gpu.series.startswith("gpu 1x NVIDIA H200, docker") and not gpu.verdict_changed


def test_cell_page_has_claims_provenance_and_escaped_record_text(results: Path, tmp_path: Path) -> None:
    build_site(CLAIMS, results, tmp_path / "site")
    page = (tmp_path / "site" / "cells" / "llama.cpp" / "json-schema.html").read_text(encoding="utf-8")
    for expected in (
        "Seed claim",
        "Today's claim",
        "sha256:" + "ab" * 32,
        "0123456789abcdef",
        "srv  log line one",
        "/v1/chat/completions",
        "records/llama.cpp/20261102T130000Z-gpu001/json_schema.json",
        "verdict fail ❌ → pass ✅",
    ):
        assert expected in page, expected
    hostile = (tmp_path / "site" / "cells" / "llama.cpp" / "beam-search.html").read_text(encoding="utf-8")
    assert HOSTILE not in hostile and "&lt;script&gt;" in hostile


def test_site_command(results: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    done = runner.invoke(app, ["site", "--results-dir", str(results), "--out-dir", str(tmp_path / "out")])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "out" / "index.html").is_file() and (tmp_path / "out" / ".nojekyll").is_file()
    missing = runner.invoke(app, ["site", "--results-dir", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "x")])
    assert missing.exit_code == 2 and "results folder not found" in missing.output


def test_run_names_its_report_folder_like_report_does() -> None:
    help_text = CliRunner().invoke(app, ["run", "--help"], terminal_width=200).output
    assert "--out-dir" in help_text and "--report-dir" not in help_text


def test_changed_cells(results: Path, tmp_path: Path) -> None:
    before = table_state(CLAIMS, tmp_path / "no-results")
    after = table_state(CLAIMS, results)
    lines = changed_cells(before, after)
    assert any(line.startswith("llama.cpp · JSON Schema: · → ✅") and "🌩️" in line for line in lines)
    assert changed_cells(after, after) == []
    assert describe_changes(after, after) == ["no cell of the table changed since the previous report"]
    assert describe_changes(before, after)[0] == f"{len(lines)} cell(s) changed since the previous report:"


def test_run_says_why_new_records_do_not_count(results: Path, tmp_path: Path) -> None:
    before = table_state(CLAIMS, results)
    dirty = site_record("20261103T120000Z-dirty1", Status.FAIL, day=2)
    dirty.harness.git_dirty = True
    write_record(dirty, run_dir_for(results, "llama.cpp", dirty.run_id))
    assert describe_changes(before, table_state(CLAIMS, results)) == [
        "no cell of the table changed since the previous report",
        "1 new record(s) left out of the table: dirty harness tree (use --allow-dirty)",
    ]


def test_the_repository_s_records_give_a_measured_llama_cpp_column(tmp_path: Path) -> None:
    if not any((REPO / "results" / "llama.cpp").glob("*/*.json")):
        pytest.skip("no llama.cpp records in results/ yet (infercheck run --engine llama.cpp writes them)")
    build_site(CLAIMS, REPO / "results", tmp_path / "site", allow_dirty=True)
    index = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    marks = [
        part.split("</span>")[0]
        for part in index.split('data-engine="llama.cpp"')[1:]
        for part in [part.split('<span class="measured">', 1)[-1]]
    ]
    assert any(mark in ("✅", "🟠", "🌩️", "❌", "❌📄") for mark in marks)


def test_the_pages_workflow_publishes_the_site() -> None:
    """The site is built and deployed from main by its own workflow (the nightly job only opens a pull request)."""
    jobs = yaml.safe_load((REPO / ".github" / "workflows" / "pages.yml").read_text())["jobs"]
    steps = jobs["build"]["steps"]
    site = next(index for index, step in enumerate(steps) if "infercheck site --out-dir _site" in step.get("run", ""))
    upload = next(
        step for step in steps[site:] if str(step.get("uses", "")).startswith("actions/upload-pages-artifact")
    )
    assert upload["with"]["path"] == "_site" and upload["with"]["include-hidden-files"] is True
    assert jobs["deploy"]["needs"] == "build" and jobs["deploy"]["permissions"] == {
        "pages": "write",
        "id-token": "write",
    }
    assert jobs["deploy"]["steps"][0]["uses"].startswith("actions/deploy-pages@")


def test_without_chromium_or_root_the_browser_test_skips_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(headless_chromium.shutil, "which", lambda name: None)
    monkeypatch.setattr(headless_chromium.os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="needs root and apt-get"):
        headless_chromium.ensure_chromium()
