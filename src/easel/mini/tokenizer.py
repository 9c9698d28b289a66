"""The caption tokenizer: whole words for the scene vocabulary, single letters for drawn text.

Words to be written in the picture are spelled letter by letter, so the text encoder sees the
letters it has to draw (and can meet a word it never saw as a whole). The tokenizer is a
`tokenizers` WordLevel model wrapped in transformers' fast tokenizer, so it saves and loads with
`save_pretrained`/`from_pretrained` like any diffusers pipeline component.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import torch

MAX_LENGTH = 32
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[BOS]", "[EOS]")
PUNCTUATION = ('"', ",", ".", "'", "!", "?", "-", ":", ";")

_QUOTES = str.maketrans({"“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "'": '"', "’": '"'})
_TOKEN = re.compile(r'[A-Za-z]+|[^\sA-Za-z]')


def normalize_prompt(text: str) -> str:
    """Lower-case a prompt except the text it asks to draw.

    Text to draw is what stands in quotes, or a shouted word of two or more capitals
    (`a sign that says STOP`); everything else is vocabulary and is lower-cased, so that
    "A red circle" and "a red circle" mean the same thing.
    """
    out: list[str] = []
    quoted = False
    for tok in _TOKEN.findall(text.translate(_QUOTES)):
        if tok == '"':
            quoted = not quoted
            out.append(tok)
        elif tok.isalpha() and (quoted or (len(tok) >= 2 and tok.isupper())):
            out.append(tok.upper())
        else:
            out.append(tok.lower())
    return " ".join(out)


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
    from easel.mini import data

    return tuple(data.caption_corpus(4000, seed=0)) + tuple(data.vocabulary_words())


def default_tokenizer() -> Any:
    """The tokenizer built from the standard caption corpus (deterministic)."""
    return build_tokenizer(_default_corpus())


def encode(tokenizer: Any, prompts: Sequence[str], device: torch.device | str = "cpu") -> tuple[
    torch.Tensor, torch.Tensor
]:
    """Token ids and attention mask, (B, MAX_LENGTH) each, for normalized prompts."""
    batch = tokenizer(
        [normalize_prompt(p) for p in prompts],
        padding="max_length",
        truncation=True,
        max_length=MAX_LENGTH,
        return_tensors="pt",
    )
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def decode(tokenizer: Any, ids: torch.Tensor) -> str:
    return str(tokenizer.decode(ids.tolist(), skip_special_tokens=True))
