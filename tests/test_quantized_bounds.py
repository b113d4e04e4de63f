"""The quantized probes' pass thresholds come from binomial bounds, not from the last observed values."""

from __future__ import annotations

import pytest

from harness.models.recipe import QUANT_PROMPTS
from probes.binomial import clopper_pearson_lower, min_agreeing, tail_below
from probes.test_quantized import ALPHA, BOUNDS, agreement_bound


def test_min_agreeing_is_the_largest_count_a_correct_engine_misses_at_most_alpha() -> None:
    needed = min_agreeing(16, 0.9, 0.01)
    assert needed == 11
    assert tail_below(16, 0.9, needed) <= 0.01 < tail_below(16, 0.9, needed + 1)


def test_clopper_pearson_lower_bound() -> None:
    assert clopper_pearson_lower(16, 0, 0.05) == 0.0
    assert clopper_pearson_lower(16, 16, 0.05) == pytest.approx(0.05 ** (1 / 16), abs=1e-6)
    assert clopper_pearson_lower(16, 12, 0.05) == pytest.approx(0.5157, abs=1e-3)  # Beta(0.05; 12, 5)


@pytest.mark.parametrize("fmt", sorted(BOUNDS))
def test_every_format_separates_correct_from_unrelated_weights_at_alpha(fmt: str) -> None:
    bound = agreement_bound(fmt, QUANT_PROMPTS)
    assert QUANT_PROMPTS >= 16
    assert bound["false_fail_max"] <= ALPHA and bound["false_pass_at_unrelated"] <= ALPHA
