"""Report sections below the table. A section is a function of the context; more can be appended.

Hook for later work: a performance section (tables, plots written as extra files) is one more
SectionRenderer added to DEFAULT_SECTIONS or passed to render_report(sections=...).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import datetime

from harness.report.context import VERDICTS, ReportContext, ReportRow
from harness.report.footnotes import record_link
from harness.report.format import table_cell, timestamp
from harness.report.section import ReportSection, SectionRenderer
from harness.report.table import measured_text
from harness.records.results import ResultRecord, Status




def diff_section(context: ReportContext) -> ReportSection:
    """How the measured cells stand against their claims, then one line per cell that differs or needs a word."""
    probed = [cell for row, cell in context.cells() if not row.claims_only]
    counts = Counter(cell.verdict for cell in probed if cell.verdict)
    measured = sum(counts.values())
    tally = ", ".join(f"{counts[verdict]} {verdict}" for verdict in VERDICTS if counts[verdict])
    lines = ["## Claimed vs measured", "",
             f"{measured} of {len(probed)} probed cells measured" + (f": {tally}." if tally else "."),
             "A claim that is text, not a mark (\"GGUF\", \"(yes)\", \"?\"), is shown beside the measurement and "
             "counted as \"claim is not a mark\", never as a disagreement.", ""]
    listed = [(row, cell) for row, cell in context.cells() if cell.verdict in ("differ", "claim is not a mark")]
    lines += [f"- {row.label} · {cell.engine} ({cell.verdict}): {cell.claimed_text} → {measured_text(cell)}"
              for row, cell in listed] or ["No measured cell differs from its claim."]
    if context.current is not None:
        lines += ["", *_current_summary(context)]
    return ReportSection(markdown="\n".join(lines))


def _current_summary(context: ReportContext) -> list[str]:
    """Today's docs against the seed and the measurement: where the seed is stale, where today's docs
    disagree with the measurement, and where seed, docs and measurement all agree."""
    cells = [(row, cell) for row, cell in context.cells()]
    stale = [(row, cell) for row, cell in cells if cell.seed_stale]
    disagree = [(row, cell) for row, cell in cells if cell.current_verdict == "differ"]
    agree = [cell for _, cell in cells if cell.verdict == "agree" and cell.current_verdict == "agree"]
    lines = ["### Today's docs", "",
             f"{len(stale)} cell(s) where the seed is stale (today's docs claim another mark), {len(disagree)} where "
             f"today's docs disagree with the measurement, {len(agree)} where the seed, today's docs and the "
             "measurement agree.", ""]
    lines += [f"- Docs disagree · {row.label} · {cell.engine}: today {cell.current.text if cell.current else ''} "
              f"→ {measured_text(cell)}" for row, cell in disagree]
    lines += [f"- Seed stale · {row.label} · {cell.engine}: {cell.claimed_text} → today "
              f"{cell.current.text if cell.current else ''}" for row, cell in stale]
    return lines


def not_measured_section(context: ReportContext) -> ReportSection:
    """Probes that have only not-measured records, with the reason: a not-measured record that a newer measured
    record of the same engine and probe (any verdict, an error included: the probe ran) covers is stale and left out,
    whichever context that record has (vLLM's "needs 2 GPUs" before the CPU build's split was probed)."""
    lines = ["## Not measured", ""]
    ran: dict[tuple[str, str], datetime] = {}
    for record in context.records:
        if record.status != Status.NOT_MEASURED:
            key = (record.engine.name, record.probe)
            ran[key] = max(ran.get(key, record.finished_at), record.finished_at)
    newest: dict[tuple[str, str, str], tuple[ReportRow, str, ResultRecord]] = {}  # one per cell and probe
    for row, cell in context.cells():
        for record in cell.measured.not_measured if cell.measured else []:
            cell_key = (cell.engine, row.label, record.probe)
            if ran.get((record.engine.name, record.probe), record.finished_at) <= record.finished_at and (
                cell_key not in newest or newest[cell_key][2].finished_at < record.finished_at
            ):
                newest[cell_key] = (row, cell.engine, record)
    entries = list(newest.values())
    if not entries:
        return ReportSection(markdown="\n".join([*lines, "Every probe with a record was measured."]))
    lines += ["| Engine | Row | Probe | Reason | Record |", "|---|---|---|---|---|"]
    lines += [
        f"| {table_cell(engine)} | {table_cell(row.label)} | `{record.probe}` | {table_cell(record.reason)} | "
        f"{record_link(record, context.results_href)} |"
        for row, engine, record in entries
    ]
    return ReportSection(markdown="\n".join(lines))


def runs_section(context: ReportContext) -> ReportSection:
    """Provenance per engine: every run, counted or left out of the table, and why."""
    left_out = {_key(item.record): item.why for item in context.left_out}
    everything = context.records + [item.record for item in context.left_out]
    lines = ["## Runs", "", "A run from a tree with uncommitted harness, probe or adapter code is marked `(dirty)` and "
             "left out of the table unless the report is made with `--allow-dirty`; attach-mode runs are left out "
             "unless it is made with `--include-attach`."]
    engines = context.engines + sorted({record.engine.name for record in everything} - set(context.engines))
    for engine in engines:
        runs: dict[str, list[ResultRecord]] = defaultdict(list)
        for record in everything:
            if record.engine.name == engine:
                runs[record.run_id].append(record)
        if not runs:
            continue
        lines += ["", f"### {table_cell(engine)}", "",
                  "| Run | Engine version | Package / image | Host | Harness | Started | Finished | Probes | Counted |",
                  "|---|---|---|---|---|---|---|---|---|"]
        ordered = sorted(runs.items(), key=lambda item: (min(r.started_at for r in item[1]), item[0]))
        lines += [_run_row(run_id, records, left_out) for run_id, records in ordered]
    if len(lines) == 3:
        lines += ["", "No runs yet."]
    return ReportSection(markdown="\n".join(lines))


def _key(record: ResultRecord) -> tuple[str, str, str, str]:
    return record.engine.name, record.run_id, record.probe, record.finished_at.isoformat()


def _run_row(run_id: str, records: list[ResultRecord], left_out: dict[tuple[str, str, str, str], str]) -> str:
    whys = sorted({left_out[key] for record in records if (key := _key(record)) in left_out})
    counted = "no: " + "; ".join(whys) if whys else "yes"
    cells = [f"`{table_cell(run_id)}`", _distinct(records, lambda r: r.engine.version), _distinct(records, _package),
             _distinct(records, _host), _distinct(records, _harness),
             timestamp(min(r.started_at for r in records)), timestamp(max(r.finished_at for r in records)),
             str(len(records)), table_cell(counted)]
    return "| " + " | ".join(cells) + " |"


COVERAGE_COLUMNS = ("honoured", "rejected", "ignored", "truncated", "error")


def coverage_section(context: ReportContext) -> ReportSection:
    """Per engine and structured-output backend, how each JSON Schema keyword fared (the coverage probe's
    `evidence.numbers["keywords"]`: per keyword the schemas using it and how many got each outcome)."""
    covered = [record for record in context.records
               if isinstance(record.evidence.numbers.get("keywords"), dict) and record.evidence.numbers["keywords"]]
    if not covered:
        return ReportSection(markdown="")
    lines = ["## JSON Schema coverage", "",
             "Per keyword: the corpus schemas that use it, and how many of them the engine honoured, rejected with "
             "an error, silently ignored, or could not be judged (truncated, error); `broken` counts outputs that "
             "broke that keyword."]
    for record in sorted(covered, key=lambda r: (r.engine.name, r.context().describe(), r.finished_at)):
        numbers = record.evidence.numbers
        reported = numbers.get("shares")
        shares = reported if isinstance(reported, dict) else {}
        summary = ", ".join(f"{kind} {shares[kind]:.0%}" for kind in COVERAGE_COLUMNS
                            if isinstance(shares.get(kind), (int, float)))
        lines += ["", f"### {table_cell(record.engine.name)} · {table_cell(str(numbers.get('backend', 'backend not reported')))}",
                  "", f"{summary or table_cell(record.reason)} ({record.context().describe()}; run "
                  f"{record_link(record, context.results_href)}).", "",
                  "| Keyword | Schemas | " + " | ".join(COVERAGE_COLUMNS) + " | broken |",
                  "|---" * (len(COVERAGE_COLUMNS) + 3) + "|"]
        for keyword, row in sorted(numbers["keywords"].items()):
            row = row if isinstance(row, dict) else {}
            cells = [str(row.get(name, "")) for name in ("schemas", *COVERAGE_COLUMNS, "broken")]
            lines.append(f"| `{table_cell(str(keyword))}` | " + " | ".join(table_cell(c) for c in cells) + " |")
    return ReportSection(markdown="\n".join(lines))


def attach_section(context: ReportContext) -> ReportSection:
    """Records from attach mode (a server the harness did not start or verify), listed on their own."""
    attached = [record for record in context.records + [item.record for item in context.left_out]
                if record.launch is not None and record.launch.launcher == "attach"]
    if not attached:
        return ReportSection(markdown="")
    counted = "counted in the table (--include-attach)" if context.include_attach else "not counted in the table"
    lines = ["## Attach-mode records", "",
             f"Probes run against a server the harness attached to and did not start; {counted}.", "",
             "| Engine | Probe | Verdict | Reason | Server | Record |", "|---|---|---|---|---|---|"]
    lines += [f"| {table_cell(record.engine.name)} | `{record.probe}` | {record.status.value} | "
              f"{table_cell(record.reason)} | {table_cell(record.launch.base_url or '—') if record.launch else '—'} | "
              f"{record_link(record, context.results_href)} |"
              for record in sorted(attached, key=lambda r: (r.engine.name, r.probe, r.finished_at))]
    return ReportSection(markdown="\n".join(lines))


def _distinct(records: list[ResultRecord], describe: Callable[[ResultRecord], str]) -> str:
    """The distinct descriptions of a run's records (normally one), sorted, as a table cell."""
    return table_cell(", ".join(sorted({describe(record) for record in records})))


def _package(record: ResultRecord) -> str:
    engine = record.engine
    parts = []
    if engine.package:
        parts.append(f"{engine.package}=={engine.package_version}" if engine.package_version else engine.package)
    if engine.image:
        parts.append(f"{engine.image}@{engine.image_digest}" if engine.image_digest else engine.image)
    return "; ".join(parts) or "—"


def _host(record: ResultRecord) -> str:
    host = record.host
    cpu = f"{host.cpu}, {host.isa_level}" if host.isa_level else host.cpu
    return f"{host.hostname} ({'; '.join(host.accelerators) or cpu})"


def _harness(record: ResultRecord) -> str:
    harness = record.harness
    commit = f" @ {harness.git_commit[:12]}" if harness.git_commit else ""
    return f"{harness.version}{commit}{' (dirty)' if harness.git_dirty else ''}"


def performance_section(context: ReportContext) -> ReportSection:
    """Benchmark tables and plots (harness.bench); imported on use, so matplotlib loads only here."""
    from harness.report.performance import render_performance

    return render_performance(context)


DEFAULT_SECTIONS: tuple[SectionRenderer, ...] = (diff_section, not_measured_section, coverage_section,
                                                 attach_section, performance_section, runs_section)
