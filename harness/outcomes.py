"""Outcomes a probe can meet before any verdict: the feature is not expressible, or not measurable here."""

from __future__ import annotations


class Unsupported(Exception):
    """The engine's API has no way to express this feature (a documented absence).

    `source` names where the absence is documented: a file at a version (`vllm/.../__init__.py in
    vllm 0.32.0`) or a docs page. The record keeps it and the report shows it beside the cell.
    """

    def __init__(self, message: str, source: str | None = None) -> None:
        super().__init__(message)
        self.source = source


class NotMeasurable(Exception):
    """This host or mode cannot run what the probe needs (no GPU, too few devices, attach mode)."""
