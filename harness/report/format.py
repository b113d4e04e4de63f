"""Small text helpers for the generated markdown."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

_REF = re.compile(r"\[\^([^\]\s]+)\]")
NUMBERS_SHOWN = 6
VALUE_CHARS = 40


def one_line(text: str) -> str:
    """Collapse all whitespace, newlines included, to single spaces."""
    return " ".join(text.split())


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
