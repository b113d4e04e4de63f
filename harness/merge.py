"""Merge uploaded result folders (CI artifacts, other hosts' runs) into a results folder.

An uploaded folder holds run folders laid out as under results/: `<engine>/<run_id>/` with probe
records, maybe a benchmark record and `logs/`. Every file is copied to the same place under the
target; a file already there with the same bytes is skipped (merging twice is harmless), and one
with other bytes is a conflict: records are never rewritten, so nothing is copied at all.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from harness.report.layout import record_relpath
from harness.results import BENCH_FILE, ResultRecord

SKIPPED = {"record.schema.json"}


class MergeError(ValueError):
    """An uploaded folder is not a results folder, or merging it would overwrite a record."""


def run_folders(source: Path) -> list[Path]:
    """Every `<engine>/<run_id>` folder under `source` (a folder holding records or a benchmark record)."""
    if not Path(source).is_dir():
        raise MergeError(f"not a folder: {source}")
    folders = {path.parent for path in Path(source).rglob("*.json")
               if path.name not in SKIPPED and "logs" not in path.relative_to(source).parts}
    for folder in folders:
        for path in folder.glob("*.json"):
            if path.name != BENCH_FILE:
                _check_place(path, folder)
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
        for folder in run_folders(source):
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
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
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".tmp-{target.name}")
        shutil.copyfile(path, temporary)
        os.replace(temporary, target)
    return sorted(copies)
