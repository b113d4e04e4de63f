"""The generated report: the comparison table regenerated from claims and measured results."""

from harness.records.layout import record_relpath  # the report links records by their path
from harness.report.render import REPORT_FILE, render_report, write_report
from harness.report.sections import DEFAULT_SECTIONS, ReportSection, SectionRenderer

__all__ = ["DEFAULT_SECTIONS", "REPORT_FILE", "ReportSection", "SectionRenderer", "record_relpath", "render_report",
           "write_report"]
