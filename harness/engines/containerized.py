"""Shared base of the adapters for engines that run only in their Docker images on NVIDIA GPU hosts.

TGI, TensorRT-LLM, LightLLM, DeepSpeed-MII (FastGen), ExLlamaV2 (through TabbyAPI) and SGLang are not
installed on infercheck's own machines: `infercheck run --engine E --launcher docker` runs them from
`containers/<spec>/spec.yaml` (the Docker launcher swaps the command's executable for the image's
entrypoint and maps model paths into the container). Each adapter module cites the documentation
and source it follows; tests/test_gpu_adapters.py checks the flags and fields against them, and
tests/test_contracts.py against the engines' own argument parsers and request models. The adapter
owns the command and the request bodies; the container spec owns the image, port, health route,
environment and version read (one source each: `spec()` below).
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import ClassVar

import httpx

from harness.docker.specs import ContainerSpec, spec_named
from harness.engines.base import EngineAdapter, LaunchSpec, ResolvedModels
from harness.host.provenance import gpu_names
from harness.launch.base import RunningEngine
from harness.outcomes import NotMeasurable, Unsupported
from harness.records.results import EngineIdentity

# A launch need the engine cannot meet: the exception to raise (Unsupported: documented absence,
# NotMeasurable: the probe does not apply) and the documentation that says so.
Limit = tuple[type[Exception], str]


def docker_problem() -> str | None:
    """Why no Docker daemon can be used from here (no Docker SDK, no daemon), or None."""
    try:
        from harness.docker.daemon import DockerUnavailable, connect
    except ImportError:
        return "the Docker SDK is not installed (pip install -e '.[docker]')"
    try:
        connect()
    except DockerUnavailable as exc:
        return str(exc)
    return None


def docker_gpu_problem() -> str | None:
    """Why this host cannot run GPU containers (no GPU, no Docker), or None."""
    if not gpu_names():
        return "this host has no NVIDIA GPU (nvidia-smi lists none)"
    return docker_problem()


def launch_needs(spec: LaunchSpec, fmt: str) -> list[str]:
    """The names of what `spec` asks beyond a plain single-GPU launch (keys of `ContainerEngineAdapter.limits`)."""
    needs = [fmt]
    if spec.draft_model:
        needs.append("draft_model")
    if spec.tensor_parallel > 1:
        needs.append("tensor_parallel")
    if spec.pipeline_parallel > 1:
        needs.append("pipeline_parallel")
    return needs


class ContainerEngineAdapter(EngineAdapter):
    """An engine served from its container image on NVIDIA GPUs; OpenAI-compatible unless overridden."""

    native_format: ClassVar[str] = "hf"
    startup_timeout_s: ClassVar[float] = 900.0  # image start, weight loading, CUDA graph capture
    container_spec: ClassVar[str]  # folder under containers/
    native_command: ClassVar[str | None]  # executable on PATH or Python module for a native install
    loads_formats: ClassVar[tuple[str, ...]]  # model formats the adapter launches
    limits: ClassVar[dict[str, Limit]] = {}  # launch need -> why the engine cannot meet it
    model_id_from_server: ClassVar[bool] = False  # the served model id is only known from /v1/models
    build_notes: ClassVar[dict[str, str]] = {}  # what every record should say about how the engine ran
    kv_budget_flag: ClassVar[str | None] = None  # the option that sizes the KV cache in tokens, if any

    def __init__(self) -> None:
        self._served_id: str | None = None

    @classmethod
    def spec(cls) -> ContainerSpec:
        """The container spec this engine runs from: its health route and version read hold for native runs too."""
        return spec_named(cls.container_spec)

    @property
    def health_path(self) -> str:  # type: ignore[override]
        return self.spec().health

    # -- launching -----------------------------------------------------------------
    def native_available(self) -> bool:
        """Whether the engine is installed on this host itself (not only in its image)."""
        command = self.native_command
        if command is None:
            return False
        if "." in command:
            return importlib.util.find_spec(command.split(".")[0]) is not None
        return shutil.which(command) is not None

    def prepare(self) -> None:
        """Native runs need the engine installed here and a GPU; otherwise say how to run it in Docker."""
        if self.native_available() and gpu_names():
            return
        problem = docker_gpu_problem()
        where = "this host has a GPU and Docker" if problem is None else f"not on this host: {problem}"
        raise FileNotFoundError(
            f"{self.name} is not installed on this host; it runs in its image on an NVIDIA GPU host: "
            f"`infercheck run --engine {self.name} --launcher docker` (containers/{self.container_spec}/spec.yaml; "
            f"{where})"
        )

    def check_limits(self, spec: LaunchSpec) -> None:
        """Raise the documented limit (`limits`) that `spec` runs into, if any."""
        for need in launch_needs(spec, spec.model_format or self.native_format):
            if need in self.limits:
                kind, reason = self.limits[need]
                raise kind(reason)

    def check_launchable(self, spec: LaunchSpec, devices: int) -> None:
        fmt = spec.model_format or self.native_format
        self.check_limits(spec)
        if devices == 0:
            raise NotMeasurable("needs an NVIDIA GPU; this host has 0")
        split = spec.tensor_parallel * spec.pipeline_parallel
        if split > devices:
            raise NotMeasurable(f"needs {split} GPUs to split the model; this host has {devices}")
        if fmt not in self.loads_formats:
            raise NotMeasurable(
                f"the {self.name} adapter probes {', '.join(self.loads_formats)} checkpoints, not {fmt}"
            )
        if not spec.continuous_batching or spec.api_prefix or spec.flash_attention is False:
            raise NotMeasurable(f"{self.name} has no switch for this configuration ({spec.key()})")
        if spec.kv_cache_tokens is not None and self.kv_budget_flag is None:
            raise NotMeasurable(f"the {self.name} adapter has no option that sizes the KV cache in tokens")

    def identity(self, running: RunningEngine) -> EngineIdentity:
        version = "unknown: no version endpoint (the container spec reads it inside the image)"
        probe = self.spec().version.http
        if probe is not None:
            answer = httpx.get(running.base_url + probe.path, timeout=10).json()
            version = str(answer.get(probe.field, "unknown"))
        if self.model_id_from_server:
            models = httpx.get(running.base_url + "/v1/models", timeout=10).json()
            self._served_id = str(models["data"][0]["id"])
        return EngineIdentity(name=self.name, version=version, build=dict(self.build_notes))

    def served_model_name(self, models: ResolvedModels) -> str:
        return self._served_id or models.model.name

    # -- helpers for the adapters ---------------------------------------------------------
    def no_draft_statistics(self) -> NotMeasurable:
        """The answer when the engine's API reports no draft-token counts."""
        return NotMeasurable(f"{self.name} reports no accepted draft-token counts in its API or metrics")


def unsupported(reason: str) -> Limit:
    """A documented absence: the probe records ❌ with `reason` as its evidence."""
    return (Unsupported, reason)


def not_probed(reason: str) -> Limit:
    """A need the probe does not apply to (the engine does it another way): recorded as not measured."""
    return (NotMeasurable, reason)
