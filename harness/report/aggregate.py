"""From result records to measured cells: which records count, in which context, and what mark a cell gets.

The rules (issue 9, DESIGN.md "Measurement context"):
- a record counts only when it is trustworthy for the table: attach-mode and dirty-tree records are left
  out unless asked for, a record dated in the future is left out with a warning;
- verdicts are kept apart by measurement context; within a context the newest decisive verdict
  (pass, partial, fail) of each probe counts, an error only when the probe has no decisive verdict there;
- a cell shows one mark when its contexts agree, and one mark per context when they do not;
- a probe may lower its pass to a seed mark (`evidence.numbers["seed_mark"]`, e.g. 🟠 for an engine's own
  kernel standing in for the one the row names);
- a fail that is a documented absence gets its own mark;
- the "Other Quants" seed row combines its per-format sub-rows;
- any other seed row with sub-rows and no probe of its own (LMQL) pools them: all alike that mark, disagreeing
  ◐ (never 🌩️, which is a probe's partial), a sub-row errored or not measured ❔ (never ✅); a seed row with a
  probe of its own (a model family) keeps its own mark, its sub-rows are findings beside it.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from datetime import datetime, timedelta

from pydantic import BaseModel

from harness.records.claims import MARKS
from harness.records.features import FEATURE_ROWS, OTHER_QUANTS, parent_row, record_feature, row_for, subrow_name
from harness.records.layout import record_relpath
from harness.records.results import UNKNOWN, MeasurementContext, RecordWarning, ResultRecord, Status
from harness.report.planned import record_context

PASS_MARK = "✅"
FAIL_MARK = "❌"
MIXED_MARK = "🌩️"  # a probe's partial (or probes of one row that disagree)
MIXED_SUBROWS_MARK = "◐"  # a pooled seed row whose sub-rows disagree: some pass, some fail (not a partial)
ERROR_MARK = "⚠"
ABSENCE_MARK = "❌📄"  # a documented absence: no request could be formed; the footnote names the source
NOT_DECISIVE_MARK = "❔"  # the row's verdict needs more than what was measured (e.g. formats not probed)
SEED_MARK_KEY = "seed_mark"  # evidence.numbers key: a probe's own seed-table mark for a pass
FUTURE_SLACK = timedelta(days=1)
_DECISIVE = (Status.PASS, Status.PARTIAL, Status.FAIL)
_CONTEXT_FIELDS = ("host_class", "launcher", "model_source", "distribution", "compute_dtype")


class LeftOut(BaseModel):
    """A record the table does not count, and why."""

    record: ResultRecord
    why: str


class ContextResult(BaseModel):
    """What the counted records of one measurement context say about a cell."""

    context: MeasurementContext
    label: str  # what sets this context apart from the cell's others ("cpu", "docker, gpu"); "" when alone
    mark: str | None  # None: only not-measured records
    records: list[ResultRecord]  # measured (pass, partial, fail, error), one per probe, by probe
    not_measured: list[ResultRecord]


class CellResult(BaseModel):
    """What the counted records say about one (engine, row) cell."""

    contexts: list[ContextResult]  # the contexts whose marks the cell shows (errors hide behind decisive ones)
    hidden: list[ContextResult] = []  # contexts not shown: only errors or only not-measured beside a verdict
    note: str = ""  # a combined row's summary, e.g. the formats that passed

    @property
    def marks(self) -> list[str]:
        """The distinct marks shown, in context order."""
        return list(dict.fromkeys(context.mark for context in self.contexts if context.mark))

    @property
    def mark(self) -> str | None:
        """The cell's one mark when its contexts agree; None when nothing was measured or they disagree."""
        marks = self.marks
        return marks[0] if len(marks) == 1 else None

    @property
    def records(self) -> list[ResultRecord]:
        """Every measured record behind the cell, shown contexts first."""
        return [record for context in self.contexts + self.hidden for record in context.records]

    @property
    def not_measured(self) -> list[ResultRecord]:
        """Every not-measured record behind the cell."""
        return [record for context in self.contexts + self.hidden for record in context.not_measured]


def select_records(records: list[ResultRecord], *, include_attach: bool = False, allow_dirty: bool = False,
                   now: datetime | None = None) -> tuple[list[ResultRecord], list[LeftOut]]:
    """Split records into those the table counts and those it leaves out (with the reason)."""
    counted: list[ResultRecord] = []
    left_out: list[LeftOut] = []
    for record in records:
        why = _left_out_because(record, include_attach, allow_dirty, now)
        if why is None:
            counted.append(record)
        else:
            left_out.append(LeftOut(record=record, why=why))
    return counted, left_out


