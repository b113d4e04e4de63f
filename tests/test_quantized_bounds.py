"""The quantized probes' pass thresholds come from binomial bounds, not from the last observed values."""

from __future__ import annotations

import pytest

from harness.models import find_artifact
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


@pytest.mark.parametrize("fmt", ["q8_0", "q4_k_m", "awq", "gptq"])
def test_split_prompts_decode_the_file_the_references_were_made_from(artifacts, fmt: str) -> None:
    """The weights the split prompts are chosen with, decoded from the file here, are those the synthesis decoded
    (its references reproduce), and every split is one: the two sides' texts differ, neither a prefix of the
    other, past both gaps."""
    import torch

    from harness.models.constrained import load_reference
    from harness.models.format_prompts import decoded_model, telling_prompts

    artifact = find_artifact(artifacts, "llama", fmt)
    hf_dir = find_artifact(artifacts, "llama", "hf").path
    model = decoded_model(hf_dir, artifact.path, fmt, artifact.sha256)
    for case in artifact.encoded_references[:2]:
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([case.prompt_ids + case.greedy_ids[:-1]])).logits[0]
        assert logits[-len(case.greedy_ids) :].argmax(-1).tolist() == case.greedy_ids
    reference, tokenizer = load_reference(hf_dir)
    splits, examined = telling_prompts(model, reference, tokenizer, 1, "test", 3, BOUNDS[fmt].gaps, 12000)
    assert len(splits) == 3 and examined <= 12000
    for split in splits:
        assert not split.quantized_text.startswith(split.float_text)
        assert not split.float_text.startswith(split.quantized_text)
        assert split.quantized_gap >= BOUNDS[fmt].gaps[0] and split.float_gap >= BOUNDS[fmt].gaps[1]
