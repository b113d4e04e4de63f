"""Merge uploaded result folders (CI artifacts, other hosts' runs) into a results folder.

An uploaded folder holds run folders laid out as under results/: `<engine>/<run_id>/` with probe
records, maybe a benchmark record and `logs/`. Every file is copied to the same place under the
target; a file already there with the same bytes is skipped (merging twice is harmless), and one
with other bytes is a conflict: records are never rewritten, so nothing is copied at all.

Uploads are untrusted: a symlink or anything else that is not a regular file or a folder refuses
the whole merge (a link to /etc/shadow must never be copied into results/), and temporary files
left by an interrupted write (`.tmp-*`) are ignored.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

from harness.atomic import TMP_PREFIX, write_atomic
from harness.records.layout import record_relpath
from harness.records.results import BENCH_FILE, ResultRecord

SKIPPED = {"record.schema.json"}


class MergeError(ValueError):
    """An uploaded folder is not a results folder, or merging it would overwrite a record."""


def uploaded_files(source: Path) -> list[Path]:
    """Every regular file under `source` but temporary ones, sorted; MergeError on a symlink or a special file."""
    source = Path(source)
    if source.is_symlink() or not source.is_dir():
        raise MergeError(f"not a folder: {source}")
    files = []
    for folder, dirs, names in os.walk(source):
        for name in sorted(dirs + names):
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise MergeError(f"refusing to merge {source}: {path} is a symlink")
            if stat.S_ISREG(mode) and not name.startswith(TMP_PREFIX):
                files.append(path)
            elif not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
                raise MergeError(f"refusing to merge {source}: {path} is not a regular file")
    return sorted(files)


def run_folders(source: Path) -> list[Path]:
    """Every `<engine>/<run_id>` folder under `source` (a folder holding records or a benchmark record)."""
    files = uploaded_files(source)
    folders = {
        path.parent
        for path in files
        if path.suffix == ".json" and path.name not in SKIPPED and "logs" not in path.relative_to(source).parts
    }
    for path in files:
        if path.parent in folders and path.suffix == ".json" and path.name != BENCH_FILE:
            _check_place(path, path.parent)
    return sorted(folders)


def _check_place(path: Path, folder: Path) -> None:
    try:
        record = ResultRecord.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError as exc:
        raise MergeError(f"{path} is not a result record: {str(exc).splitlines()[0]}") from None
    expected = record_relpath(record)
    if (folder.parent.name, folder.name, path.name) != expected.parts:
        raise MergeError(f"{path} belongs at {expected}, not in {folder.parent.name}/{folder.name}")


def plan(sources: list[Path], results_dir: Path) -> dict[Path, Path]:
    """Target file -> uploaded file for everything not yet merged; MergeError on any conflict."""
    copies: dict[Path, Path] = {}
    for source in sources:
        files = uploaded_files(source)
        for folder in run_folders(source):
            for path in (p for p in files if folder in p.parents):
                target = Path(results_dir) / folder.parent.name / folder.name / path.relative_to(folder)
                existing = copies.get(target, target if target.exists() else None)
                if existing is None:
                    copies[target] = path
                elif existing.read_bytes() != path.read_bytes():
                    raise MergeError(f"refusing to overwrite {target} with the different {path}")
    return {target: path for target, path in copies.items() if not target.exists()}


def merge(sources: list[Path], results_dir: Path) -> list[Path]:
    """Copy every uploaded run folder into `results_dir` (all or nothing); returns the files written."""
    copies = plan(sources, results_dir)
    for target, path in sorted(copies.items()):
        write_atomic(target, path.read_bytes(), replace=False)
    return sorted(copies)
