"""The claimed comparison table: parse the upstream markdown into data, keep it as a file."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal, cast, get_args

from pydantic import BaseModel

from harness.atomic import write_atomic

Mark = Literal["✅", "🟠", "🌩️", "🔨", "🗓️", "❓", "❌", "🪦"]  # 🪦: the project is dormant (claims-current.md)
MARKS: tuple[str, ...] = get_args(Mark)
CLAIMS_FILE = "claims.json"
SOURCE_FILE = "claims-source.md"
CURRENT_CLAIMS_FILE = "claims-current.json"  # today's claims (the engines' docs), beside the seed's
CURRENT_SOURCE_FILE = "claims-current.md"
CLAIMS_FILES = {"seed": (CLAIMS_FILE, SOURCE_FILE), "current": (CURRENT_CLAIMS_FILE, CURRENT_SOURCE_FILE)}

_VS16 = "\ufe0f"  # emoji variation selector: some marks are written with or without it
_REF = re.compile(r"\[\^([^\[\]\s]+)\]")  # an id stops at the next bracket: linear on "[^[^[^..." (was quadratic)
_REF_ANNOTATION = re.compile(r"\([^()]*?\[\^[^\[\]\s()]+\][^()]*\)")  # "(SOTA[^22])"; no leading \s* (quadratic)
_FOOTNOTE_DEF = re.compile(r"^\[\^([^\]\s]+)\]:\s*(.*)$")
_NOTE = re.compile(r"^(\*+)([^*\s].*)$")
_URL = re.compile(r"https?://[^\s<>()\[\]\"']+")
_CELL_SEP = re.compile(r"(?<!\\)\|")
_DELIMITER = re.compile(r"^:?-+:?$")
_BOLD = re.compile(r"^\*\*(.+?)\*\*$")


class ClaimsParseError(ValueError):
    """The markdown does not hold a comparison table this parser understands."""


class Cell(BaseModel):
    """One claimed cell: what was written, its mark, its text without footnote refs, and those refs."""

    raw: str
    mark: Mark | None
    text: str
    footnotes: list[str]


class Row(BaseModel):
    """One feature row: its label (footnote refs stripped), its section and one cell per engine."""

    raw_label: str
    label: str
    section: str | None
    footnotes: list[str]
    cells: dict[str, Cell]


class Footnote(BaseModel):
    """A footnote definition `[^id]: text` and the URLs in it."""

    id: str
    text: str
    urls: list[str]


class AsteriskNote(BaseModel):
    """A note below the table referenced by asterisks in cells (`*`, `**`, ...)."""

    marker: str
    text: str


class ClaimsTable(BaseModel):
    """The claimed comparison table, as imported from its source."""

    source: str
    source_sha256: str
    legend: dict[Mark, str]
    engines: list[str]
    sections: list[str]
    rows: list[Row]
    notes: list[AsteriskNote]
    footnotes: list[Footnote]

    def row(self, label: str) -> Row:
        """The row with this label (footnote refs stripped)."""
        for row in self.rows:
            if row.label == label:
                return row
        raise KeyError(f"no row {label!r} in the claimed table")

    def cell(self, engine: str, row_label: str) -> Cell:
        """The claimed cell of an engine column in a row."""
        if engine not in self.engines:
            raise KeyError(f"no engine column {engine!r} in the claimed table; columns: {self.engines}")
        return self.row(row_label).cells[engine]

    def footnote_definitions(self, footnote_id: str) -> list[Footnote]:
        """Every definition of a footnote id, in order (a table may define one twice)."""
        return [footnote for footnote in self.footnotes if footnote.id == footnote_id]


def parse_claims(markdown: str, source: str) -> ClaimsTable:
    """Parse the first markdown table, its legend, asterisk notes and footnotes."""
    lines = markdown.splitlines()
    start, end = _table_bounds(lines)
    engines = _header(lines, start)
    sections, rows = _body(lines, start + 2, end, engines)
    outside = lines[:start] + lines[end:]
    footnotes = [
        Footnote(id=m[1], text=m[2].strip(), urls=_urls(m[2]))
        for m in (_FOOTNOTE_DEF.match(line.strip()) for line in outside)
        if m
    ]
    _check_refs(rows, {footnote.id for footnote in footnotes})
    return ClaimsTable(
        source=source,
        source_sha256=hashlib.sha256(markdown.encode("utf-8")).hexdigest(),
        legend=_legend(lines[:start]),
        engines=engines,
        sections=sections,
        rows=rows,
        notes=_notes(lines[end:]),
        footnotes=footnotes,
    )


def load_claims(path: Path) -> ClaimsTable:
    """Read a claims.json written by import_claims."""
    return ClaimsTable.model_validate_json(Path(path).read_text(encoding="utf-8"))


def load_current_claims(claims_path: Path) -> ClaimsTable | None:
    """Today's claims imported beside a seed claims.json (claims-current.json), None when there are none."""
    path = Path(claims_path).parent / CURRENT_CLAIMS_FILE
    return load_claims(path) if path.is_file() else None


