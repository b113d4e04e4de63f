"""Tensor and pipeline parallelism: the engine starts split over devices and still matches the reference."""

from __future__ import annotations

import pytest

from probes.test_model_families import check_matches_reference

SPLIT = 2


@pytest.mark.multi_gpu
@pytest.mark.gpu
@pytest.mark.parametrize("kind", [
    pytest.param("tensor", id="tensor", marks=[pytest.mark.launch(tensor_parallel=SPLIT),
                                              pytest.mark.feature("tensor_parallel")]),
    pytest.param("pipeline", id="pipeline", marks=[pytest.mark.launch(pipeline_parallel=SPLIT),
                                                  pytest.mark.feature("pipeline_parallel")]),
])
def test_parallel(probe, kind):
    session = probe.engine()
    probe.record(check_matches_reference(session, session.model.references))
