"""The evidence site in a real browser (headless Chromium from Debian's packages), loaded from file://:
every cell links to a page naming its record, the context switch shows the marks the records give, no link
is broken, record text stays text. Screenshots go to $INFERCHECK_ARTIFACTS (default tests/artifacts/site)."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from headless_chromium import dump_dom, ensure_chromium, screenshot
from site_records import write_site_records

from harness.records.layout import record_relpath
from harness.records.results import ResultRecord
from harness.report.aggregate import record_mark
from harness.site import build_site

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("INFERCHECK_ARTIFACTS") or REPO / "tests" / "artifacts") / "site"


class Links(HTMLParser):
    """Every href and src of a page, and the comparison table's cells (their attributes and text)."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.cells: list[dict[str, str]] = []
        self._cell: dict[str, str] | None = None
        self._in_measured = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.links += [values[name] for name in ("href", "src") if name in values]
        if tag == "td" and "data-engine" in values:
            self._cell = {**values, "text": "", "link": ""}
            self.cells.append(self._cell)
        if self._cell is not None and tag == "a":
            self._cell["link"] = values.get("href", "")
        self._in_measured = self._cell is not None and "measured" in values.get("class", "").split()

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        if tag == "span":
            self._in_measured = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None and self._in_measured:
            self._cell["text"] += data


def parse(html: str) -> Links:
    parser = Links()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_chromium()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[ResultRecord]]:
    root = tmp_path_factory.mktemp("site")
    records = write_site_records(root / "results")
    build_site(REPO / "report" / "claims.json", root / "results", root / "site")
    return root / "site", records


def index_cell(dom: str, engine: str, row: str) -> dict[str, str]:
    return next(cell for cell in parse(dom).cells if cell["data-engine"] == engine and cell["data-row"] == row)


def test_every_measured_cell_links_to_a_page_naming_its_record(
    chromium: str, built: tuple[Path, list[ResultRecord]]
) -> None:
    site, records = built
    cells = parse(dump_dom(chromium, (site / "index.html").as_uri())).cells
    assert cells and all(cell["link"] and (site / cell["link"]).is_file() for cell in cells)
    for record in records:
        row = {"json_schema": "JSON Schema", "beam_search": "Beam Search"}[record.probe]
        cell = next(cell for cell in cells if cell["data-engine"] == "llama.cpp" and cell["data-row"] == row)
        page = dump_dom(chromium, (site / cell["link"]).as_uri())
        assert str(record_relpath(record)) in page and record.run_id in page
        assert (site / "records" / record_relpath(record)).is_file()


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ("", "all"),
        ("#host=cpu", "cpu"),
        ("#host=gpu", "gpu"),
        ("#launcher=docker", "docker"),
        ("#host=gpu&launcher=process", "none"),
    ],
)
def test_the_context_switch_shows_the_marks_the_records_give(
    chromium: str, built: tuple[Path, list[ResultRecord]], fragment: str, expected: str
) -> None:
    site, records = built
    by_run = {record.run_id: record for record in records if record.probe == "json_schema"}
    cpu, gpu = record_mark(by_run["20261102T120000Z-cpu002"]), record_mark(by_run["20261102T130000Z-gpu001"])
    assert (cpu, gpu) == ("✅", "🌩️")
    dom = dump_dom(chromium, (site / "index.html").as_uri() + fragment)
    assert re.search(r'<body[^>]*data-host="', dom), "the switch's script did not run"
    text = index_cell(dom, "llama.cpp", "JSON Schema")["text"].strip()
    if expected == "all":
        assert cpu in text and gpu in text and "cpu" in text and "gpu" in text
    else:
        assert text == {"cpu": cpu, "gpu": gpu, "docker": gpu, "none": "·"}[expected]


def test_no_page_has_a_broken_link(built: tuple[Path, list[ResultRecord]]) -> None:
    site, _ = built
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 3
    for page in pages:
        for link in parse(page.read_text(encoding="utf-8")).links:
            target = link.split("#", 1)[0]
            if not target or re.match(r"^[a-z]+:", target):
                assert not target.startswith(("http:", "https:", "//")), f"{page}: {link} needs the network"
                continue
            assert (page.parent / target).resolve().is_file(), f"{page.relative_to(site)}: broken link {link}"


def test_record_text_stays_text_in_the_browser(chromium: str, built: tuple[Path, list[ResultRecord]]) -> None:
    site, _ = built
    dom = dump_dom(chromium, (site / "cells" / "llama.cpp" / "beam-search.html").as_uri())
    assert "pwned" not in re.search(r"<title>(.*?)</title>", dom, re.S)[1]
    assert '<img src="x"' not in dom and "&lt;script&gt;" in dom


def test_screenshots(chromium: str, built: tuple[Path, list[ResultRecord]]) -> None:
    site, _ = built
    index = (site / "index.html").as_uri()
    shots = [
        screenshot(chromium, index, ARTIFACTS / "index-every-context.png", size="1500,2600"),
        screenshot(chromium, index + "#host=gpu", ARTIFACTS / "index-gpu.png", size="1500,2600"),
        screenshot(
            chromium,
            (site / "cells" / "llama.cpp" / "json-schema.html").as_uri(),
            ARTIFACTS / "cell-llama.cpp-json-schema.png",
            size="1300,2400",
        ),
    ]
    assert all(shot.stat().st_size > 10_000 for shot in shots)