def import_claims(markdown_path: Path, source: str, out_dir: Path, kind: str = "seed") -> list[Path]:
    """Parse a markdown table and keep it: the seed as claims.json plus a verbatim claims-source.md, today's
    claims (`kind="current"`) as claims-current.json plus claims-current.md."""
    data = Path(markdown_path).read_bytes()
    table = parse_claims(data.decode("utf-8"), source)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    claims_name, source_name = CLAIMS_FILES[kind]
    claims_path, source_path = out_dir / claims_name, out_dir / source_name
    write_atomic(claims_path, (table.model_dump_json(indent=2) + "\n").encode("utf-8"))  # never a half-written one
    if not (source_path.exists() and source_path.resolve() == Path(markdown_path).resolve()):
        write_atomic(source_path, data)
    return [claims_path, source_path]


def _table_bounds(lines: list[str]) -> tuple[int, int]:
    """Line range [start, end) of the first run of lines starting with '|'."""
    start = next((i for i, line in enumerate(lines) if line.strip().startswith("|")), None)
    if start is None:
        raise ClaimsParseError("no markdown table found (no line starts with '|')")
    end = start
    while end < len(lines) and lines[end].strip().startswith("|"):
        end += 1
    return start, end


def _split(line: str, number: int) -> list[str]:
    """The stripped cells of a table line; `\\|` is a literal pipe."""
    stripped = line.strip()
    if len(stripped) < 2 or not stripped.endswith("|"):
        raise ClaimsParseError(f"line {number}: table row must start and end with '|': {stripped!r}")
    return [cell.strip().replace("\\|", "|") for cell in _CELL_SEP.split(stripped[1:-1])]


def _is_delimiter(cells: list[str]) -> bool:
    return all(_DELIMITER.match(cell.replace(" ", "")) for cell in cells)


def _header(lines: list[str], start: int) -> list[str]:
    """Engine column names from the header row, checked against the delimiter row below it."""
    cells = _split(lines[start], start + 1)
    if _is_delimiter(cells):
        raise ClaimsParseError(f"line {start + 1}: table has no header row above the '|---|' delimiter row")
    engines = cells[1:]
    if not engines or any(not engine for engine in engines):
        raise ClaimsParseError(f"line {start + 1}: header needs a non-empty name for every engine column")
    if len(set(engines)) != len(engines):
        raise ClaimsParseError(f"line {start + 1}: duplicate engine column in header: {engines}")
    if start + 1 >= len(lines) or not lines[start + 1].strip().startswith("|"):
        raise ClaimsParseError(f"line {start + 2}: missing the '|---|' delimiter row below the header")
    delimiter = _split(lines[start + 1], start + 2)
    if not _is_delimiter(delimiter) or len(delimiter) != len(cells):
        raise ClaimsParseError(f"line {start + 2}: expected a '|---|' delimiter row with {len(cells)} cells")
    return engines


