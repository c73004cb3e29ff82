"""The Generator protocol: how the runner asks a backend for text.

A generator holds many open contexts, each under a key the runner chooses. Each
``step`` advances every context it is given by one decoding step (a backend may do
more per step: the oracle writes a whole segment) and returns what each wrote. A
context waiting for its child is simply not passed to ``step``; when the child
returns, ``extend`` appends the ``Return: …`` text and starts the next segment, so a
backend that keeps a key/value cache encodes only the new tokens.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

#: Why a segment ended: EOS, the end of a ``Call:`` line, the segment's token budget, or
#: the model's context window (positions) being full.
EOS, CALL, LENGTH, CONTEXT = "eos", "call", "length", "context"


@dataclass(frozen=True)
class Delta:
    """What one context produced in one step."""

    text: str  # new text (possibly empty)
    tokens: int  # tokens generated in this step
    done: bool = False  # the segment ended
    reason: str | None = None  # EOS, CALL, LENGTH or CONTEXT when done


@runtime_checkable
class Generator(Protocol):
    """A backend that turns many contexts at once into their next segments."""

    #: A short name for traces and reports ("oracle", a model path).
    name: str

    def open(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        """Start a fresh context with ``text`` and begin its first segment."""

    def extend(self, key: Hashable, text: str, max_new_tokens: int) -> None:
        """Append prompt text (never generated) to a context and begin its next segment."""

    def step(self, keys: Sequence[Hashable]) -> dict[Hashable, Delta]:
        """Advance each context in ``keys`` (batched where the backend can)."""

    def close(self, key: Hashable) -> None:
        """Forget a context and free what it held."""
