"""Atomic file writes: a temporary file in the target's folder, then a rename, never a half-written file.

Readers see the old file or the new one, never a mix (two concurrent report writers each rename
a whole file into place). A write that fails leaves no temporary file behind, and files get
mode 0666 less the umask, like any file the user creates.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

TMP_PREFIX = ".tmp-"  # temporary files start so; readers and `merge` skip them


def umask() -> int:
    """The process umask: from /proc on Linux (never changed, even briefly), else set and set back."""
    with contextlib.suppress(OSError, ValueError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("Umask:")).split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomic(target: Path, data: bytes, *, replace: bool = True) -> Path:
    """Write `data` to `target` through a temporary file and a rename; with replace=False an existing
    `target` is never rewritten (FileExistsError, also when another writer got there first)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not replace and target.exists():
        raise FileExistsError(f"already exists: {target}")
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=target.suffix, dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o666 & ~umask())
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, target)
        else:
            os.link(tmp, target)  # fails if the target appeared meanwhile: no record is ever overwritten
            os.unlink(tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target


def check_writable(folder: Path) -> None:
    """Create `folder` if needed and prove a file can be written there; OSError (with the folder) if not."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise OSError(exc.errno, f"results folder {folder} is not writable: {exc.strerror or exc}") from None