def _body(lines: list[str], first: int, end: int, engines: list[str]) -> tuple[list[str], list[Row]]:
    """Section titles and feature rows, in table order."""
    sections: list[str] = []
    rows: list[Row] = []
    for index in range(first, end):
        cells = _split(lines[index], index + 1)
        if len(cells) != len(engines) + 1:
            raise ClaimsParseError(
                f"line {index + 1}: row has {len(cells) - 1} engine cells, "
                f"expected {len(engines)}: {lines[index].strip()!r}"
            )
        raw_label, values = cells[0], cells[1:]
        bold = _BOLD.match(raw_label)
        if bold and not any(values):
            _add_unique(sections, bold[1].strip(), f"line {index + 1}: duplicate section")
            continue
        label = " ".join(_REF.sub("", _REF_ANNOTATION.sub("", raw_label)).split())
        if not label:
            raise ClaimsParseError(f"line {index + 1}: row has no label")
        if any(row.label == label for row in rows):
            raise ClaimsParseError(f"line {index + 1}: duplicate row label {label!r}")
        rows.append(
            Row(
                raw_label=raw_label,
                label=label,
                section=sections[-1] if sections else None,
                footnotes=_REF.findall(raw_label),
                cells={engine: _cell(value) for engine, value in zip(engines, values, strict=True)},
            )
        )
    if not rows:
        raise ClaimsParseError(f"line {first}: table has no feature rows")
    return sections, rows


def _add_unique(items: list[str], item: str, message: str) -> None:
    if item in items:
        raise ClaimsParseError(f"{message} {item!r}")
    items.append(item)


def _cell(raw: str) -> Cell:
    text = " ".join(_REF.sub("", raw).split())
    return Cell(raw=raw, mark=_split_mark(text)[0], text=text, footnotes=_REF.findall(raw))


def _split_mark(text: str) -> tuple[Mark | None, str]:
    """The mark a text starts with (canonical spelling, None for free text) and the rest of the text."""
    for mark in MARKS:
        for spelling in (mark, mark.replace(_VS16, "")):
            if text.startswith(spelling):
                return cast(Mark, mark), text[len(spelling) :]
    return None, text


def _legend(lines: list[str]) -> dict[Mark, str]:
    """The first line like `✅ Included | 🟠 Inferior Alternative | ...`, as mark -> meaning."""
    for line in lines:
        entries = [_split_mark(part.strip()) for part in line.split("|")]
        if len(entries) > 1 and all(mark for mark, _ in entries):
            return {cast(Mark, mark): meaning.strip() for mark, meaning in entries}
    return {}


def _notes(lines: list[str]) -> list[AsteriskNote]:
    """Paragraphs below the table that start with asterisks (`*text`, `**text`, ...)."""
    notes: list[AsteriskNote] = []
    current: AsteriskNote | None = None
    for line in lines:
        stripped = line.strip()
        match = _NOTE.match(stripped)
        if not stripped or _FOOTNOTE_DEF.match(stripped):
            current = None
        elif match:
            current = AsteriskNote(marker=match[1], text=match[2])
            notes.append(current)
        elif current is not None:
            current.text += "\n" + stripped
    return notes


def _urls(text: str) -> list[str]:
    """The distinct URLs in a footnote, in order of appearance."""
    return list(dict.fromkeys(url.rstrip(".,;:") for url in _URL.findall(text)))


def _check_refs(rows: list[Row], defined: set[str]) -> None:
    for row in rows:
        for ref in row.footnotes + [ref for cell in row.cells.values() for ref in cell.footnotes]:
            if ref not in defined:
                raise ClaimsParseError(f"row {row.label!r}: footnote [^{ref}] is referenced but never defined")
