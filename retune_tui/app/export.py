"""Exporting a trace, or one node's subtree, as JSON or Markdown; saving its events; what
is wrong with a path to write, in one line (plain Python)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from retune_tui.checks import detour_note, trace_fault
from retune_tui.errors import UserError
from retune_tui.files import atomic_write_text, check_folder
from retune_tui.tasks.protocol import return_text
from retune_tui.trace import Event, Node, Trace, dumps_nested, write_events

MARKDOWN_SUFFIXES = (".md", ".markdown")


def node_json(trace: Trace, node_id: int) -> dict[str, Any]:
    """One node's subtree as ``Trace.to_json`` writes it, under the trace's header."""
    whole = trace.to_json()
    stack = [whole["root"]] if whole["root"] else []
    while stack:
        item = stack.pop()
        if item["id"] == node_id:
            header = {k: whole[k] for k in ("tree", "task", "method", "problem", "expected", "model")}
            return {**header, "node": item}
        stack.extend(item["children"])
    raise KeyError(node_id)


def trace_markdown(trace: Trace, node_id: int | None = None) -> str:
    """The trace (or the subtree under ``node_id``) as Markdown: a heading per context,
    its whole text in a code block, children after their parent."""
    fin = trace.finished
    lines = [f"# {trace.problem or 'trace'} — {trace.task} · {trace.method}", ""]
    if trace.model:
        lines.append(f"- model: `{trace.model}`")
    if fin is not None:
        verdict = {True: "correct", False: "wrong"}.get(fin.correct, "unchecked")
        off_path = detour_note(trace, trace_fault(trace))
        lines.append(f"- answer: `{fin.shown_value}` (expected `{trace.expected}`): **{verdict}**"
                     + (f", {off_path}" if off_path else ""))
        lines.append(f"- {len(trace.nodes)} contexts, {fin.tokens} tokens, {fin.seconds:.3f} s")
        if fin.error:
            lines.append(f"- error: {fin.error}")
    lines.append("")
    start = trace.nodes[node_id] if node_id is not None else trace.root
    if start is not None:
        for node in _subtree(trace, start):
            lines += _node_markdown(node, start.depth)
    return "\n".join(lines).rstrip() + "\n"


def _subtree(trace: Trace, start: Node) -> list[Node]:
    out, stack = [], [start]
    while stack:
        node = stack.pop()
        out.append(node)
        stack.extend(trace.nodes[c] for c in reversed(node.children))
    return out


def _node_markdown(node: Node, top_depth: int) -> list[str]:
    level = min(6, 2 + node.depth - top_depth)
    seconds = "" if node.closed_at is None else f", {node.closed_at - node.opened_at:.3f} s"
    lines = [f"{'#' * level} node {node.id}: {node.problem_text}", "",
             f"depth {node.depth} · {node.status} · {node.tokens} tokens{seconds}", ""]
    text = node.prompt + "".join(
        seg.text + (return_text(seg.returned) if seg.returned is not None else "") for seg in node.segments)
    fence = "````" if "```" in text else "```"
    lines += [fence + "text", text, fence, ""]
    if node.answer is not None:
        lines += [f"answer: `{node.answer}`", ""]
    if node.error:
        lines += [f"error: {node.error}", ""]
    return lines


def export_text(trace: Trace, path: Path, node_id: int | None = None) -> str:
    """The export's text, Markdown or JSON by the file's suffix."""
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        return trace_markdown(trace, node_id)
    data = trace.to_json() if node_id is None else node_json(trace, node_id)
    return dumps_nested(data, [trace], ensure_ascii=False, indent=2) + "\n"


def output_problem(path: Path) -> str | None:
    """Why ``path`` cannot be written as a file, in one line; None when it can (it may
    exist: the dialog asks before replacing it)."""
    if path.is_dir():
        return f"{path} is a folder; give a file name"
    try:
        check_folder(path.parent, f"cannot write {path}")
    except UserError as exc:
        return str(exc)
    return None


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A failed write as one line naming the user's path (never a temporary file's)."""
    try:
        yield
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def write_text(path: Path, text: str) -> None:
    """Write atomically: a failed export never leaves half a file."""
    with writing(path):
        atomic_write_text(path, text)


def write_trace(path: Path, events: list[Event]) -> None:
    """Save a trace's events (JSON Lines), atomically."""
    with writing(path):
        write_events(path, events)
