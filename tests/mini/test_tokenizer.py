from __future__ import annotations

from pathlib import Path

from transformers import PreTrainedTokenizerFast

from easel.mini.tokenizer import MAX_LENGTH, decode, default_tokenizer, encode, normalize_prompt


def test_normalize_keeps_only_text_to_draw_in_capitals() -> None:
    assert normalize_prompt("A Red Circle") == "a red circle"
    assert normalize_prompt("a sign that says “moon”") == 'a sign that says " MOON "'
    assert normalize_prompt("a sign that says STOP") == "a sign that says STOP"


def test_round_trip_and_save_load(tmp_path: Path) -> None:
    tok = default_tokenizer()
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
    tok = default_tokenizer()
    ids, _ = encode(tok, ["a zebra"])
    assert tok.unk_token_id in ids[0].tolist()
