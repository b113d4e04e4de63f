"""The site's static files: the stylesheet, the context switch's script, copies of the raw records and the
benchmark plots, all under one folder so every link works from file:// and on GitHub Pages."""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath

from harness.bench.records import BenchRecord
from harness.records.layout import record_relpath
from harness.records.results import BENCH_FILE, SAFE_NAME, ResultRecord, engine_slug
from harness.site.views import RECORDS_DIR

CSS = """\
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1b1f24; background: #fff; }
header, footer { padding: .6em 1.2em; background: #f3f4f6; }
footer { color: #555; margin-top: 2em; }
main { padding: 0 1.2em; }
a { color: #0a58ca; text-decoration: none; } a:hover { text-decoration: underline; }
table { border-collapse: collapse; margin: .6em 0; }
th, td { border: 1px solid #d0d4da; padding: .25em .5em; vertical-align: top; text-align: left; }
#comparison td.cell { max-width: 24em; }
#comparison tr.section th { background: #eef1f5; }
#comparison th.row { font-weight: 600; }
.claim, .muted { color: #666; }
.measured, .big { font-size: 1.15em; }
.switch { margin: .6em 0; display: flex; gap: 1.2em; align-items: center; }
.legend { color: #444; }
pre { background: #f6f8fa; padding: .5em; overflow-x: auto; max-height: 28em; white-space: pre-wrap; word-break: break-all; }
.exchange { display: grid; grid-template-columns: 1fr 1fr; gap: .8em; }
article.record { border-left: 3px solid #d0d4da; padding-left: .8em; margin: 1em 0; }
tr.changed { background: #fff7e0; }
img { max-width: 100%; }
"""

JS = """\
// The context switch: shows, in every cell, only the marks of the chosen host kind and launcher.
// The data is each cell's data-contexts (written by infercheck site from the records); the choice lives in
// the URL (#host=cpu&launcher=process), so a link or a reload keeps it.
(function () {
  "use strict";
  var UNVERIFIED = "\\u00b7";
  function wanted() {
    var params = new URLSearchParams(location.hash.slice(1));
    return { host: params.get("host") || "all", launcher: params.get("launcher") || "all" };
  }
  function marksFor(contexts, choice) {
    var matching = contexts.filter(function (c) {
      return c.mark && (choice.host === "all" || c.host === choice.host) &&
        (choice.launcher === "all" || c.launcher === choice.launcher);
    });
    var shown = matching.filter(function (c) { return c.shown; });
    return shown.length ? shown : matching;
  }
  function text(contexts) {
    var marks = [];
    contexts.forEach(function (c) { if (marks.indexOf(c.mark) < 0) { marks.push(c.mark); } });
    if (!marks.length) { return UNVERIFIED; }
    if (marks.length === 1) { return marks[0]; }
    return contexts.map(function (c) { return (c.mark + " " + c.label).trim(); }).join(" / ");
  }
  function apply(choice) {
    var every = choice.host === "all" && choice.launcher === "all";
    document.querySelectorAll("td.cell[data-contexts]").forEach(function (cell) {
      var out = cell.querySelector(".measured");
      var contexts = JSON.parse(cell.getAttribute("data-contexts"));
      out.textContent = every ? cell.getAttribute("data-all") : text(marksFor(contexts, choice));
    });
    document.getElementById("switch-host").value = choice.host;
    document.getElementById("switch-launcher").value = choice.launcher;
    document.body.setAttribute("data-host", choice.host);
    document.body.setAttribute("data-launcher", choice.launcher);
    document.getElementById("switch-state").textContent = every ? "showing every measurement context" :
      "showing " + (choice.host === "all" ? "every host" : "host " + choice.host) + ", " +
      (choice.launcher === "all" ? "every launcher" : "launcher " + choice.launcher) +
      " (" + UNVERIFIED + ": not measured there)";
  }
  function changed() {
    var choice = { host: document.getElementById("switch-host").value,
                   launcher: document.getElementById("switch-launcher").value };
    history.replaceState(null, "", "#host=" + encodeURIComponent(choice.host) +
                         "&launcher=" + encodeURIComponent(choice.launcher));
    apply(choice);
  }
  document.getElementById("switch-host").addEventListener("change", changed);
  document.getElementById("switch-launcher").addEventListener("change", changed);
  window.addEventListener("hashchange", function () { apply(wanted()); });
  apply(wanted());
})();
"""

_SAFE = re.compile(SAFE_NAME)


def write_static(site: Path) -> None:
    """The stylesheet and the script."""
    (site / "assets").mkdir(parents=True, exist_ok=True)
    (site / "assets" / "site.css").write_text(CSS, encoding="utf-8")
    (site / "assets" / "site.js").write_text(JS, encoding="utf-8")


def write_records(site: Path, records: list[ResultRecord]) -> None:
    """Every record as JSON at its results/ layout under records/ (the linked raw evidence)."""
    for record in records:
        target = site / RECORDS_DIR / record_relpath(record)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")


def bench_relpath(record: BenchRecord) -> PurePosixPath | None:
    """Where a benchmark record's copy lives under records/; None for a run id that is not one safe name."""
    if not _SAFE.match(record.run_id):
        return None
    return PurePosixPath(RECORDS_DIR, engine_slug(record.engine.name), record.run_id, BENCH_FILE)


def write_bench(site: Path, records: list[BenchRecord]) -> None:
    """Every benchmark record with a safe run id under records/."""
    for record in records:
        if (relpath := bench_relpath(record)) is not None:
            target = site / relpath
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")


def write_plots(site: Path, files: dict[str, str]) -> list[str]:
    """The report's SVG plots (name -> content, from the performance section), at their report paths."""
    written = []
    for name, content in sorted(files.items()):
        if name.endswith(".svg"):
            target = site / PurePosixPath(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content, encoding="utf-8")
            written.append(name)
    return written
