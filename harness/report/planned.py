"""The contexts of older records, filled in from what the harness knows so that no published context reads
"unknown" (issue 23 item 3).

- A record written before any launch (Unsupported, NotMeasurable) without the launch it would have had (records
  before the harness wrote one): the adapter's default launch for the probe's format, its compute dtype there, the
  process launcher (docker for an image), the synthesized model; the host level is the record's own.
- A launched record without compute_dtype (before it was recorded): the `--dtype` its command line gave, else the
  adapter's compute dtype for the launch's format.
"""

from __future__ import annotations

from harness.engines import UnknownEngineError, get_adapter
from harness.engines.base import LaunchSpec
from harness.records.features import FEATURE_FORMATS, record_feature
from harness.records.results import MeasurementContext, ResultRecord


def record_context(record: ResultRecord) -> MeasurementContext:
    """The record's own context; for a record without a launch, the one its launch would have had."""
    context = record.context()
    if record.launch is not None:
        if record.launch.compute_dtype or record.launch.launcher == "attach":
            return context
        command = record.launch.command
        given = command[command.index("--dtype") + 1] if "--dtype" in command[:-1] else None
        fmt = record.launch.options.get("model_format")
        dtype = given or _planned_dtype(record, fmt if isinstance(fmt, str) else None)
        return context.model_copy(update={"compute_dtype": dtype}) if dtype else context
    update = {"launcher": "docker" if record.engine.image else "process"}
    if record.model is None:
        update["model_source"] = "synthesized"
    if dtype := _planned_dtype(record, None):
        update["compute_dtype"] = dtype
    return context.model_copy(update=update)


def _planned_dtype(record: ResultRecord, fmt: str | None) -> str | None:
    """The adapter's compute dtype for `fmt`, else for the probe's format (None for an image's engine: its build
    decides)."""
    if record.engine.image:
        return None
    try:
        adapter = get_adapter(record.engine.name)
    except UnknownEngineError:
        return None
    fmt = fmt or FEATURE_FORMATS.get(record_feature(record.feature, record.probe), adapter.native_format)
    return adapter.compute_dtype(LaunchSpec(model_format=fmt))
