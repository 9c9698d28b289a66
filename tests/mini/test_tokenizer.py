from __future__ import annotations

import json
from pathlib import Path

from examples.mini.vocabulary import default_tokenizer
from transformers import PreTrainedTokenizerFast

from easel.mini.tokenizer import (
    MAX_LENGTH,
    decode,
    encode,
    normalize_prompt,
    shipped_tokenizer,
)


def test_normalize_keeps_only_text_to_draw_in_capitals() -> None:
    assert normalize_prompt("A Red Circle") == "a red circle"
    assert normalize_prompt("a sign that says “moon”") == 'a sign that says " MOON "'
    assert normalize_prompt("a sign that says STOP") == "a sign that says STOP"


def test_the_shipped_tokenizer_is_the_one_the_corpus_builds() -> None:
    """The file beside the weights (what serves, and what the random pipelines use) is the
    vocabulary examples/mini builds from the scene generator's captions, token for token."""
    shipped, built = shipped_tokenizer(), default_tokenizer()
    assert shipped.get_vocab() == built.get_vocab()

    def rules(tokenizer: PreTrainedTokenizerFast) -> dict[str, object]:
        # The padding and truncation of the last call are state, not the tokenizer's rules.
        saved = json.loads(tokenizer.backend_tokenizer.to_str())
        return {k: v for k, v in saved.items() if k not in ("padding", "truncation")}

    assert rules(shipped) == rules(built)


def test_round_trip_and_save_load(tmp_path: Path) -> None:
    tok = shipped_tokenizer()
    prompt = 'a big red star on the left, a sign that says "OPEN"'
    ids, mask = encode(tok, [prompt, ""])
    assert ids.shape == (2, MAX_LENGTH) and mask.shape == (2, MAX_LENGTH)
    assert tok.unk_token_id not in ids[0].tolist()
    assert decode(tok, ids[0]) == 'a big red star on the left , a sign that says " O P E N "'
    assert int(mask[1].sum()) == 2  # [BOS] [EOS]: the unconditional prompt still has tokens
    tok.save_pretrained(tmp_path)
    again = PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert encode(again, [prompt])[0].tolist() == ids[:1].tolist()


def test_unknown_words_map_to_unk() -> None:
    tok = shipped_tokenizer()
    ids, _ = encode(tok, ["a zebra"])
    assert tok.unk_token_id in ids[0].tolist()
