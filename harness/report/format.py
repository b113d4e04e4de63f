"""Small text helpers for the generated markdown."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar

from pydantic import BaseModel

ModelT = TypeVar("ModelT", bound=BaseModel)

_REF = re.compile(r"\[\^([^\]\s]+)\]")
NUMBERS_SHOWN = 6
VALUE_CHARS = 40


def one_line(text: str) -> str:
    """Collapse all whitespace, newlines included, to single spaces."""
    return " ".join(text.split())


_MARKUP = re.compile(r"([\\`*\[\]<>])")  # what could open a link, an image, HTML, code or emphasis
RECORD_TEXT_CHARS = 2000  # a record's text longer than this is cut in the report


def record_text(text: str, limit: int = RECORD_TEXT_CHARS) -> str:
    """Text from a record made inert in markdown: one line, cut to `limit`, markup characters escaped
    and URLs defused, so a hostile record cannot add links, HTML or images to the report."""
    text = one_line(text)
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return _MARKUP.sub(r"\\\1", text).replace("://", ":\\/\\/")


def inert_record(record: ModelT) -> ModelT:
    """The record (a probe or a bench record, any pydantic model) with every string in it, at any depth, keys
    included, passed through `record_text`: no field of a record can put markup into the report. Ordinary values
    (names, versions, ids, launch keys) have no markup characters and come back unchanged."""
    return _inert_model(record, record_text)


def inert_claims(table: ModelT) -> ModelT:
    """A claims table with every string passed through `inert_markdown`: its markdown (footnotes, web links) stays,
    HTML and links to anything but http(s), mailto or a fragment do not."""
    return _inert_model(table, inert_markdown)


_SAFE_LINK = re.compile(r"(?:https?:|mailto:|#)", re.IGNORECASE)
_LINK_TARGET = re.compile(r"(\]\(\s*<?)([^)\s>]*)")  # `](target` of an inline link or image
_REF_DEFINITION = re.compile(r"^(\s*\[[^\]]+\]:\s*)(\S+)", re.MULTILINE)  # `[label]: target`


_CODE_SPAN = re.compile(r"(`+[^`]*?`+)")


def inert_markdown(text: str) -> str:
    """Markdown meant as markdown (claims) made inert: `<` escaped as an entity outside code spans (no raw HTML, no
    autolink), and every link or image target that is not http(s), mailto or a fragment replaced by `#`
    (javascript:, data:, vbscript:, file:, protocol-relative //)."""
    text = "".join(
        part if part.startswith("`") else part.replace("<", "&lt;") for part in _CODE_SPAN.split(text)
    )  # inside a code span `<` is shown as written, and opens nothing

    def target(match: re.Match[str]) -> str:
        url = "".join(match[2].split()).replace("\x00", "")
        return match[1] + (match[2] if _SAFE_LINK.match(url) and not url.startswith("//") else "#")

    return _REF_DEFINITION.sub(target, _LINK_TARGET.sub(target, text))


def _inert_model(model: ModelT, inert: Callable[[str], str]) -> ModelT:
    """A copy (not validated again: an escaped value may no longer pass a field's validator) with every string
    field, at any depth, through `inert`."""
    return model.model_copy(update={name: _inert(getattr(model, name), inert) for name in type(model).model_fields})


def _inert(value: Any, inert: Callable[[str], str] = record_text) -> Any:
    """Every string in `value` (nested models, lists and dicts included, keys too) through `inert`."""
    if isinstance(value, BaseModel):
        return _inert_model(value, inert)
    if isinstance(value, Enum):
        return value
    if isinstance(value, str):
        return inert(value)
    if isinstance(value, (list, tuple)):
        return [_inert(item, inert) for item in value]
    if isinstance(value, dict):
        return {(inert(key) if isinstance(key, str) else key): _inert(item, inert) for key, item in value.items()}
    return value


def table_cell(text: str) -> str:
    """Text made safe inside a markdown table cell."""
    return one_line(text).replace("|", "\\|")


def relink_refs(text: str, labels: Callable[[str], list[str]]) -> str:
    """Rewrite every footnote reference `[^id]` to the references of its new labels."""
    return _REF.sub(lambda match: "".join(f"[^{label}]" for label in labels(match[1])), text)


def timestamp(moment: datetime) -> str:
    """A record's time, to the second."""
    return moment.isoformat(timespec="seconds")


def short_numbers(numbers: dict[str, Any]) -> str:
    """The first few evidence numbers as `key=value`, sorted by key."""
    items = [f"{key}={_short_value(numbers[key])}" for key in sorted(numbers)[:NUMBERS_SHOWN]]
    if len(numbers) > NUMBERS_SHOWN:
        items.append(f"… {len(numbers) - NUMBERS_SHOWN} more")
    return ", ".join(items)


def _short_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, separators=(",", ":"))
    text = one_line(text)
    return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
