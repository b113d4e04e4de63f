"""The generated report: the comparison table regenerated from claims and measured results."""

from harness.report.layout import record_relpath
from harness.report.render import REPORT_FILE, render_report, write_report
from harness.report.sections import DEFAULT_SECTIONS, ReportSection, SectionRenderer

__all__ = ["DEFAULT_SECTIONS", "REPORT_FILE", "ReportSection", "SectionRenderer", "record_relpath", "render_report",
           "write_report"]
