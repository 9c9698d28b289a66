"""easel-mini's vocabulary: a word-level tokenizer over every token of the scene generator's
captions (plus A-Z and punctuation), the tokenizer that ships beside the weights
(src/easel/mini/weights/tokenizer, read by easel.mini.tokenizer.shipped_tokenizer)."""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from easel.mini.tokenizer import MAX_LENGTH, normalize_prompt
from examples.mini import data

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
PUNCTUATION = ('"', ",", ".", "'", "!", "?", "-", ":", ";")


def _caption_tokens(text: str) -> list[str]:
    toks: list[str] = []
    for tok in normalize_prompt(text).split():
        toks.extend(list(tok) if tok.isupper() else [tok])
    return toks


def build_tokenizer(captions: Iterable[str], extra_words: Sequence[str] = ()) -> Any:
    """A word-level tokenizer whose vocabulary is every token in `captions` (plus A-Z)."""
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab: dict[str, int] = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    words: set[str] = set(extra_words) | set(string.ascii_uppercase) | set(PUNCTUATION)
    for caption in captions:
        words.update(_caption_tokens(caption))
    for w in sorted(words):
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Punctuation(),
        pre_tokenizers.Split(Regex("[A-Z]"), behavior="isolated"),
    ])
    # A [BOS] even for the empty prompt: the unconditional branch of classifier-free guidance
    # must still attend to something.
    tok.post_processor = processors.TemplateProcessing(
        single="[BOS] $A [EOS]",
        special_tokens=[("[BOS]", vocab["[BOS]"]), ("[EOS]", vocab["[EOS]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        bos_token="[BOS]",
        eos_token="[EOS]",
        model_max_length=MAX_LENGTH,
        padding_side="right",
    )


@lru_cache(maxsize=1)
def _default_corpus() -> tuple[str, ...]:
    return tuple(data.caption_corpus(4000, seed=0)) + tuple(data.vocabulary_words())


def default_tokenizer() -> Any:
    """The tokenizer built from the standard caption corpus (deterministic)."""
    return build_tokenizer(_default_corpus())


