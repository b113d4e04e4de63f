"""What the constrained probes share: the run seed their constraints are drawn from, the reference checkpoint and
the near-tie tolerance for teacher forcing (harness.models.constrained does the forcing)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from harness.models import find_artifact
from harness.outcomes import NotMeasurable
from harness.probing.session import EngineSession
from probes.reference import dtype_tolerance

SEED_ENV = "INFERCHECK_CONSTRAINT_SEED"  # set it to reproduce a recorded run's constraints


def run_seed() -> int:
    """The seed this probe draws its constraints from: fresh each run unless $INFERCHECK_CONSTRAINT_SEED says."""
    from harness.models.constrained import draw_seed

    value = os.environ.get(SEED_ENV)
    return int(value) if value else draw_seed()


def seeded(seed: int, label: str) -> random.Random:
    """The generator of one constraint of a run (the same seed and label give the same draws)."""
    return random.Random(f"{seed}:{label}")


def reference_dir(session: EngineSession) -> Path:
    """The float32 checkpoint of the served weights; not measurable without one (a model set's real checkpoint)."""
    if not session.model.references:
        raise NotMeasurable(
            f"{session.model.source} has no float32 reference to decode with (the synthesized models have one)"
        )
    return find_artifact(session.artifacts, session.model.name, "hf").path


def near_tie(session: EngineSession) -> tuple[float, dict[str, Any]]:
    """The logit gap under which the engine's token may differ from the reference's argmax (kernel rounding):
    the log-probability tolerance of the engine's compute dtype (a gap of two logits is one of log-probabilities)."""
    tolerance, derivation = dtype_tolerance(session)
    return tolerance.max_logprob_diff, derivation


def prompt_ids(hf_dir: Path, prompt: str) -> list[int]:
    """`prompt` as the engines tokenize a completion prompt of the synthesized models (no BOS)."""
    from harness.models.constrained import load_reference

    return list(load_reference(hf_dir)[1](prompt, add_special_tokens=False)["input_ids"])


def chat_prompt_ids(
    hf_dir: Path, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
) -> list[int]:
    """The chat prompt the engine builds from `messages` (and `tools`) with the model's chat template."""
    from harness.models.constrained import load_reference

    tokenizer = load_reference(hf_dir)[1]
    text = tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def word(rng: random.Random) -> str:
    """A fresh pronounceable lowercase word of 4 or 6 letters."""
    return "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(rng.randint(2, 3)))


def check_text(
    session: EngineSession, prompt: str, text: str, gbnf: str, finished: bool, tolerance: float
) -> dict[str, Any]:
    """Teacher forcing of a completion `text` of `prompt` under the GBNF language it was asked for (summary)."""
    from harness.models.constrained import Constraint, teacher_force_text

    hf_dir = reference_dir(session)
    forced = teacher_force_text(hf_dir, prompt_ids(hf_dir, prompt), text, Constraint("gbnf", gbnf), tolerance, finished)
    return forced.summary()
