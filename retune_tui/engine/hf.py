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

import zlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from retune_tui.engine.decoding import Context, Counters, Sampling, TokenDecoder, eos_ids_of, max_positions
from retune_tui.engine.generator import Delta


@dataclass
class _Context(Context):
    stash: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer (1, H, len(ids), D), off-batch
    rng: torch.Generator | None = None  # its own draws when sampling: the same whatever else is in the batch


class HFGenerator(TokenDecoder):
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
        self.eos_ids = eos_ids_of(tokenizer.eos_token_id,
                                  getattr(getattr(model, "generation_config", None), "eos_token_id", None))
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
        keep = self.prepare_extend(ctx, text, max_new_tokens)
        if ctx.stash is not None and keep < ctx.stash[0][0].shape[2]:  # re-encode what tokenized differently
            ctx.stash = [(k[:, :, :keep], v[:, :, :keep]) for k, v in ctx.stash]

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
        out = self.too_long({k: self._contexts[k] for k in keys})
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
        drafts = self.drafts(contexts)
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
            out[key], rejected = self.take(ctx, picks[row], draft)
            if rejected:  # the drafts after the first disagreement leave the cache
                n_fed = len(fed[row])
                self._mask[row, start + n_fed - rejected : start + n_fed] = 0
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
        if self.sampling.greedy:
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
