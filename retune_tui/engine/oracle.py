"""The oracle backend: writes the correct next segment of any context, with no model."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from retune_tui.engine.generator import CALL, EOS, LENGTH, Delta
from retune_tui.tasks.protocol import Method, Task, call_stop


@dataclass
class _Context:
    text: str
    pending: str | None = None  # the rest of the segment being written
    written: str = ""  # what of the segment is written so far
    budget: int = 0


class OracleGenerator:
    """A perfect model. Tokens are characters, and a segment that ends with EOS spends one
    token more on it, as a model does.

    Args:
        task: the task whose oracle writes the segments.
        method: the method whose format is written.
        chars_per_step: stream each segment in pieces of this many characters (one
            piece per ``step``), as a model would; None writes a segment per step.
    """

    name = "oracle"

    def __init__(self, task: Task, method: Method, chars_per_step: int | None = None) -> None:
        self.task = task
        self.method = method
        self.chars_per_step = chars_per_step
        self._contexts: dict[Hashable, _Context] = {}

    def open(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        self._contexts[key] = _Context(text, budget=max_new_tokens)

    def extend(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        ctx = self._contexts[key]
        ctx.text += text
        ctx.budget = max_new_tokens

    def close(self, key: Hashable) -> None:
        self._contexts.pop(key, None)

    def segment(self, context: str) -> str:
        """The segment to write next; a subclass may corrupt it to test error finding."""
        return self.task.oracle(context, self.method)

    def step(self, keys: Sequence[Hashable]) -> dict[Hashable, Delta]:
        out = {}
        for key in keys:
            ctx = self._contexts[key]
            if ctx.pending is None:
                ctx.pending, ctx.written = self.segment(ctx.text), ""
            piece = ctx.pending[: self.chars_per_step or len(ctx.pending)]
            overflow = len(piece) > ctx.budget
            piece = piece[: ctx.budget]
            ctx.budget -= len(piece)
            ctx.pending = ctx.pending[len(piece) :]
            ctx.written += piece
            ctx.text += piece
            if overflow:
                out[key] = Delta(piece, len(piece), done=True, reason=LENGTH)
            elif ctx.pending:
                out[key] = Delta(piece, len(piece))
            elif call_stop(ctx.written):
                out[key] = Delta(piece, len(piece), done=True, reason=CALL)
            elif ctx.budget == 0:  # no token left for the EOS, as a model would find
                out[key] = Delta(piece, len(piece), done=True, reason=LENGTH)
            else:  # the EOS is a token, as a model's is
                ctx.budget -= 1
                out[key] = Delta(piece, len(piece) + 1, done=True, reason=EOS)
            if out[key].done:
                ctx.pending = None
        return out
