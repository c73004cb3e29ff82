"""Decoding shared by the model backends, free of torch: a context's segment, token by token.

A backend (transformers, numpy) supplies the forward pass and the cache; this module
decides what each generated token means for the segment (EOS, the end of a ``Call:``
line, the budget), guesses tokens by looking the context up (copy-aware speculation),
and accepts the guesses the model agrees with. Both backends therefore end segments,
stream text and speculate in exactly the same way.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from retune_tui.engine.generator import CALL, CONTEXT, EOS, LENGTH, Delta
from retune_tui.tasks.protocol import call_stop


@dataclass(frozen=True)
class Sampling:
    """Greedy unless ``temperature`` > 0; then temperature / top-p sampling with ``seed``."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.temperature < math.inf:  # nan too; inf would sample uniformly
            raise ValueError(f"temperature must be a number >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Counters:
    """What the backend did, for tests and benchmarks."""

    forwards: int = 0
    fed_tokens: int = 0  # tokens encoded (prompts, returns, re-encodes, decoded tokens)
    generated_tokens: int = 0
    rebuilds: int = 0


@dataclass
class Context:
    """One open context: its text and where its current segment stands."""

    text: str  # the whole context: prompt, accepted segments, returned values
    ids: list[int] = field(default_factory=list)  # tokens whose keys/values are cached
    pending: list[int] = field(default_factory=list)  # tokens to feed next
    generated: list[int] = field(default_factory=list)  # tokens of the current segment
    segment: str = ""  # decoded text of the current segment
    budget: int = 0


def max_positions(config: Any) -> int | None:
    """How many positions the model can attend over (its sliding window, if smaller); ``config``
    is a transformers config or the dict of its config.json."""
    get = config.get if isinstance(config, dict) else lambda name, default=None: getattr(config, name, default)
    limit = get("max_position_embeddings", None) or get("n_positions", None)
    window = get("sliding_window", None)
    layer_types = get("layer_types", None) or []
    sliding = get("use_sliding_window", True) or "sliding_attention" in layer_types
    if window and sliding:
        # The batch rebuilds caches as full layers, exact only while a context fits the window.
        limit = min(limit, window) if limit else window
    return limit


def lookup(tokens: list[int], count: int, longest: int = 3) -> list[int]:
    """The ``count`` tokens that followed the latest earlier occurrence of the context's last
    n tokens (n = ``longest`` down to 1), or nothing."""
    for n in range(longest, 0, -1):
        if len(tokens) <= n:
            continue
        tail = tokens[-n:]
        for start in range(len(tokens) - n - 1, -1, -1):
            if tokens[start : start + n] == tail:
                return tokens[start + n : start + n + count]
    return []


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def eos_ids_of(eos: int | None, generation_eos: int | list[int] | None) -> set[int]:
    """The tokens that end a segment: the tokenizer's EOS and the generation config's."""
    extra = generation_eos if isinstance(generation_eos, list) else [generation_eos]
    ids = {i for i in [eos, *extra] if i is not None}
    if not ids:
        raise ValueError("the tokenizer has no EOS token; segments could never end")
    return ids


class TokenDecoder(ABC):
    """What a model backend shares: contexts, segment ends, speculation.

    Subclasses give ``encode``/``decode`` and run the model; they call ``prepare_extend``,
    ``too_long``, ``drafts`` and ``take`` around their forward passes.
    """

    name: str
    sampling: Sampling
    speculate: int
    speculate_max_batch: int
    eos_ids: set[int]
    max_positions: int | None
    counters: Counters

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """The tokens of ``text``, as the model's tokenizer gives them (special tokens added)."""

    @abstractmethod
    def decode(self, ids: list[int]) -> str:
        """The text of ``ids``, special tokens kept."""

    def prepare_extend(self, ctx: Context, text: str, max_new_tokens: int) -> int:
        """Append prompt text to ``ctx`` and begin its next segment; the number of cached tokens
        that still stand (the text may tokenize differently than it was generated)."""
        ctx.text += text
        full = self.encode(ctx.text)
        keep = common_prefix(ctx.ids, full)
        ctx.ids = ctx.ids[:keep]
        ctx.pending = full[keep:]
        ctx.generated, ctx.segment, ctx.budget = [], "", max_new_tokens
        return keep

    def too_long(self, contexts: dict[Hashable, Context]) -> dict[Hashable, Delta]:
        """The contexts that would outgrow the model's window: their segments end here."""
        if not self.max_positions:
            return {}
        return {key: Delta("", 0, done=True, reason=CONTEXT) for key, ctx in contexts.items()
                if len(ctx.ids) + len(ctx.pending) > self.max_positions}

    def drafts(self, contexts: Sequence[Context]) -> list[list[int]]:
        """Tokens guessed by looking the context up (copy-aware speculation; exact under greedy)."""
        if not self.speculate or not self.sampling.greedy or len(contexts) > self.speculate_max_batch:
            return [[] for _ in contexts]
        drafts = []
        for ctx in contexts:
            room = ctx.budget - len(ctx.generated) - 1
            if self.max_positions:
                room = min(room, self.max_positions - len(ctx.ids) - len(ctx.pending))
            if len(ctx.pending) != 1 or room <= 0:
                drafts.append([])
            else:
                drafts.append(lookup(ctx.ids + ctx.pending, min(self.speculate, room)))
        return drafts

    def take(self, ctx: Context, picks: list[int], draft: list[int]) -> tuple[Delta, int]:
        """Accept the context's next token, and with it every draft token the model agrees with;
        the delta, and how many of the fed draft tokens were rejected (the caller drops them
        from its cache; they are already gone from ``ctx.ids``).

        ``picks[j]`` is the model's choice after the context's last pending token (j = 0) and
        after each of its drafts (j = 1, 2, …). Draft tokens were fed after the pending ones;
        each one the model would have chosen itself is already in the cache, so the next
        choice can be read right away. The first disagreement is the next token.
        """
        text, tokens, j = "", 0, 0
        while True:
            token = picks[j]
            delta = self._accept(ctx, token)
            text, tokens = text + delta.text, tokens + 1
            verified = j < len(draft) and token == draft[j]
            if delta.done or not verified:
                break
            j += 1
        rejected = len(draft) - j - (1 if delta.done and verified else 0)
        if rejected > 0:
            del ctx.ids[len(ctx.ids) - rejected :]
        ctx.pending = [] if delta.done else [token]
        return Delta(text, tokens, delta.done, delta.reason), max(rejected, 0)

    def _accept(self, ctx: Context, token: int) -> Delta:
        """Take one generated token: extend the segment and decide whether it ended."""
        self.counters.generated_tokens += 1
        if token in self.eos_ids:
            return Delta("", 1, done=True, reason=EOS)
        ctx.generated.append(token)
        text = self.decode(ctx.generated)
        stop = call_stop(text)
        if stop is not None:
            text = text[:stop]  # a token may carry characters past the call's newline
        else:
            text = text.rstrip("\ufffd")  # half a character (byte-level BPE): wait for the rest
        delta = text[len(ctx.segment):] if text.startswith(ctx.segment) else ""
        ctx.segment += delta
        ctx.text += delta
        if stop is not None:
            return Delta(delta, 1, done=True, reason=CALL)
        if len(ctx.generated) >= ctx.budget:
            return Delta(delta, 1, done=True, reason=LENGTH)
        return Delta(delta, 1)
