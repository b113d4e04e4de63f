"""The nightly GPU workflow: actionlint accepts it, its matrix covers every engine, and merging the
uploaded records gives the same report as rendering all of them at once (on committed real CPU-run records)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness.bench.records import load_bench_records
from harness.docker.specs import all_specs
from harness.engines import adapter_classes
from harness.paths import REPO_ROOT
from harness.records.claims import load_claims, load_current_claims
from harness.records.merge import MergeError, merge
from harness.records.results import load_records
from harness.report import render_report, write_report

WORKFLOW = REPO_ROOT / ".github" / "workflows" / "nightly.yml"
CLAIMS = REPO_ROOT / "report" / "claims.json"
COMMITTED = REPO_ROOT / "results"


def actionlint() -> str:
    """The actionlint binary of the dev extra (beside this Python), else on PATH."""
    found = Path(sys.executable).with_name("actionlint")
    path = str(found) if found.exists() else shutil.which("actionlint")
    assert path, "actionlint is missing: pip install -e '.[dev]'"
    return path


def test_actionlint_accepts_the_workflows():
    result = subprocess.run([actionlint(), str(WORKFLOW)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_matrix_covers_every_engine_and_uploads_what_the_report_job_downloads():
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    matrix = jobs["probe"]["strategy"]["matrix"]
    # every engine with a GPU image; llama-cpp-python's project publishes a CPU image only (docker/simple)
    with_gpu_image = [name for name in adapter_classes() if any(s.needs_gpu for s in all_specs() if s.engine == name)]
    assert sorted(matrix["engine"]) == sorted(with_gpu_image)
    steps = jobs["probe"]["steps"]
    probe_step = next(step["run"] for step in steps if step.get("name") == "probes")
    assert 'pytest probes -m gpu --engine "$ENGINE" --launcher docker' in probe_step
    upload = next(step["with"] for step in steps if str(step.get("uses", "")).startswith("actions/upload-artifact"))
    assert upload["path"] == jobs["probe"]["env"]["RECORDS"].split()[0]
    download = next(
        step["with"]
        for step in jobs["report"]["steps"]
        if str(step.get("uses", "")).startswith("actions/download-artifact")
    )
    assert upload["name"].startswith(download["pattern"].rstrip("*"))


def _steps(job: str) -> list[dict]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"][job]["steps"]


def test_hf_token_reaches_only_the_probe_steps():
    """Issue 11: HF_TOKEN was in the job environment, so `pip install` and every build saw it."""
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    for name, job in jobs.items():
        assert "HF_TOKEN" not in (job.get("env") or {}), name
        for step in job["steps"]:
            if "HF_TOKEN" in (step.get("env") or {}):
                assert step.get("name") == "probes", (name, step)
    assert all(
        "HF_TOKEN" in step["env"]
        for job in ("probe", "apple-silicon")
        for step in _steps(job)
        if step.get("name") == "probes"
    )


def test_actions_are_pinned_by_commit():
    for job in yaml.safe_load(WORKFLOW.read_text())["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                action, _, ref = step["uses"].partition("@")
                assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{action} is pinned by {ref!r}, not a commit"


def test_images_are_built_before_probing_and_macos_runs_llama_cpp_with_metal():
    names = [step.get("name") for step in _steps("probe")]
    assert names.index("build or pull the engine's images") < names.index("probes")
    build = next(step["run"] for step in _steps("probe") if step.get("name") == "build or pull the engine's images")
    assert "harness.docker.build" in build and "$ENGINE" in build
    mac = yaml.safe_load(WORKFLOW.read_text())["jobs"]["apple-silicon"]
    assert mac["runs-on"].startswith("macos-") and "--engine llama.cpp" in next(
        step["run"] for step in mac["steps"] if step.get("name") == "probes"
    )
    assert any(str(step.get("with", {}).get("name", "")).startswith("records-") for step in mac["steps"])
    assert "apple-silicon" in yaml.safe_load(WORKFLOW.read_text())["jobs"]["report"]["needs"]


def test_pytest_m_gpu_selects_every_probe_for_every_column():
    """`pytest -m gpu --engine X --launcher docker` (the nightly probe step): every column's image needs a GPU, so
    every probe gets the gpu mark (llama.cpp's CUDA spec named: this CPU host would pick its CPU image); and the
    newest column collects every probe end to end."""
    from harness.probing.plugin import _container_needs_gpu

    engines = yaml.safe_load(WORKFLOW.read_text())["jobs"]["probe"]["strategy"]["matrix"]["engine"]

    class Config:
        def __init__(self, engine: str) -> None:
            self.options = {
                "--launcher": "docker",
                "--engine": engine,
                "--container": "llama.cpp" if engine == "llama.cpp" else None,
            }

        def getoption(self, name: str) -> object:
            return self.options[name]

    assert all(_container_needs_gpu(Config(engine)) for engine in engines)  # type: ignore[arg-type]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "probes",
            "-m",
            "gpu",
            "--engine",
            "ExLlamaV3",
            "--launcher",
            "docker",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    summary = result.stdout.strip().splitlines()[-1]
    assert re.match(r"\d+ tests collected", summary) and "deselected" not in summary, summary


def _copy(paths: list[Path], artifact: Path) -> None:
    for path in paths:
        target = artifact / path.relative_to(COMMITTED)
        if path.is_dir():
            shutil.copytree(path, target)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)


@pytest.fixture
def artifacts(tmp_path: Path) -> list[Path]:
    """Two "uploaded artifacts" made from the committed records: one llama.cpp run split across both,
    the benchmark run in the first, the vLLM run in the second."""
    probe_runs = sorted(
        path for path in COMMITTED.glob("*/*") if any(path.glob("*.json")) and not (path / "bench.json").exists()
    )
    bench_runs = sorted(path.parent for path in COMMITTED.glob("*/*/bench.json"))
    assert len({run.parent.name for run in probe_runs}) >= 2 and bench_runs, "the committed CPU-run records are missing"
    first, second = tmp_path / "records-a", tmp_path / "records-b"
    split = probe_runs[0]
    records = sorted(split.glob("*.json"))
    _copy(records[::2] + [split / "logs"] + bench_runs, first)
    _copy(records[1::2] + probe_runs[1:], second)
    return [first, second]


def test_merge_gives_the_report_of_all_records(artifacts, tmp_path):
    merged, report_dir = tmp_path / "results", tmp_path / "report"
    written = merge(artifacts, merged)
    uploaded = sorted(p.relative_to(a) for a in artifacts for p in a.rglob("*") if p.is_file())
    assert sorted(p.relative_to(merged) for p in written) == uploaded
    write_report(CLAIMS, merged, report_dir)
    union = render_report(
        load_claims(CLAIMS),
        [r for a in artifacts for r in load_records(a)],
        sorted(adapter_classes()),
        results_href="../results",
        bench=[b for a in artifacts for b in load_bench_records(a)],
        current=load_current_claims(CLAIMS),
    )
    produced = {
        p.relative_to(report_dir).as_posix(): p.read_text(encoding="utf-8")
        for p in report_dir.rglob("*")
        if p.is_file()
    }
    assert "comparison.md" in produced and produced == union
    assert merge(artifacts, merged) == []  # merging the same uploads again changes nothing


def test_merge_refuses_to_overwrite_a_record(artifacts, tmp_path):
    merged = tmp_path / "results"
    merge(artifacts[:1], merged)
    before = {p: p.read_bytes() for p in merged.rglob("*") if p.is_file()}
    changed = tmp_path / "records-c"
    shutil.copytree(artifacts[0], changed)
    record = next(p for p in sorted(changed.rglob("*.json")) if p.name != "bench.json")
    record.write_text(record.read_text() + " ")
    with pytest.raises(MergeError, match="refusing to overwrite"):
        merge([artifacts[1], changed], merged)
    assert {p: p.read_bytes() for p in merged.rglob("*") if p.is_file()} == before  # all or nothing


def test_merge_rejects_a_misplaced_record(artifacts, tmp_path):
    record = next(p for p in sorted(artifacts[0].rglob("*.json")) if p.name != "bench.json")
    wrong = tmp_path / "wrong" / "tgi" / "some-run"
    wrong.mkdir(parents=True)
    shutil.copyfile(record, wrong / record.name)
    with pytest.raises(MergeError, match="belongs at"):
        merge([tmp_path / "wrong"], tmp_path / "results")


def test_merge_command(artifacts, tmp_path):
    command = [
        sys.executable,
        "-m",
        "harness.cli.app",
        "merge",
        *map(str, artifacts),
        "--results-dir",
        str(tmp_path / "r"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    missing = subprocess.run(
        command[:4] + [str(tmp_path / "none")], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )
    assert missing.returncode == 2 and "not a folder" in missing.stderr


PAGES = REPO_ROOT / ".github" / "workflows" / "pages.yml"


def test_actionlint_accepts_the_pages_workflow():
    result = subprocess.run([actionlint(), str(PAGES)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_write_token_where_artifacts_are_processed_and_pages_publish_only_main():
    """Issue 24: the report job checks out without persisting its token (it runs infercheck over uploaded
    artifacts), and Pages is deployed from main (the merged, reviewed PR), never from the nightly job."""
    report = yaml.safe_load(WORKFLOW.read_text())["jobs"]["report"]
    checkout = next(step for step in report["steps"] if step.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    nightly = WORKFLOW.read_text()
    assert "deploy-pages" not in nightly and "upload-pages-artifact" not in nightly
    pages = yaml.safe_load(PAGES.read_text())
    assert pages[True]["push"]["branches"] == ["main"]  # yaml reads the key `on` as True
    assert "schedule" not in pages[True] and "workflow_run" not in pages[True]


def test_no_container_spec_passes_hf_token_through():
    """Issue 24: models are fetched on the host and mounted read-only; no engine image gets HF_TOKEN."""
    from harness.docker.specs import all_specs

    for spec in all_specs():
        assert "HF_TOKEN" not in spec.env_passthrough and "HF_TOKEN" not in spec.env, spec.name
