"""Explicit budgets for solving one problem, derived from its size unless set."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, fields, replace

from retune_tui.tasks.protocol import Method, Task, call_stop


@dataclass(frozen=True)
class Limits:
    """Budgets for one problem. A field left None is derived from the problem's oracle
    trace by ``resolve``: a correct model never hits a derived limit, and a runaway one
    is stopped within about twice the work a correct solution needs.

    Attributes:
        max_depth: deepest context allowed (the top level is depth 0).
        max_calls: calls allowed in the whole tree of one problem.
        max_segment_tokens: tokens one segment may take before it must stop.
        max_total_tokens: tokens generated for the whole problem.
        max_seconds: wall time for the whole problem (None: no limit).
    """

    max_depth: int | None = None
    max_calls: int | None = None
    max_segment_tokens: int | None = None
    max_total_tokens: int | None = None
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "max_depth" and value is not None and value < 0:
                raise ValueError(f"max_depth must be 0 (the top context only) or more, got {value}")
            if f.name != "max_depth" and value is not None and not value > 0:  # nan too
                raise ValueError(f"{f.name} must be positive, got {value}")

    def resolve(self, task: Task, problem: Hashable, method: Method) -> Limits:
        """These limits with every unset budget derived from the problem."""
        examples = task.oracle_examples(problem, method)
        depth = max(ex.depth for ex in examples)
        calls = sum(call_stop(ex.completion) is not None for ex in examples)
        longest = max(len(ex.completion) for ex in examples)
        total = sum(len(ex.completion) for ex in examples)
        return replace(
            self,
            max_depth=self.max_depth if self.max_depth is not None else depth + 2,
            max_calls=self.max_calls or 2 * calls + 4,
            max_segment_tokens=self.max_segment_tokens or 2 * longest + 16,
            max_total_tokens=self.max_total_tokens or 2 * total + 64,
        )
