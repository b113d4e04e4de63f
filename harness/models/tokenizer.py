"""Train the shared byte-level BPE tokenizer and save it in the plain transformers layout."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from harness.models import recipe
from harness.models.corpus import build_corpus


def train_tokenizer() -> Tokenizer:
    """GPT-2 style byte-level BPE over the recipe corpus: special tokens first, padded vocab last."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.BPE_VOCAB_SIZE,
        special_tokens=list(recipe.SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(build_corpus(recipe.CORPUS_SEED, recipe.CORPUS_LINES), trainer=trainer)
    padding = -tokenizer.get_vocab_size() % recipe.VOCAB_MULTIPLE
    tokenizer.add_special_tokens([f"<pad_{i}>" for i in range(padding)])
    return tokenizer


def save_tokenizer(tokenizer: Tokenizer, directory: Path) -> None:
    """Write tokenizer.json plus a config any transformers version (v4 or v5) loads the same way."""
    tokenizer.save(str(directory / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": recipe.BOS,
        "eos_token": recipe.EOS,
        "unk_token": recipe.UNK,
        "additional_special_tokens": list(recipe.CHAT_TOKENS),
        "add_bos_token": False,
        "add_eos_token": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": recipe.SHAPE["max_position_embeddings"],
        "chat_template": recipe.CHAT_TEMPLATE,
    }
    special_keys = ("bos_token", "eos_token", "unk_token", "additional_special_tokens")
    special = {key: config[key] for key in special_keys}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (directory / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
