"""The three tasks of the paper behind one protocol (see ``protocol.Task``)."""

from __future__ import annotations

import unicodedata
from collections.abc import Hashable

from retune_tui.tasks.addition import Addition
from retune_tui.tasks.dp import DP
from retune_tui.tasks.parity import Parity
from retune_tui.tasks.protocol import METHODS, Method, ProblemParseError, ProblemTooLarge, Task

TASKS: dict[str, Task] = {task.name: task for task in (Addition(), Parity(), DP())}


def get_task(name: str) -> Task:
    """The task called ``name``; a one-line error listing the choices otherwise."""
    try:
        return TASKS[name.strip().lower()]
    except KeyError:
        raise ProblemParseError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}") from None


def get_method(name: str | Method) -> Method:
    try:
        return Method(str(name).strip().lower())
    except ValueError:
        raise ProblemParseError(
            f"unknown method {name!r}; choose one of: {', '.join(m.value for m in METHODS)}"
        ) from None


def ascii_text(text: str) -> str:
    """Typed text with its digits in ASCII: digits of any script (``１２``, ``١٢``), the
    full-width forms of ASCII (``＋``, ``［``, ``，``), the minus sign ``−`` and other spaces
    become what a model was trained on; anything else is left for the parser to refuse."""
    if text.isascii():
        return text
    return "".join(_ascii_char(ch) for ch in text)


def _ascii_char(ch: str) -> str:
    if ch.isascii():
        return ch
    digit = unicodedata.decimal(ch, None)
    if digit is not None:
        return str(digit)
    if "\uff01" <= ch <= "\uff5e":  # full-width ASCII
        return chr(ord(ch) - 0xFEE0)
    if ch == "\u2212":
        return "-"
    return " " if ch.isspace() else ch


def detect(text: str) -> tuple[Task, Hashable]:
    """Recognise the task from what a person typed, and parse it.

    A list of only 0s and 1s is read as parity unless the text is worded as a DP
    problem; any other integer list is DP. Digits typed in another script are read as
    ASCII ones (``ascii_text``).
    """
    text = ascii_text(text)
    order = ("addition", "parity", "dp")
    if "Create " in text or "nonadjacent" in text or "input =" in text or "Input =" in text:
        order = ("dp",)
    for name in order:
        try:
            return TASKS[name], TASKS[name].parse(text)
        except ProblemTooLarge:
            raise  # the task is recognised: what is wrong is said, not "no task"
        except ProblemParseError:
            continue
    expected = "; ".join(f"{t.name}: {t.expected}" for t in TASKS.values())
    raise ProblemParseError(f"not a problem of any task: {text.strip()[:60]!r}; expected {expected}")


def parse_problem(text: str, task: str | Task | None = None) -> tuple[Task, Hashable]:
    """Parse ``text`` as a problem of ``task``, or recognise the task when it is None
    (digits of any script read as ASCII ones: the problem a model sees is ASCII)."""
    if task is None:
        return detect(text)
    task = get_task(task) if isinstance(task, str) else task
    return task, task.parse(ascii_text(text))


__all__ = ["TASKS", "Method", "METHODS", "ProblemParseError", "Task", "ascii_text", "detect", "get_method",
           "get_task", "parse_problem"]
