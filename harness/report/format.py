"""Small text helpers for the generated markdown."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

from harness.records.results import ResultRecord

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


def inert_record(record: ResultRecord) -> ResultRecord:
    """The record with every free text the report may show passed through `record_text`."""
    engine, host, harness = record.engine, record.host, record.harness
    update: dict[str, Any] = {
        "reason": record_text(record.reason),
        "engine": engine.model_copy(update={key: _inert(getattr(engine, key)) for key in (
            "name", "version", "package", "package_version", "image", "image_digest")}),
        "host": host.model_copy(update={"hostname": record_text(host.hostname), "cpu": record_text(host.cpu),
                                        "accelerators": [record_text(a) for a in host.accelerators]}),
        "harness": harness.model_copy(update={"version": record_text(harness.version),
                                              "git_commit": _inert(harness.git_commit)}),
        "evidence": record.evidence.model_copy(update={"numbers": _inert(record.evidence.numbers),
                                                       "absence_source": _inert(record.evidence.absence_source)}),
    }
    if record.launch is not None:
        update["launch"] = record.launch.model_copy(update={"base_url": _inert(record.launch.base_url)})
    return record.model_copy(update=update)


def _inert(value: Any) -> Any:
    """Every string in `value` (nested lists and dicts included) through `record_text`."""
    if isinstance(value, str):
        return record_text(value)
    if isinstance(value, list):
        return [_inert(item) for item in value]
    if isinstance(value, dict):
        return {key: _inert(item) for key, item in value.items()}
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