def _left_out_because(record: ResultRecord, include_attach: bool, allow_dirty: bool,
                      now: datetime | None) -> str | None:
    try:
        row_for(record_feature(record.feature, record.probe))
    except KeyError:
        warnings.warn(f"{record_relpath(record)}: unknown feature {record.feature!r}; record skipped",
                      RecordWarning, stacklevel=2)
        return f"unknown feature {record.feature!r}"
    if now is not None and record.finished_at > now + FUTURE_SLACK:
        warnings.warn(f"{record_relpath(record)}: finished_at {record.finished_at.isoformat()} is in the future; "
                      "record skipped", RecordWarning, stacklevel=2)
        return "finished in the future"
    if record.launch is not None and record.launch.launcher == "attach" and not include_attach:
        return "attach mode (use --include-attach)"
    if record.harness.git_dirty and not allow_dirty:
        return "dirty harness tree (use --allow-dirty)"
    return None


def resolved_contexts(records: list[ResultRecord]) -> dict[int, MeasurementContext]:
    """Each record's context (by id), where a record that does not tell a dimension (an older record without
    compute_dtype) joins the one context that matches it on every dimension it does tell: the one its engine's
    records of the same launch config were measured in, else the one of its engine, else none (it stays apart)."""
    own = {id(record): record_context(record) for record in records}
    by_engine: dict[str, set[MeasurementContext]] = defaultdict(set)
    by_launch: dict[tuple[str, str], set[MeasurementContext]] = defaultdict(set)
    for record in records:
        if UNKNOWN not in _values(own[id(record)]):
            by_engine[record.engine.name].add(own[id(record)])
            by_launch[_launch_key(record)].add(own[id(record)])

    def resolve(record: ResultRecord) -> MeasurementContext:
        context = own[id(record)]
        if UNKNOWN not in _values(context):
            return context
        for candidates in (by_launch[_launch_key(record)], by_engine[record.engine.name]):
            matches = [candidate for candidate in candidates
                       if all(mine in (UNKNOWN, theirs) for mine, theirs in zip(_values(context), _values(candidate)))]
            if len(matches) == 1:
                return matches[0]
        return context

    return {id(record): resolve(record) for record in records}


def _launch_key(record: ResultRecord) -> tuple[str, str]:
    """The engine and the launch config a record was measured under (`model_format=f16,...`)."""
    return record.engine.name, record.launch.config if record.launch else UNKNOWN


def _values(context: MeasurementContext) -> tuple[str, ...]:
    return tuple(getattr(context, name) for name in _CONTEXT_FIELDS)


def counted_records(records: list[ResultRecord]) -> list[ResultRecord]:
    """One record per (engine, probe, context): its newest decisive one, else its newest error, else not measured."""
    contexts = resolved_contexts(records)
    best: dict[tuple[str, str, MeasurementContext], ResultRecord] = {}
    for record in records:
        key = (record.engine.name, record.probe, contexts[id(record)])
        if key not in best or _rank(record) > _rank(best[key]):
            best[key] = record
    return [best[key] for key in sorted(best, key=lambda key: (key[0], key[1], key[2].describe()))]


def _rank(record: ResultRecord) -> tuple[int, datetime, str]:
    tier = 2 if record.status in _DECISIVE else 1 if record.status == Status.ERROR else 0
    return tier, record.finished_at, record.run_id


def record_mark(record: ResultRecord) -> str | None:
    """One record's mark: pass ✅ (or the probe's seed mark), partial 🌩️, fail ❌ or ❌📄, error ⚠."""
    if record.status == Status.PASS:
        seed = record.evidence.numbers.get(SEED_MARK_KEY)
        return seed if isinstance(seed, str) and seed in MARKS else PASS_MARK
    if record.status == Status.FAIL:
        return ABSENCE_MARK if record.absence_source() else FAIL_MARK
    return {Status.PARTIAL: MIXED_MARK, Status.ERROR: ERROR_MARK}.get(record.status)


def measured_mark(records: list[ResultRecord]) -> str | None:
    """Combine probes: all alike that mark, mixed 🌩️, only errors ⚠, none measured None (errors beside verdicts drop)."""
    marks = {record_mark(record) for record in records} - {None}
    decisive = marks - {ERROR_MARK}
    if not marks:
        return None
    if not decisive:
        return ERROR_MARK
    if decisive == {FAIL_MARK, ABSENCE_MARK}:
        return FAIL_MARK
    return next(iter(decisive)) if len(decisive) == 1 else MIXED_MARK


