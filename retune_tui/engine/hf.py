"""The transformers backend: any causal LM, many contexts batched, caches kept across calls.

Every open context owns its key/value cache. Contexts that are generating sit in one
*live batch*: a ``DynamicCache`` of shape (B, heads, T, dim) with a 2-D attention mask
marking each row's real columns. A step feeds each row its pending tokens (one while
decoding; a prompt or a ``Return: …`` text when a context starts or resumes), right-
padded to the longest, so every query sees at least one real key (no all-masked rows,
no NaNs), and position ids count only a row's real tokens. A row whose segment ends
leaves the batch: its real columns are copied out (its *stash*) and the remaining
rows are compacted. A resumed parent enters again with its stash and encodes only the
tokens it has not seen, so the parent is never re-encoded.

Text, not tokens, is the truth: on resume the whole context is tokenized again and
compared with the cached tokens; only tokens past the first difference are (re-)encoded
(with a character tokenizer that is exactly the ``Return: …\\nAnswer: `` text). So the
engine sees what a loop that re-encodes the whole context sees, for any tokenizer.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

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


@dataclass
class _Context:
    text: str  # the whole context: prompt, accepted segments, returned values
    ids: list[int] = field(default_factory=list)  # tokens whose keys/values are cached
    stash: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer (1, H, len(ids), D), off-batch
    pending: list[int] = field(default_factory=list)  # tokens to feed next
    generated: list[int] = field(default_factory=list)  # tokens of the current segment
    segment: str = ""  # decoded text of the current segment
    budget: int = 0
    rng: torch.Generator | None = None  # its own draws when sampling: the same whatever else is in the batch


@dataclass
class Counters:
    """What the backend did, for tests and benchmarks."""

    forwards: int = 0
    fed_tokens: int = 0  # tokens encoded (prompts, returns, re-encodes, decoded tokens)
    generated_tokens: int = 0
    rebuilds: int = 0


def max_positions(config: Any) -> int | None:
    """How many positions the model can attend over (its sliding window, if smaller)."""
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None) or []
    sliding = getattr(config, "use_sliding_window", True) or "sliding_attention" in layer_types
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


class HFGenerator:
    """A Generator over a transformers causal LM (optionally with a peft adapter).

    Args:
        model: the model, already on its device and in its dtype.
        tokenizer: its tokenizer; its EOS ends a segment.
        name: shown in traces.
        sampling: greedy by default.
        speculate: under greedy decoding, guess up to this many tokens by finding the
            context's last few tokens earlier in it (the formats copy a lot) and check them
            all in one forward pass; outputs are exactly those of plain greedy decoding.
        speculate_max_batch: only when at most this many contexts generate at once (with
            more, the batch already keeps the hardware busy and guesses would cost compute).
    """

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "model", sampling: Sampling | None = None,
                 speculate: int = 8, speculate_max_batch: int = 8) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.sampling = sampling or Sampling()
        self.speculate = speculate
        self.speculate_max_batch = speculate_max_batch
        self.device = next(model.parameters()).device
        eos = tokenizer.eos_token_id
        extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.eos_ids = {eos} | set(extra if isinstance(extra, list) else [extra] if extra is not None else [])
        self.eos_ids.discard(None)
        if not self.eos_ids:
            raise ValueError("the tokenizer has no EOS token; segments could never end")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        self.max_positions = max_positions(model.config)
        self.counters = Counters()
        self._cache_kwarg = _cache_kwarg(model)
        self._contexts: dict[Hashable, _Context] = {}
        self._rows: list[Hashable] = []  # keys of the live batch, in row order
        self._cache: Any = None  # DynamicCache of the live batch
        self._mask: torch.Tensor | None = None  # (B, T) 1 = real column

    # --- the Generator protocol ---------------------------------------------------------

    def open(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        rng = None
        if self.sampling.temperature > 0:  # seeded by the run's seed and the context's key alone
            rng = torch.Generator(device="cpu").manual_seed(zlib.crc32(repr((self.sampling.seed, key)).encode()))
        self._contexts[key] = _Context(text, pending=self.encode(text), budget=max_new_tokens, rng=rng)

    def extend(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        if key in self._rows:
            self._leave([key])
        ctx = self._contexts[key]
        ctx.text += text
        full = self.encode(ctx.text)
        keep = common_prefix(ctx.ids, full)
        if keep < len(ctx.ids):  # the text tokenizes differently than it was generated: re-encode the rest
            ctx.ids = ctx.ids[:keep]
            if ctx.stash is not None:
                ctx.stash = [(k[:, :, :keep], v[:, :, :keep]) for k, v in ctx.stash]
        ctx.pending = full[keep:]
        ctx.generated, ctx.segment, ctx.budget = [], "", max_new_tokens

    def close(self, key: Hashable) -> None:
        if key in self._rows:
            self._leave([key], stash=False)
        self._contexts.pop(key, None)

    @torch.inference_mode()
    def step(self, keys: Sequence[Hashable]) -> dict[Hashable, Delta]:
        try:
            return self._step(keys)
        except BaseException:
            self._forget_batch()  # an error mid-step (out of memory…) leaves no half-built state
            raise

    def _step(self, keys: Sequence[Hashable]) -> dict[Hashable, Delta]:
        out: dict[Hashable, Delta] = {}
        if self.max_positions:  # contexts that would outgrow the model's window end here
            full = [k for k in keys if len(self._contexts[k].ids) + len(self._contexts[k].pending) > self.max_positions]
            for key in full:
                out[key] = Delta("", 0, done=True, reason=CONTEXT)
            keys = [k for k in keys if k not in out]
        wanted = set(keys)
        idle = [k for k in self._rows if k not in wanted]
        if idle:
            self._leave(idle)
        joining = [k for k in keys if k not in self._rows]
        if joining:
            self._join(joining)
        if not self._rows:
            return out
        contexts = [self._contexts[k] for k in self._rows]
        drafts = self._drafts(contexts)
        fed = [ctx.pending + draft for ctx, draft in zip(contexts, drafts)]
        # Only the columns whose next token is needed: each row's last pending token and its drafts.
        columns = sorted({c for tokens, draft in zip(fed, drafts)
                          for c in range(len(tokens) - len(draft) - 1, len(tokens))})
        logits, start = self._forward(contexts, fed, columns)  # (B, len(columns), vocab)
        where = {c: i for i, c in enumerate(columns)}
        needed = [[where[c] for c in range(len(tokens) - len(draft) - 1, len(tokens))]
                  for tokens, draft in zip(fed, drafts)]
        picks = self._sample(logits.float(), needed, contexts)
        finished = []
        for row, (key, ctx, draft) in enumerate(zip(self._rows, contexts, drafts)):
            out[key] = self._take(row, ctx, picks[row], len(fed[row]), draft, start)
            if out[key].done:
                finished.append(key)
        if finished:
            self._leave(finished)
        return out

    # --- text -----------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=True)["input_ids"]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _accept(self, ctx: _Context, token: int) -> Delta:
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

    def _take(self, row: int, ctx: _Context, picks: list[int], n_fed: int, draft: list[int], start: int) -> Delta:
        """Accept this row's next token, and with it every draft token the model agrees with.

        ``picks[j]`` is the model's choice after the row's last pending token (j = 0) and
        after each of its drafts (j = 1, 2, …). Draft tokens were fed
        after the pending ones; each one the model would have chosen itself is already in
        the cache, so the next choice can be read right away. The first disagreement is
        the row's next token; the drafts after it are masked out of the cache.
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
            self._mask[row, start + n_fed - rejected : start + n_fed] = 0
        ctx.pending = [] if delta.done else [token]
        return Delta(text, tokens, delta.done, delta.reason)

    def _drafts(self, contexts: list[_Context]) -> list[list[int]]:
        """Tokens guessed by looking the context up (copy-aware speculation; exact under greedy)."""
        if not self.speculate or self.sampling.temperature > 0 or len(contexts) > self.speculate_max_batch:
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

    # --- the live batch -------------------------------------------------------------------

    def _forward(self, contexts: list[_Context], fed: list[list[int]], columns: list[int]) -> tuple[torch.Tensor, int]:
        """Feed every row its tokens (right-padded); return the logits at ``columns`` of the
        fed block (B, len(columns), vocab) and where the block starts in the cache."""
        width = max(len(tokens) for tokens in fed)
        batch = len(contexts)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        for row, (ctx, tokens) in enumerate(zip(contexts, fed)):
            input_ids[row, : len(tokens)] = torch.tensor(tokens)
            new_mask[row, : len(tokens)] = 1
            positions[row] = torch.arange(len(ctx.ids), len(ctx.ids) + width)
        if self.max_positions:
            positions.clamp_(max=self.max_positions - 1)
        start = 0 if self._mask is None else self._mask.shape[1]
        mask = new_mask if self._mask is None else torch.cat([self._mask, new_mask], dim=1)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            logits_to_keep=torch.tensor(columns, device=self.device),
            **{self._cache_kwarg: self._cache},
        )
        self._cache = out[self._cache_kwarg]
        self._mask = mask
        self.counters.forwards += 1
        for ctx, tokens in zip(contexts, fed):
            self.counters.fed_tokens += len(tokens)
            ctx.ids += tokens
        return out.logits, start

    def _sample(self, logits: torch.Tensor, needed: list[list[int]], contexts: list[_Context]) -> list[list[int]]:
        """Each row's next tokens at the columns it needs (logits: (B, width, vocab)): greedy,
        or sampled with temperature / top-p from the row's own generator, drawing for those
        columns alone (so what a context writes does not depend on the other rows)."""
        if self.sampling.temperature == 0:
            best = logits.argmax(dim=-1).cpu().tolist()  # (B, width)
            return [[best[row][c] for c in columns] for row, columns in enumerate(needed)]
        probs = torch.softmax(logits / self.sampling.temperature, dim=-1).cpu()
        if self.sampling.top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > self.sampling.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return [[int(torch.multinomial(probs[row, c], 1, generator=ctx.rng)) for c in columns]
                for row, (columns, ctx) in enumerate(zip(needed, contexts))]

    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys, layer.values) for layer in self._cache.layers]

    def _forget_batch(self) -> None:
        """Drop the live batch; its contexts will be encoded again from their text."""
        for key in self._rows:
            ctx = self._contexts.get(key)
            if ctx is not None:
                ctx.ids, ctx.stash, ctx.pending = [], None, self.encode(ctx.text)
        self._rows, self._cache, self._mask = [], None, None

    def _leave(self, keys: list[Hashable], stash: bool = True) -> None:
        """Take rows out of the live batch (keeping their caches unless closing)."""
        from transformers import DynamicCache

        self.counters.rebuilds += 1
        if self._mask is None:  # nothing is cached yet (fresh contexts only)
            self._rows = [k for k in self._rows if k not in set(keys)]
            return
        layers = self._layers()
        leaving = set(keys)
        for row, key in enumerate(self._rows):
            if key in leaving and stash:
                real = self._mask[row].bool().to(self.device)
                self._contexts[key].stash = [(k[row : row + 1, :, real], v[row : row + 1, :, real]) for k, v in layers]
        staying = [row for row, key in enumerate(self._rows) if key not in leaving]
        self._rows = [self._rows[row] for row in staying]
        if not staying:
            self._cache, self._mask = None, None
            return
        # Compact: each staying row's real columns, left-padded to the longest.
        mask = self._mask[staying]
        lengths = mask.sum(dim=1)
        width = int(lengths.max())
        index = torch.zeros((len(staying), width), dtype=torch.long)
        new_mask = torch.zeros((len(staying), width), dtype=torch.long)
        for j, row_mask in enumerate(mask):
            real = row_mask.nonzero().squeeze(1)
            index[j, width - len(real):] = real
            new_mask[j, width - len(real):] = 1
        rows = torch.tensor(staying, device=self.device)
        index = index.to(self.device)
        compacted = []
        for k, v in layers:
            gather = index[:, None, :, None].expand(-1, k.shape[1], -1, k.shape[3])
            compacted.append((k.index_select(0, rows).gather(2, gather), v.index_select(0, rows).gather(2, gather)))
        self._cache = DynamicCache(ddp_cache_data=compacted)
        self._mask = new_mask

    def _join(self, keys: list[Hashable]) -> None:
        """Add rows to the live batch from their stashes (or empty, for fresh contexts)."""
        from transformers import DynamicCache

        self.counters.rebuilds += 1
        contexts = [self._contexts[k] for k in keys]
        width = max([len(c.ids) for c in contexts] + [0 if self._mask is None else self._mask.shape[1]])
        blocks: list[list[tuple[torch.Tensor, torch.Tensor]]] = []
        masks: list[torch.Tensor] = []
        if self._mask is not None:
            pad = width - self._mask.shape[1]
            blocks.append([(_left_pad(k, pad), _left_pad(v, pad)) for k, v in self._layers()])
            masks.append(torch.nn.functional.pad(self._mask, (pad, 0)))
        template = blocks[0] if blocks else next((c.stash for c in contexts if c.stash), None)
        for ctx in contexts:
            n = len(ctx.ids)
            row_mask = torch.zeros((1, width), dtype=torch.long)
            if n:
                row_mask[0, width - n:] = 1
            masks.append(row_mask)
            if ctx.stash is not None:
                blocks.append([(_left_pad(k, width - n), _left_pad(v, width - n)) for k, v in ctx.stash])
                ctx.stash = None
            elif template is not None:  # a fresh context: all padding
                blocks.append([(_empty_like(k, width), _empty_like(v, width)) for k, v in template])
        self._rows += keys
        self._mask = torch.cat(masks, dim=0)
        if template is None or width == 0:  # nothing cached anywhere yet
            self._cache = None
            self._mask = None
            return
        layers = [
            (torch.cat([b[i][0] for b in blocks], dim=0), torch.cat([b[i][1] for b in blocks], dim=0))
            for i in range(len(template))
        ]
        self._cache = DynamicCache(ddp_cache_data=layers)


def base_model_of(model: Any) -> Any:
    """The transformers model under a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _cache_kwarg(model: Any) -> str:
    """transformers 5 calls the cache argument ``cache``; earlier versions ``past_key_values``."""
    import inspect

    base = base_model_of(model)
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _left_pad(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad (B, H, T, D) with ``pad`` zero columns on the left of T."""
    return t if pad == 0 else torch.nn.functional.pad(t, (0, 0, pad, 0))


def _empty_like(t: torch.Tensor, width: int) -> torch.Tensor:
    return t.new_zeros((1, t.shape[1], width, t.shape[3]))
