"""A deterministic English-like training corpus for the synthetic tokenizer."""

from __future__ import annotations

import random

WORDS = (
    "the a an and or but if then when while of to in on at by for with from into over under "
    "after before between about above below near far up down out off again still very more most "
    "is are was were be been has have had do does did will would can could should may might must "
    "i you he she it we they me him her us them my your his its our their this that these those "
    "cat dog bird fish horse cow mouse fox bear wolf tree river stone hill road house door window "
    "table chair book page letter word name number list item key value field record file line "
    "city town market garden field forest lake sea sky sun moon star rain snow wind fire water "
    "red blue green yellow black white small large old new quick slow bright dark warm cold "
    "happy quiet loud early late first last next other same good bad long short high low open "
    "run walk see look find give take make go come say tell ask think know want need use keep "
    "read write send bring hold turn start stop play work live move show try call help learn "
    "one two three four five six seven eight nine ten hundred day night morning evening week year "
    "time story game song question answer reason problem idea plan part place thing way people "
    "man woman child friend teacher doctor farmer king queen ship train car boat bridge castle "
    "yes no true false null none all some many few each every any both either neither"
).split()
JSON_KEYS = ("name", "id", "age", "city", "color", "items", "count", "value", "ok", "tags", "type", "score")
PUNCTUATION = (".", ",", "!", "?", ";", ":")


def _sentence(rng: random.Random) -> str:
    """One sentence of corpus words, sometimes with a number or punctuation inside."""
    words = [rng.choice(WORDS) for _ in range(rng.randint(4, 14))]
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 9999)))
    if rng.random() < 0.3:
        words[rng.randrange(len(words))] += ","
    text = " ".join(words)
    if rng.random() < 0.3:
        text = text.capitalize()
    return text + rng.choice(PUNCTUATION)


def _json_value(rng: random.Random, depth: int) -> str:
    """A small JSON value: string, number, literal, list or object."""
    kind = rng.randrange(6 if depth < 2 else 4)
    if kind == 0:
        return f'"{rng.choice(WORDS)}"'
    if kind == 1:
        return str(rng.randint(-50, 5000)) if rng.random() < 0.8 else f"{rng.uniform(0, 100):.2f}"
    if kind == 2:
        return rng.choice(("true", "false", "null"))
    if kind == 3:
        return f'"{rng.choice(WORDS)} {rng.choice(WORDS)}"'
    if kind == 4:
        return "[" + ", ".join(_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))) + "]"
    return _json_object(rng, depth + 1)


def _json_object(rng: random.Random, depth: int = 0) -> str:
    """A JSON object with a few keys, compact or spaced."""
    keys = rng.sample(JSON_KEYS, rng.randint(1, 4))
    sep = ", " if rng.random() < 0.7 else ","
    colon = ": " if rng.random() < 0.7 else ":"
    return "{" + sep.join(f'"{k}"{colon}{_json_value(rng, depth)}' for k in keys) + "}"


def build_corpus(seed: int, n_lines: int) -> list[str]:
    """`n_lines` lines of prose and JSON, fully determined by `seed`."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_lines):
        if rng.random() < 0.25:
            lines.append(_json_object(rng))
        else:
            lines.append(" ".join(_sentence(rng) for _ in range(rng.randint(1, 3))))
    return lines


def prompt_candidates(seed: int, count: int) -> list[str]:
    """`count` short lowercase word sequences, fully determined by `seed`."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 8))) for _ in range(count)]
