"""Integer lists as people type them and as the formats write them (``str(list)``)."""

from __future__ import annotations

import re

_BRACKETED = re.compile(r"\[\s*(-?\d+(?:\s*,\s*-?\d+)*)?\s*,?\s*\]")
_BARE = re.compile(r"-?\d+(?:\s*[,\s]\s*-?\d+)*")


def format_list(values: tuple[int, ...] | list[int]) -> str:
    """``[1, 0, 1]``: the way Python's ``str(list)`` writes it."""
    return "[" + ", ".join(map(str, values)) + "]"


def parse_list(text: str) -> tuple[int, ...] | None:
    """A list written ``[1, 0, 1]``, ``[1,0,1]``, ``1 0 1`` or ``1, 0, 1``; None otherwise."""
    text = text.strip()
    m = _BRACKETED.fullmatch(text)
    if m is not None:
        inner = m.group(1)
        return tuple(int(v) for v in re.split(r"\s*,\s*", inner)) if inner else ()
    if _BARE.fullmatch(text):
        return tuple(int(v) for v in re.split(r"[,\s]+", text))
    return None


def find_lists(text: str) -> list[tuple[int, ...]]:
    """Every bracketed integer list in ``text``, in order."""
    out = []
    for m in _BRACKETED.finditer(text):
        inner = m.group(1)
        out.append(tuple(int(v) for v in re.split(r"\s*,\s*", inner)) if inner else ())
    return out
