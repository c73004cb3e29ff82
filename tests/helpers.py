"""Shared test helpers: a scripted generator that misbehaves on purpose."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from retune_tui.engine.generator import CALL, EOS, LENGTH, Delta
from retune_tui.tasks.protocol import call_stop


class ScriptedGenerator:
    """Writes ``script(context)`` as each segment (one character per step), like a model
    would: stopping at EOS, after a ``Call:`` line's newline, or at the token budget."""

    name = "scripted"

    def __init__(self, script: Callable[[str], str]) -> None:
        self.script = script
        self.contexts: dict[Hashable, str] = {}
        self.pending: dict[Hashable, str] = {}
        self.budget: dict[Hashable, int] = {}
        self.written: dict[Hashable, str] = {}
        self.closed: list[Hashable] = []

    def open(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        self.contexts[key] = text
        self.budget[key] = max_new_tokens

    def extend(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        self.contexts[key] += text
        self.budget[key] = max_new_tokens

    def close(self, key: Hashable) -> None:
        self.closed.append(key)
        self.contexts.pop(key, None)

    def step(self, keys: Sequence[Hashable]) -> dict[Hashable, Delta]:
        out = {}
        for key in keys:
            if key not in self.pending:
                self.pending[key], self.written[key] = self.script(self.contexts[key]), ""
            if self.budget[key] == 0:
                del self.pending[key]
                out[key] = Delta("", 0, True, LENGTH)
                continue
            if not self.pending[key]:
                del self.pending[key]
                out[key] = Delta("", 1, True, EOS)  # the EOS token
                continue
            char, self.pending[key] = self.pending[key][0], self.pending[key][1:]
            self.written[key] += char
            self.contexts[key] += char
            self.budget[key] -= 1
            if call_stop(self.written[key]) is not None:
                del self.pending[key]
                out[key] = Delta(char, 1, True, CALL)
            else:
                out[key] = Delta(char, 1)
        return out
