"""Regenerate the report folder from the claimed table and the result records."""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from harness.atomic import write_atomic
from harness.bench.records import BenchRecord, load_bench_records
from harness.engines import adapter_classes
from harness.records.claims import ClaimsTable, load_claims, load_current_claims
from harness.records.results import ResultRecord, load_records
from harness.report.context import build_context
from harness.report.footnotes import footnote_definitions
from harness.report.format import inert_claims, inert_record
from harness.report.sections import DEFAULT_SECTIONS, SectionRenderer
from harness.report.table import asterisk_notes, comparison_table, header

REPORT_FILE = "comparison.md"


def render_report(claims: ClaimsTable, records: list[ResultRecord], extra_engines: Sequence[str] = (), *,
                  results_href: str = "../results", sections: Sequence[SectionRenderer] = DEFAULT_SECTIONS,
                  bench: Sequence[BenchRecord] = (), include_attach: bool = False, allow_dirty: bool = False,
                  now: datetime | None = None, current: ClaimsTable | None = None) -> dict[str, str]:
    """Report file name -> content; the same inputs always give the same bytes (see build_context for `now`)."""
    records = [inert_record(record) for record in records]  # no record text is trusted as markdown
    bench = [inert_record(record) for record in bench]
    claims = inert_claims(claims)  # markdown stays markdown; HTML and script links do not
    current = inert_claims(current) if current is not None else None
    context = build_context(claims, records, extra_engines, results_href, bench, include_attach=include_attach,
                            allow_dirty=allow_dirty, now=now, current=current)
    rendered = [section(context) for section in sections]
    parts = [header(context), comparison_table(context), asterisk_notes(context),
             *(section.markdown for section in rendered), footnote_definitions(context)]
    files = {REPORT_FILE: "\n\n".join(part.strip("\n") for part in parts if part.strip()) + "\n"}
    for section in rendered:
        for name, content in section.files.items():
            if name in files:
                raise ValueError(f"two report sections write the same file {name!r}")
            files[name] = content
    return dict(sorted(files.items()))


def write_report(claims_path: Path, results_dir: Path, out_dir: Path,
                 extra_engines: Sequence[str] | None = None, *, include_attach: bool = False,
                 allow_dirty: bool = False) -> list[Path]:
    """Render from claims.json and a results folder into out_dir; returns the files written, sorted.

    Columns: the claimed table's engines, then every other engine with an adapter (`extra_engines`,
    by default all of them), so an engine beyond the seed table shows up before it is measured.
    Today's claims (claims-current.json beside claims.json), when imported, stand beside the seed's."""
    out_dir = Path(out_dir)
    if extra_engines is None:
        extra_engines = sorted(adapter_classes())
    href = Path(os.path.relpath(Path(results_dir).resolve(), out_dir.resolve())).as_posix()
    files = render_report(load_claims(Path(claims_path)), load_records(Path(results_dir)), extra_engines,
                          results_href=href, bench=load_bench_records(Path(results_dir)),
                          include_attach=include_attach, allow_dirty=allow_dirty,
                          current=load_current_claims(Path(claims_path)))
    written = []
    for name, content in files.items():
        written.append(write_atomic(out_dir / name, content.encode("utf-8")))  # never a half-written report
    return written
