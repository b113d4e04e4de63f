"""Attention kernels: FlashAttention and PagedAttention, from the engine's own reports."""

from __future__ import annotations

import pytest

from harness.engines.base import NotMeasurable
from harness.results import Evidence, Status, Verdict
from harness.session import EngineSession

_ENABLED = {"enabled", "on", "true", "1", "yes"}


def _evidence(session: EngineSession) -> dict:
    if session.running.launcher == "attach":
        raise NotMeasurable("attach mode: the engine's startup report is not visible to the harness")
    report = session.adapter.attention_evidence(session.running)
    if not report:
        raise NotMeasurable(f"the {session.adapter.name} adapter reads no attention report from the engine")
    return report


def check_flash_attention(session: EngineSession) -> Verdict:
    """Pass when the engine itself reports its flash-attention path in use."""
    report = _evidence(session)
    state = report.get("flash_attention")
    evidence = Evidence(numbers={"flash_attention": state}, engine_log=report.get("log", []))
    if state is None:
        return Verdict(status=Status.NOT_MEASURED, reason="engine did not report its attention kernel",
                       evidence=evidence)
    if str(state).lower() in _ENABLED:
        note = f" ({report['note']})" if report.get("note") else ""
        return Verdict(status=Status.PASS, reason=f"engine reports flash attention {state}{note}", evidence=evidence)
    return Verdict(status=Status.FAIL, reason=f"engine reports flash attention {state}", evidence=evidence)


def check_paged_attention(session: EngineSession) -> Verdict:
    """Pass when the engine reports a block-paged KV cache; fail when it reports another layout."""
    report = _evidence(session)
    paged = report.get("paged_kv_cache")
    evidence = Evidence(numbers={k: v for k, v in report.items() if k != "log"}, engine_log=report.get("log", []))
    if paged is None:
        return Verdict(status=Status.NOT_MEASURED, reason="engine did not report its KV-cache layout",
                       evidence=evidence)
    if paged:
        return Verdict(status=Status.PASS, reason=f"engine reports a paged KV cache ({report.get('kv_layout')})",
                       evidence=evidence)
    return Verdict(status=Status.FAIL, reason=f"engine reports a non-paged KV cache ({report.get('kv_layout')})",
                   evidence=evidence)


@pytest.mark.cpu
@pytest.mark.feature("flash_attention")
@pytest.mark.launch(flash_attention=True)
def test_flash_attention(probe):
    probe.record(check_flash_attention(probe.engine()))


@pytest.mark.cpu
@pytest.mark.feature("paged_attention")
def test_paged_attention(probe):
    probe.record(check_paged_attention(probe.engine()))