def context_results(records: list[ResultRecord],
                    contexts: dict[int, MeasurementContext] | None = None) -> list[ContextResult]:
    """One result per measurement context of a cell's counted records, labelled by what sets it apart."""
    contexts = contexts or resolved_contexts(records)
    groups: dict[MeasurementContext, list[ResultRecord]] = defaultdict(list)
    for record in records:
        groups[contexts[id(record)]].append(record)
    ordered = sorted(groups, key=lambda context: context.describe())
    labels = context_labels(ordered)
    results = []
    for context in ordered:
        group = sorted(groups[context], key=lambda record: record.probe)
        results.append(ContextResult(context=context, label=labels[context], mark=measured_mark(group),
                                     records=[r for r in group if r.status != Status.NOT_MEASURED],
                                     not_measured=[r for r in group if r.status == Status.NOT_MEASURED]))
    return results


def context_labels(contexts: list[MeasurementContext]) -> dict[MeasurementContext, str]:
    """A short label per context naming only the dimensions in which the contexts differ."""
    differing = [name for name in _CONTEXT_FIELDS if len({getattr(c, name) for c in contexts}) > 1]
    short_hosts = len({_host_kind(c) for c in contexts}) == len({c.host_class for c in contexts})

    def value(context: MeasurementContext, name: str) -> str:
        if name == "host_class" and short_hosts:
            return _host_kind(context)
        return str(getattr(context, name))

    return {context: ", ".join(value(context, name) for name in differing) for context in contexts}


def _host_kind(context: MeasurementContext) -> str:
    return context.host_class.split(" ", 1)[0]


def combine_contexts(results: list[ContextResult]) -> CellResult:
    """Show contexts with a verdict; contexts with only errors show only when no context has a verdict."""
    decisive = [result for result in results if result.mark not in (None, ERROR_MARK)]
    errors = [result for result in results if result.mark == ERROR_MARK]
    shown = decisive or errors
    return CellResult(contexts=shown, hidden=[result for result in results if result not in shown])


def cell_results(counted: list[ResultRecord],
                 claimed_formats: dict[str, set[str]] | None = None) -> dict[tuple[str, str], CellResult]:
    """Counted records (see counted_records) grouped by (engine name, table row), combined per context.

    A seed row with sub-rows gets a combined cell of its own: Other Quants by quant_summary (with the
    format sub-rows each engine claims today, `claimed_formats`; unknown for an engine missing there),
    any other by all its sub-rows' probes together."""
    contexts = resolved_contexts(counted)
    groups: dict[tuple[str, str], list[ResultRecord]] = defaultdict(list)
    for record in counted:
        groups[(record.engine.name, row_for(record_feature(record.feature, record.probe)))].append(record)
    results = {key: combine_contexts(context_results(group, contexts)) for key, group in sorted(groups.items())}
    parents: dict[tuple[str, str], dict[str, CellResult]] = defaultdict(dict)
    for (engine, row), result in results.items():
        if (parent := parent_row(row)) is not None:
            parents[(engine, parent)][row] = result
    for (engine, parent), subrows in parents.items():
        if parent == OTHER_QUANTS:
            results[(engine, parent)] = quant_summary(subrows, (claimed_formats or {}).get(engine), contexts)
        elif (engine, parent) not in groups:  # no probe of its own: pooled from its sub-rows (LMQL: logit_bias, echo)
            pooled = {row: group for (e, row), group in groups.items() if e == engine and parent_row(row) == parent}
            results[(engine, parent)] = pooled_summary(pooled, subrows_of(parent), contexts)
    return dict(sorted(results.items()))


def subrows_of(parent: str) -> list[str]:
    """Every sub-row a probe measures under the seed row `parent`."""
    return sorted({row for row in FEATURE_ROWS.values() if parent_row(row) == parent})


