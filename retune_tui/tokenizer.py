"""A character-level tokenizer built locally (no hub): one token per printable character.

Used by the bundled model and by tests' tiny models. Building it needs only the
``tokenizers`` and ``transformers`` packages, imported inside the function.
"""

from __future__ import annotations

import string
from typing import Any

SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARACTERS = ["\n"] + [chr(c) for c in range(32, 127)]


def char_tokenizer() -> Any:
    """A ``PreTrainedTokenizerFast`` with one token per character of printable ASCII and
    newline, ``<s>`` prepended to every encoded text, and ``</s>`` as EOS."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARACTERS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Every character is its own piece (a Split on "." would turn newlines into <unk>).
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()  # without it, decoding puts spaces between characters
    bos = vocab["<s>"]
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        clean_up_tokenization_spaces=False,
    )


assert set(string.digits) <= set(CHARACTERS)
