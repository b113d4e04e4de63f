"""`infercheck site`: the whole site built into a temporary folder beside the target, then swapped in,
so a crash never leaves a half site."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from datetime import datetime
from pathlib import Path

from harness.atomic import TMP_PREFIX, umask
from harness.bench.records import load_bench_records
from harness.engines import adapter_classes
from harness.records.claims import load_claims, load_current_claims
from harness.records.layout import record_relpath
from harness.records.results import ResultRecord, load_records
from harness.report.context import ReportContext, build_context
from harness.report.performance import render_performance
from harness.site.assets import bench_relpath, write_bench, write_plots, write_records, write_static
from harness.site.history import history_by_cell
from harness.site.pages import cell_page, environment, index_page, plots_page, runs_page
from harness.site.views import cell_pages

STALE_S = 3600.0  # a temporary build folder this old belongs to a build that was killed
SITE_MARKER = ".infercheck-site"  # in every site folder: only a folder holding it (or an empty one) is replaced


class SiteError(Exception):
    """The site cannot be written (the message says why, in one line)."""


def build_site(
    claims_path: Path,
    results_dir: Path,
    out_dir: Path,
    *,
    include_attach: bool = False,
    allow_dirty: bool = False,
    now: datetime | None = None,
) -> list[Path]:
    """Write the site for the records under results_dir into out_dir (replaced whole); returns its pages."""
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    records = load_records(Path(results_dir))
    bench = load_bench_records(Path(results_dir))
    context = build_context(
        load_claims(Path(claims_path)),
        records,
        sorted(adapter_classes()),
        "records",
        bench,
        include_attach=include_attach,
        allow_dirty=allow_dirty,
        now=now,
        current=load_current_claims(Path(claims_path)),
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale(out_dir.parent)
    staging = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "site-", dir=out_dir.parent))
    try:
        pages = _write_site(staging, context, records)
        _publish(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out_dir / page for page in pages]


def _write_site(site: Path, context: ReportContext, records: list[ResultRecord]) -> list[str]:
    env = environment()
    pages = cell_pages(context)
    left_out = {str(record_relpath(left.record)): left.why for left in context.left_out}
    histories = history_by_cell(records, list(pages), context.records, left_out)
    files = {"index.html": index_page(env, context, pages), "runs.html": runs_page(env, records, left_out)}
    for row, cell in context.cells():
        if (page := pages.get((cell.engine, row.label))) is not None:
            files[page] = cell_page(env, context, row, cell, histories[(cell.engine, row.label)])
    write_static(site)
    write_records(site, records)
    write_bench(site, context.bench)
    plots = write_plots(site, render_performance(context).files)
    files["plots.html"] = plots_page(
        env, context, plots, context.bench, lambda record: str(bench_relpath(record) or "")
    )
    for name, content in files.items():
        target = site / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    (site / SITE_MARKER).write_text("written by infercheck site; the whole folder is replaced on the next run\n")
    (site / ".nojekyll").write_text("")  # GitHub Pages serves the files as they are
    return sorted(files)


def _sweep_stale(parent: Path) -> None:
    """Remove the temporary folders of builds killed more than STALE_S ago (a running build's are younger)."""
    for folder in parent.glob(f"{TMP_PREFIX}*site-*"):
        if folder.is_dir() and not folder.is_symlink() and time.time() - folder.stat().st_mtime > STALE_S:
            shutil.rmtree(folder, ignore_errors=True)


def _check_replaceable(out_dir: Path) -> None:
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise SiteError(f"{out_dir} is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / SITE_MARKER).is_file():
        raise SiteError(f"{out_dir} holds files that are not a site infercheck wrote: refusing to replace it")


def _publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished site in: the old one is renamed away first and removed only after the swap."""
    os.chmod(staging, 0o777 & ~umask())  # mkdtemp made it 0700
    old = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + "old-site-", dir=out_dir.parent))
        os.rename(out_dir, old / "site")
    try:
        os.rename(staging, out_dir)
    except OSError:
        if old is not None:
            os.rename(old / "site", out_dir)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
