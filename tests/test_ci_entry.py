"""The README's test command, .ci/run and `make test` are one command; the fast lane leaves engine tests out."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def readme_test_command() -> str:
    blocks = re.findall(r"```bash\n(.*?)\n```", (REPO / "README.md").read_text(), re.S)
    return next(block for block in blocks if "pytest tests" in block)


def test_ci_and_make_run_exactly_the_readme_test_command() -> None:
    command = readme_test_command()
    assert "ruff check ." in command and "ruff format --check ." in command and "mypy" in command
    assert command.index("mypy") < command.index("pytest tests")  # lint and types fail fast, before any build
    assert command in (REPO / ".ci" / "run").read_text().splitlines()
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n\t(.*)$", makefile, re.M)
    assert recipe and recipe.group(1).replace("$(BIN)", ".venv/bin").replace("$(VENV)", ".venv") == command


class FakeItem:
    def __init__(self, fixturenames: tuple[str, ...], marks: tuple[str, ...] = ()) -> None:
        self.fixturenames = fixturenames
        self.marks = list(marks)

    def get_closest_marker(self, name: str) -> object:
        return name if name in self.marks else None

    def add_marker(self, mark: pytest.MarkDecorator) -> None:
        self.marks.append(mark.name)


def test_the_fast_lane_leaves_out_every_engine_test() -> None:
    """A test is marked `engine` from any engine fixture in its closure, or its engine_integration mark."""
    from tests.conftest import ENGINE_FIXTURES, pytest_collection_modifyitems

    items = [FakeItem((fixture, "tmp_path")) for fixture in sorted(ENGINE_FIXTURES)]
    items += [FakeItem(("tmp_path",), ("engine_integration",)), FakeItem(("tmp_path", "monkeypatch"))]
    pytest_collection_modifyitems(None, items)  # type: ignore[arg-type]
    assert [item.marks.count("engine") for item in items] == [1] * (len(ENGINE_FIXTURES) + 1) + [0]
    assert {"llama_build", "artifacts", "start_engine", "vllm_pool", "docker_connection", "chromium"} <= ENGINE_FIXTURES
