"""Run an install step with its output into a log file, line by line to a progress handler."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

BIG_DOWNLOAD_MB = 50.0  # downloads at least this big are reported one by one


def run_logged(command: list[str], log: Path, on_line: Callable[[str], None] | None = None) -> int:
    """Run `command`, its output into `log` and, line by line, to `on_line`; returns the exit status."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w", encoding="utf-8", errors="replace") as handle:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
        )
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            if on_line is not None:
                on_line(line)
        return process.wait()


def pip_progress(progress: Callable[[str], None], step: int = 20) -> Callable[[str], None]:
    """A line handler for `pip install` output: every `step` requirements collected, each big download, and the
    install of the collected packages (pip prints no percentage when its output is not a terminal)."""
    collected = [0]

    def on_line(line: str) -> None:
        if line.startswith(("Collecting ", "Processing ")):
            collected[0] += 1
            if collected[0] % step == 0:
                progress(f"pip: {collected[0]} requirements collected")
        elif (found := re.match(r"\s*Downloading (\S+) \((\d+(?:\.\d+)?) (MB|GB)\)", line)) and (
            found[3] == "GB" or float(found[2]) >= BIG_DOWNLOAD_MB
        ):
            progress(f"pip: downloading {found[1]} ({found[2]} {found[3]})")
        elif line.startswith("Installing collected packages:"):
            count = len(line.split(":", 1)[1].split(","))
            progress(f"pip: {collected[0]} requirements collected; installing {count} packages")
        elif line.startswith("Successfully installed"):
            progress("pip: installed")

    return on_line
