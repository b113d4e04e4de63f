"""The evidence site: the comparison table with switchable measurement contexts, a page per cell with its
evidence and history, the benchmark plots, all static files that work from file:// and on GitHub Pages."""

from harness.site.build import SITE_MARKER, SiteError, build_site

__all__ = ["SITE_MARKER", "SiteError", "build_site"]
