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

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from retune_tui.engine.generator import CALL, EOS, LENGTH, Delta
from retune_tui.tasks.protocol import call_stop


@dataclass(frozen=True)
class Sampling:
    """Greedy unless ``temperature`` > 0; then temperature / top-p sampling with ``seed``."""

    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
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


@dataclass
class Counters:
    """What the backend did, for tests and benchmarks."""

    forwards: int = 0
    fed_tokens: int = 0  # tokens encoded (prompts, returns, re-encodes, decoded tokens)
    generated_tokens: int = 0
    rebuilds: int = 0


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
    """

    def __init__(self, model: Any, tokenizer: Any, *, name: str = "model", sampling: Sampling | None = None) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.sampling = sampling or Sampling()
        self.device = next(model.parameters()).device
        eos = tokenizer.eos_token_id
        extra = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
        self.eos_ids = {eos} | set(extra if isinstance(extra, list) else [extra] if extra is not None else [])
        self.eos_ids.discard(None)
        if not self.eos_ids:
            raise ValueError("the tokenizer has no EOS token; segments could never end")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(self.eos_ids)
        config = model.config
        self.max_positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        self.counters = Counters()
        self._cache_kwarg = _cache_kwarg(model)
        self._contexts: dict[Hashable, _Context] = {}
        self._rows: list[Hashable] = []  # keys of the live batch, in row order
        self._cache: Any = None  # DynamicCache of the live batch
        self._mask: torch.Tensor | None = None  # (B, T) 1 = real column
        self._rng = torch.Generator(device="cpu").manual_seed(self.sampling.seed)

    # --- the Generator protocol ---------------------------------------------------------

    def open(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        self._contexts[key] = _Context(text, pending=self.encode(text), budget=max_new_tokens)

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
        wanted = set(keys)
        idle = [k for k in self._rows if k not in wanted]
        if idle:
            self._leave(idle)
        joining = [k for k in keys if k not in self._rows]
        if joining:
            self._join(joining)
        next_tokens = self._forward()
        out: dict[Hashable, Delta] = {}
        finished = []
        for row, key in enumerate(self._rows):
            out[key] = self._accept(self._contexts[key], int(next_tokens[row]))
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
        """Take one sampled token: extend the segment and decide whether it ended."""
        self.counters.generated_tokens += 1
        if token in self.eos_ids:
            return Delta("", 1, done=True, reason=EOS)
        ctx.generated.append(token)
        text = self.decode(ctx.generated)
        stop = call_stop(text)
        if stop is not None:
            text = text[:stop]  # a token may carry characters past the call's newline
        delta = text[len(ctx.segment):] if text.startswith(ctx.segment) else text
        ctx.segment = text
        ctx.text += delta
        if stop is not None:
            return Delta(delta, 1, done=True, reason=CALL)
        if len(ctx.generated) >= ctx.budget:
            return Delta(delta, 1, done=True, reason=LENGTH)
        ctx.pending = [token]
        return Delta(delta, 1)

    # --- the live batch -------------------------------------------------------------------

    def _forward(self) -> torch.Tensor:
        """Feed every row its pending tokens; return each row's next token."""
        contexts = [self._contexts[k] for k in self._rows]
        width = max(len(c.pending) for c in contexts)
        batch = len(contexts)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        new_mask = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        last = torch.zeros(batch, dtype=torch.long)
        for row, ctx in enumerate(contexts):
            n = len(ctx.pending)
            input_ids[row, :n] = torch.tensor(ctx.pending)
            new_mask[row, :n] = 1
            positions[row] = torch.arange(len(ctx.ids), len(ctx.ids) + width)
            last[row] = n - 1
        if self.max_positions:
            positions.clamp_(max=self.max_positions - 1)
        mask = new_mask if self._mask is None else torch.cat([self._mask, new_mask], dim=1)
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=mask.to(self.device),
            position_ids=positions.to(self.device),
            use_cache=True,
            **{self._cache_kwarg: self._cache},
        )
        self._cache = out[self._cache_kwarg]
        self._mask = mask
        self.counters.forwards += 1
        for ctx in contexts:
            self.counters.fed_tokens += len(ctx.pending)
            ctx.ids += ctx.pending
            ctx.pending = []
        logits = out.logits[torch.arange(batch, device=self.device), last.to(self.device)]  # (B, vocab)
        return self._sample(logits.float()).cpu()

    def _sample(self, logits: torch.Tensor) -> torch.Tensor:
        if self.sampling.temperature == 0:
            return logits.argmax(dim=-1)
        probs = torch.softmax(logits / self.sampling.temperature, dim=-1).cpu()
        if self.sampling.top_p < 1:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            outside = sorted_probs.cumsum(-1) - sorted_probs > self.sampling.top_p
            sorted_probs[outside] = 0
            probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
        return torch.multinomial(probs, 1, generator=self._rng).squeeze(-1)

    def _layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(layer.keys, layer.values) for layer in self._cache.layers]

    def _leave(self, keys: list[Hashable], stash: bool = True) -> None:
        """Take rows out of the live batch (keeping their caches unless closing)."""
        from transformers import DynamicCache

        self.counters.rebuilds += 1
        assert self._mask is not None
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


def _cache_kwarg(model: Any) -> str:
    """transformers 5 calls the cache argument ``cache``; earlier versions ``past_key_values``."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _left_pad(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Pad (B, H, T, D) with ``pad`` zero columns on the left of T."""
    return t if pad == 0 else torch.nn.functional.pad(t, (0, 0, pad, 0))


def _empty_like(t: torch.Tensor, width: int) -> torch.Tensor:
    return t.new_zeros((1, t.shape[1], width, t.shape[3]))
