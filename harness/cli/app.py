"""The `infercheck` command line."""

from __future__ import annotations

import json
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import typer
from rich.console import Console

from harness.atomic import TMP_PREFIX, check_writable, write_atomic
from harness.cli.bench import bench_app
from harness.deadline import check_deadlines
from harness.engines import UnknownEngineError, get_adapter
from harness.models.sets import ModelSetError, load_model_set
from harness.paths import REPO_ROOT, cache_dir, default_report_dir, default_results_dir, default_site_dir
from harness.records.results import RecordWarning, record_json_schema

app = typer.Typer(
    help="Measure what LLM inference engines really do, and regenerate the comparison table.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _progress(message: str) -> None:
    console.print(f"[cyan]•[/cyan] {message}", highlight=False)


def _quiet_libraries() -> None:
    """Setup and run print their own steps: no FutureWarnings from transformers and torch and no weight-loading
    progress bars. The variables are read when transformers is imported, here and in every child process."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar follows it
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # its fork warning
    warnings.filterwarnings("ignore", category=FutureWarning)


@app.command()
def setup(engine: str = typer.Argument("llama.cpp", help="engine to set up")) -> None:
    """Install the engine (cached), then synthesize the models (llama-quantize makes the GGUF quants)."""
    _quiet_libraries()
    from harness.models import ensure_models
    from harness.toolchain import llamacpp as toolchain

    try:
        adapter = get_adapter(engine)
    except UnknownEngineError as exc:
        _fail(str(exc))
    adapter.install(_progress)
    build = toolchain.ensure_build(cache_dir(), progress=_progress)
    artifacts = ensure_models(cache_dir(), build.quantize, progress=_progress)
    _progress(f"{len(artifacts)} model files ready under {cache_dir() / 'models'}")


@app.command()
def run(
    engine: str = typer.Option("llama.cpp", help="engine adapter"),
    base_url: str | None = typer.Option(None, help="attach to a running server instead of launching"),
    attach_model: str = typer.Option("llama", help="synthesized model the attached server serves"),
    attach_format: str | None = typer.Option(None, help="its format (default: the adapter's)"),
    attach_option: list[str] = typer.Option(
        [],
        "--attach-option",
        help="KEY=VALUE: a launch option the attached server was started with (e.g. tool_calling=true), so the "
        "probes that need it run; recorded as declared, not verified",
    ),
    results_dir: Path = typer.Option(default_results_dir(), help="where records are written"),
    out_dir: Path | None = typer.Option(
        None,
        help="where the report is regenerated (default: beside the results used: report/ for the project's "
        "results folder, <results>-report for any other)",
    ),
    select: str | None = typer.Option(None, "-k", help="pytest -k expression to pick probes"),
    report: bool = typer.Option(True, help="regenerate the report afterwards"),
    launcher: str = typer.Option("process", help="process, or docker (containers/<name>/spec.yaml)"),
    container: str | None = typer.Option(None, help="with --launcher docker: the container spec"),
    pull: bool = typer.Option(False, help="with --launcher docker: pull a missing image"),
    model_set: Path | None = typer.Option(
        None,
        help="YAML of real checkpoints (model-sets/); used when "
        "the Hugging Face Hub answers, synthesized models otherwise",
    ),
) -> None:
    """Run the probes against one engine and record the verdicts; say which cells of the table changed."""
    _quiet_libraries()
    from harness.report.changes import TableState, describe_changes, table_state

    try:
        get_adapter(engine)
        if model_set is not None:
            load_model_set(model_set)
    except (UnknownEngineError, ModelSetError) as exc:
        _fail(str(exc))
    try:
        check_writable(results_dir)  # found out now, not after minutes of probing
    except OSError as exc:
        _fail(str(exc.strerror))
    out_dir = out_dir if out_dir is not None else report_dir_for(results_dir)
    try:
        check_deadlines()  # a malformed $INFERCHECK_*_TIMEOUT_S is one line, before any probe and any report
    except ValueError as exc:
        _fail(str(exc))
    if base_url:
        _check_reachable(base_url, get_adapter(engine).health_path)
    claims = default_report_dir() / "claims.json"
    before = table_state(claims, results_dir) if report else TableState()
    args = [
        str(REPO_ROOT / "probes"),
        "--engine",
        engine,
        "--results-dir",
        str(results_dir),
        "--attach-model",
        attach_model,
        "-p",
        "no:cacheprovider",
        "-q",
    ]
    if base_url:
        args += ["--base-url", base_url]
    if attach_format:
        args += ["--attach-format", attach_format]
    for option in attach_option:
        args += ["--attach-option", option]
    if select:
        args += ["-k", select]
    args += ["--launcher", launcher] + (["--container", container] if container else []) + (["--pull"] if pull else [])
    if model_set is not None:
        args += ["--model-set", str(model_set)]
    code = pytest.main(args)
    if code in (128 + signal.SIGINT, 128 + signal.SIGTERM):
        _fail(
            f"interrupted by {signal.Signals(code - 128).name}: the probe in progress is recorded as an error, "
            f"the records so far are under {results_dir}",
            code=code,
        )
    if code == pytest.ExitCode.USAGE_ERROR:
        raise typer.Exit(2)
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        _fail(f"-k {select!r} selects no probe" if select else "no probe collected")
    if report:
        _write_report(claims, results_dir, out_dir)
        for line in describe_changes(before, table_state(claims, results_dir)):
            _progress(line)
    if code != pytest.ExitCode.OK:
        _fail(f"some probes could not finish (pytest exit {int(code)}); their records say why", code=1)


def report_dir_for(results_dir: Path) -> Path:
    """Where `run` writes the report of `results_dir` unless told: the project's report/ only for the project's
    results folder; beside any other folder (`<name>-report`), so a run into a new or misspelt folder never
    rewrites the project's report from that folder alone."""
    if results_dir.resolve() == default_results_dir().resolve():
        return default_report_dir()
    return results_dir.resolve().with_name(f"{results_dir.resolve().name}-report")


def _check_reachable(base_url: str, health_path: str) -> None:
    try:
        url = httpx.URL(base_url)
        if url.scheme not in ("http", "https") or not url.host:
            _fail(f"--base-url {base_url[:200]!r}: not an http:// or https:// URL with a host")
        httpx.get(base_url.rstrip("/") + health_path, timeout=5).raise_for_status()
    except (httpx.ReadTimeout, httpx.RemoteProtocolError, httpx.HTTPStatusError) as exc:
        # it listens but answers badly: probe it anyway, so every probe's record says what went wrong
        console.print(
            f"[yellow]warning:[/yellow] {base_url[:200]}{health_path}: {type(exc).__name__}: {str(exc)[:200]}; "
            "probing it anyway",
            highlight=False,
        )
    except httpx.HTTPError as exc:
        _fail(f"cannot reach {base_url[:200]}{health_path}: {type(exc).__name__}: {str(exc)[:300]}")
    except (httpx.InvalidURL, ValueError) as exc:  # unclosed [::1, a host label over 63 characters (UnicodeError)
        _fail(f"--base-url {base_url[:200]!r} is not a usable URL: {str(exc).splitlines()[0][:200]}")


@app.command("report")
def report_command(
    claims: Path = typer.Option(default_report_dir() / "claims.json", help="claimed table (JSON)"),
    results_dir: Path = typer.Option(default_results_dir(), help="result records"),
    out_dir: Path = typer.Option(default_report_dir(), help="output folder"),
    include_attach: bool = typer.Option(False, help="count attach-mode records in the table"),
    allow_dirty: bool = typer.Option(False, help="count records made from a dirty harness tree"),
) -> None:
    """Regenerate the comparison table from the claims and the result records (see `infercheck schema`)."""
    _write_report(claims, results_dir, out_dir, include_attach=include_attach, allow_dirty=allow_dirty)


@contextmanager
def _record_warnings() -> Iterator[None]:
    """Print every RecordWarning raised inside as one line, once the block is done."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RecordWarning)
        yield
    for warning in (w for w in caught if issubclass(w.category, RecordWarning)):
        console.print(f"[yellow]warning:[/yellow] {warning.message}", highlight=False, soft_wrap=True)


def _refuse_empty(results_dir: Path, what: str) -> None:
    """Exit 2 when `results_dir` holds no record at all: an empty or misspelt folder never replaces a report or
    the site."""
    if not any(
        path.name != "record.schema.json" and not path.name.startswith(TMP_PREFIX)
        for path in results_dir.rglob("*.json")
    ):
        _fail(f"no result records under {results_dir}: refusing to write {what} without results")


def _check_inputs(claims: Path, results_dir: Path, what: str) -> None:
    """Stop with one line unless the claims file and a results folder with records exist."""
    if not claims.exists():
        _fail(f"claims file not found: {claims} (run `infercheck claims-import`)")
    if not results_dir.is_dir():
        _fail(f"results folder not found: {results_dir}")
    _refuse_empty(results_dir, what)


def _write_report(
    claims: Path, results_dir: Path, out_dir: Path, *, include_attach: bool = False, allow_dirty: bool = False
) -> None:
    from harness.records.claims import ClaimsParseError
    from harness.report import write_report

    _check_inputs(claims, results_dir, "a report")
    try:
        with _record_warnings():
            written = write_report(claims, results_dir, out_dir, include_attach=include_attach, allow_dirty=allow_dirty)
    except (ClaimsParseError, ValueError) as exc:
        _fail(str(exc).splitlines()[0])
    except OSError as exc:
        _fail(f"cannot write the report into {out_dir}: {exc.strerror or exc}")
    for path in written:
        _progress(f"wrote {path}")


@app.command("site")
def site_command(
    claims: Path = typer.Option(default_report_dir() / "claims.json", help="claimed table (JSON)"),
    results_dir: Path = typer.Option(default_results_dir(), help="result records"),
    out_dir: Path = typer.Option(default_site_dir(), help="output folder (replaced whole)"),
    include_attach: bool = typer.Option(False, help="count attach-mode records in the table"),
    allow_dirty: bool = typer.Option(False, help="count records made from a dirty harness tree"),
) -> None:
    """Write the evidence site: the table with switchable contexts, a page per cell, histories, plots (static)."""
    from harness.records.claims import ClaimsParseError
    from harness.site import SiteError, build_site

    _check_inputs(claims, results_dir, "the site")
    try:
        with _record_warnings():
            pages = build_site(claims, results_dir, out_dir, include_attach=include_attach, allow_dirty=allow_dirty)
    except (SiteError, ClaimsParseError, ValueError) as exc:
        _fail(str(exc).splitlines()[0])
    except OSError as exc:
        _fail(f"cannot write the site into {out_dir}: {exc.strerror or exc}")
    _progress(f"wrote {len(pages)} pages into {out_dir}; open {(out_dir / 'index.html').resolve().as_uri()}")


@app.command("merge")
def merge_command(
    sources: list[Path] = typer.Argument(..., help="uploaded results folders (CI artifacts)"),
    results_dir: Path = typer.Option(default_results_dir(), help="results folder to merge into"),
) -> None:
    """Merge uploaded result folders into the results folder; refuses to overwrite a record."""
    from harness.records.merge import MergeError, merge

    try:
        written = merge(sources, results_dir)
    except MergeError as exc:
        _fail(str(exc))
    except OSError as exc:
        _fail(f"cannot merge into {results_dir}: {exc.filename or ''} {exc.strerror or exc}".replace("  ", " "))
    _progress(f"merged {len(written)} new file(s) into {results_dir}")


@app.command("claims-import")
def claims_import(
    markdown: Path = typer.Argument(..., help="markdown comparison table"),
    source: str = typer.Option(..., help="where the table comes from (URL)"),
    out_dir: Path = typer.Option(default_report_dir(), help="output folder"),
    current: bool = typer.Option(
        False, help="today's claims (claims-current.md), shown beside the seed's, instead of the seed table"
    ),
) -> None:
    """Import a markdown comparison table: the seed claims, or with --current today's claims."""
    from harness.records.claims import ClaimsParseError, import_claims

    if not markdown.is_file():
        _fail(f"table not found: {markdown}" if not markdown.exists() else f"not a file: {markdown}")
    try:
        import_claims(markdown, source, out_dir, kind="current" if current else "seed")
    except ClaimsParseError as exc:
        _fail(f"malformed table {markdown}: {exc}")
    except UnicodeDecodeError:
        _fail(f"{markdown} is not UTF-8 text (a markdown table)")
    except OSError as exc:
        _fail(f"cannot import {markdown} into {out_dir}: {exc.strerror or exc}")
    _progress(f"claims imported into {out_dir}")


@app.command()
def schema(out: Path = typer.Option(default_results_dir() / "record.schema.json", help="output file")) -> None:
    """Write the JSON Schema of a result record."""
    if not out.parent.is_dir():
        _fail(f"cannot write {out}: its folder {out.parent} does not exist")
    try:
        write_atomic(out, (json.dumps(record_json_schema(), indent=2) + "\n").encode())
    except OSError as exc:
        _fail(f"cannot write {out}: {exc.strerror or exc}")
    _progress(f"wrote {out}")


@app.command()
def engines(as_json: bool = typer.Option(False, "--json", help="print everything, with the reasons, as JSON")) -> None:
    """List the engine adapters: container specs, the probes each can express, what this host can run."""
    from harness.cli.capabilities import engine_table, render_table

    table = engine_table()
    typer.echo(json.dumps(table, indent=2) if as_json else render_table(table))


app.add_typer(bench_app, name="bench")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Say what this host can run: Docker, NVIDIA runtime, GPUs, Apple Metal, disk, and why each engine cannot
    (works without the Docker SDK: it says so and reports the rest)."""
    from harness.cli.doctor import diagnose, render

    report = diagnose()
    typer.echo(report.model_dump_json(indent=2) if as_json else render(report))


@app.command()
def dockerd() -> None:
    """Start infercheck's private Docker daemon for --launcher docker (root; installs docker.io if missing)."""
    try:
        from harness.docker.daemon import DockerUnavailable, start_private_daemon
    except ImportError as exc:
        _fail(f"the Docker SDK is missing ({exc.name}): pip install -e '.[docker]'")
    try:
        pid = start_private_daemon(_progress)
    except DockerUnavailable as exc:
        _fail(str(exc))
    _progress(f"dockerd (pid {pid}) answers; stop it with `kill {pid}`")


def main() -> None:
    """Entry point that keeps tracebacks for real bugs only."""
    app()


if __name__ == "__main__":
    main()
