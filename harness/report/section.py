"""What a report section renders to, on its own so section renderers (the performance tables of
harness.report.performance) need not import harness.report.sections, which imports them."""

from __future__ import annotations

from collections.abc import Callable

from pydantic import BaseModel, Field

from harness.report.context import ReportContext


class ReportSection(BaseModel):
    """A section's markdown, and any files it adds to the report folder (name -> content)."""

    markdown: str
    files: dict[str, str] = Field(default_factory=dict)


SectionRenderer = Callable[[ReportContext], ReportSection]