def pooled_summary(groups: dict[str, list[ResultRecord]], expected: list[str],
                   resolved: dict[int, MeasurementContext]) -> CellResult:
    """A seed row pooled from its sub-rows (`groups`: sub-row -> counted records), per context: every expected
    sub-row alike gives that mark, disagreeing ones MIXED_SUBROWS_MARK; a sub-row that errored or is missing there
    gives NOT_DECISIVE_MARK (only errors: ERROR_MARK), so one sub-row alone never carries the row."""
    by_context: dict[MeasurementContext, dict[str, list[ResultRecord]]] = defaultdict(lambda: defaultdict(list))
    for row, group in groups.items():
        for record in group:
            by_context[resolved[id(record)]][row].append(record)
    ordered = sorted(by_context, key=lambda context: context.describe())
    labels = context_labels(ordered)
    results, notes = [], []
    for context in ordered:
        rows = by_context[context]
        marks = {row: measured_mark(rows.get(row, [])) for row in expected}
        errored = [subrow_name(row) for row, mark in marks.items() if mark == ERROR_MARK]
        missing = [subrow_name(row) for row, mark in marks.items() if mark is None]
        decisive = {FAIL_MARK if mark == ABSENCE_MARK else mark for mark in marks.values()} - {ERROR_MARK, None}
        mark: str | None
        if not decisive:
            mark, note = (ERROR_MARK, "only errors") if errored else (None, "")
        elif errored or missing:
            mark = NOT_DECISIVE_MARK
            note = "; ".join(part for part in (f"error: {', '.join(errored)}" if errored else "",
                                               f"not measured: {', '.join(missing)}" if missing else "") if part)
        elif len(decisive) == 1:
            mark, note = measured_mark([r for group in rows.values() for r in group]), ""
        else:
            mark = MIXED_SUBROWS_MARK
            note = "; ".join(f"{subrow_name(row)} {marks[row]}" for row in expected)
        records = sorted((r for group in rows.values() for r in group), key=lambda record: record.probe)
        results.append(ContextResult(context=context, label=labels[context], mark=mark,
                                     records=[r for r in records if r.status != Status.NOT_MEASURED],
                                     not_measured=[r for r in records if r.status == Status.NOT_MEASURED]))
        notes.append(note)
    cell = combine_contexts(results)
    shown_notes = [note for result, note in zip(results, notes, strict=True) if note and result in cell.contexts]
    return cell.model_copy(update={"note": "; ".join(dict.fromkeys(shown_notes))})


def quant_summary(subrows: dict[str, CellResult], claimed: set[str] | None,
                  resolved: dict[int, MeasurementContext]) -> CellResult:
    """The Other Quants seed row: ✅ when any format passes (naming them), ❌ only when every format sub-row
    the engine claims (`claimed`; None: unknown, so never ❌) was probed and failed, ❔ otherwise; nothing
    measured leaves it unmeasured."""
    passed = [subrow_name(row) for row, cell in subrows.items() if PASS_MARK in cell.marks]
    failed_rows = {row for row, cell in subrows.items() if cell.marks and set(cell.marks) <= {FAIL_MARK, ABSENCE_MARK}}
    measured = [cell for cell in subrows.values() if cell.marks and set(cell.marks) != {ERROR_MARK}]
    mark: str | None
    if passed:
        mark, note = PASS_MARK, "passed: " + ", ".join(passed)
    elif measured and claimed is not None and claimed <= failed_rows and len(failed_rows) == len(measured):
        marks = {mark for row in failed_rows for mark in subrows[row].marks}
        mark, note = (ABSENCE_MARK if marks == {ABSENCE_MARK} else FAIL_MARK), "every claimed format failed"
    elif measured:
        mark = NOT_DECISIVE_MARK
        note = "failed: " + ", ".join(sorted(subrow_name(row) for row in failed_rows))
        if claimed is None:
            note += "; which formats the engine claims is not known (no current claim)"
        elif missing := sorted(subrow_name(row) for row in claimed - set(subrows)):
            note += f"; not probed: {', '.join(missing)}"
    else:
        mark, note = (ERROR_MARK, "only errors") if subrows else (None, "")
    records = [record for cell in subrows.values() for record in cell.records]
    not_measured = [record for cell in subrows.values() for record in cell.not_measured]
    contexts = [ContextResult(context=_summary_context(records or not_measured, resolved), label="", mark=mark,
                              records=records, not_measured=not_measured)] if records or not_measured else []
    return CellResult(contexts=contexts, note=note)


def _summary_context(records: list[ResultRecord], resolved: dict[int, MeasurementContext]) -> MeasurementContext:
    """The context of a combined row's records when they share one, else a context naming the mix."""
    contexts = {resolved[id(record)] for record in records}
    if len(contexts) == 1:
        return next(iter(contexts))
    return MeasurementContext(**{name: " + ".join(sorted({getattr(c, name) for c in contexts}))
                                 for name in _CONTEXT_FIELDS})
