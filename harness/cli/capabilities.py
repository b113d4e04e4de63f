"""What each engine adapter can express and what this host can run, found by asking the adapters.

A probe's feature is expressible when the adapter builds its request (or accepts its launch
configuration); `Unsupported` is a documented absence and `NotMeasurable` means the probe does not
apply to that engine as written. Nothing is started and no request is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from harness.docker.specs import SpecError, all_specs, select_spec
from harness.engines import adapter_classes
from harness.engines.base import EngineAdapter, GrammarSpec, LaunchSpec
from harness.engines.containerized import docker_problem
from harness.host.provenance import gpu_names
from harness.outcomes import NotMeasurable, Unsupported
from harness.records.features import row_for

_GRAMMAR = GrammarSpec(gbnf='root ::= "a"\n', lark='start: "a"\n')
_SCHEMA = {"type": "object"}
_MANY_DEVICES = 8  # capability, not this host: enough devices for every split
NAME_WIDTH = 16  # the longest column name (llama-cpp-python)

Check = Callable[[EngineAdapter], object]


def _launch(**fields: object) -> Check:
    return lambda adapter: adapter.check_launchable(LaunchSpec(**fields), _MANY_DEVICES)  # type: ignore[arg-type]


# feature id (harness.records.features) -> how a probe of that feature asks the adapter
CHECKS: dict[str, Check] = {
    "json_schema": lambda adapter: adapter.json_schema_request("m", "p", _SCHEMA, 8),
    "ebnf_grammar": lambda adapter: adapter.grammar_request("m", "p", _GRAMMAR, 8),
    "beam_search": lambda adapter: adapter.beam_search_request("m", "p", 3, 8),
    "speculative_decoding": _launch(draft_model="llama-draft"),
    "tensor_parallel": _launch(tensor_parallel=2),
    "pipeline_parallel": _launch(pipeline_parallel=2),
    "continuous_batching": lambda adapter: adapter.fixed_length_request("m", "p", 8, stream=True),
    "chunked_prefill": _launch(prefill_chunk_tokens=64),
    "flash_attention": _launch(flash_attention=True),
    "awq": _launch(model_format="awq"),
    "exl2": _launch(model_format="exl2"),
    "other_quants": _launch(model_format="q4_k_m"),
    "model_llama": lambda adapter: adapter.greedy_request("m", "p", 8, 5),
}


@dataclass(frozen=True)
class Capability:
    """Whether one feature's probe can be expressed: "yes", "no" (documented absence) or "n/p" (not probed)."""

    mark: str
    reason: str = ""


def expressible(adapter: EngineAdapter) -> dict[str, Capability]:
    """Feature id -> whether the adapter can express that probe."""
    found = {}
    for feature, check in CHECKS.items():
        row_for(feature)
        try:
            check(adapter)
            found[feature] = Capability("yes")
        except Unsupported as exc:
            found[feature] = Capability("no", str(exc))
        except NotMeasurable as exc:
            found[feature] = Capability("n/p", str(exc))
    return found


def container_specs(engine: str) -> list[str]:
    """The container specs written for `engine`."""
    return [spec.name for spec in all_specs() if spec.engine.lower() == engine.lower()]


def host_can_run(adapter: EngineAdapter, gpus: int, docker: str | None) -> list[str]:
    """How this host can run the engine: "process" and/or "docker:<spec>" (empty: it cannot).

    `docker` is why Docker cannot be used here (None: it can)."""
    ways = []
    try:
        adapter.prepare()
        ways.append("process")
    except FileNotFoundError:
        pass
    try:
        spec = select_spec(adapter.name, gpus)
    except SpecError:
        return ways
    if docker is None and (gpus or not spec.needs_gpu):
        ways.append(f"docker:{spec.name}")
    return ways


def host_facts() -> tuple[int, str | None]:
    """This host's NVIDIA GPU count and why Docker cannot be used (None: it can)."""
    return len(gpu_names()), docker_problem()


def engine_table() -> dict[str, Any]:
    """This host's facts and, per engine, its adapter, container specs, how it runs here and what it expresses."""
    gpus, docker = host_facts()
    rows = []
    for name, cls in sorted(adapter_classes().items(), key=lambda item: item[0].lower()):
        adapter = cls()
        rows.append(
            {
                "engine": name,
                "adapter": cls.__module__,
                "native_format": cls.native_format,
                "status": cls.status.state,
                "status_since": cls.status.since.isoformat() if cls.status.since else None,
                "status_source": cls.status.source,
                "status_checked": cls.status.checked.isoformat(),
                "container_specs": container_specs(name),
                "host_can_run": host_can_run(adapter, gpus, docker),
                "probes": {feature: asdict(found) for feature, found in expressible(adapter).items()},
            }
        )
    return {"gpus": gpus, "docker_problem": docker, "engines": rows}


def render_table(table: dict[str, Any]) -> str:
    """The engine table as plain text: one line per engine, then the probe marks."""
    lines = [f"this host: {table['gpus']} NVIDIA GPU(s); docker: {table['docker_problem'] or 'reachable'}"]
    for row in table["engines"]:
        specs = ", ".join(row["container_specs"]) or "-"
        lines.append(
            f"{row['engine']:<{NAME_WIDTH}} {row['adapter']:<32} specs: {specs:<24} "
            f"runs here: {', '.join(row['host_can_run']) or 'no'}"
        )
    lines += ["", f"project status (checked {table['engines'][0]['status_checked']}):"]
    for row in table["engines"]:
        since = f" since {row['status_since']}" if row["status_since"] else ""
        lines.append(f"{row['engine']:<{NAME_WIDTH}} {row['status'] + since:<24} {row['status_source']}")
    lines += [
        "",
        "probes each adapter can express (yes; no = documented absence; n/p = not probed; --json: reasons):",
        f"{'':<{NAME_WIDTH}} " + " ".join(f"{feature[:11]:>11}" for feature in CHECKS),
    ]
    lines += [
        f"{row['engine']:<{NAME_WIDTH}} " + " ".join(f"{row['probes'][feature]['mark']:>11}" for feature in CHECKS)
        for row in table["engines"]
    ]
    return "\n".join(lines)
