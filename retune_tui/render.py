"""Traces drawn with rich, for the command line (live while solving, or from a file)."""

from __future__ import annotations

from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text
from rich.tree import Tree

from retune_tui.checks import detour_note, node_verdict, segment_checks, task_and_method, trace_fault
from retune_tui.tasks import Method, Task
from retune_tui.trace import DONE, ERROR, RUNNING, WAITING, Node, Trace

STATUS_STYLE = {RUNNING: ("…", "yellow"), WAITING: ("⋯", "cyan"), DONE: ("✓", "green"), ERROR: ("✗", "red")}
TAIL = 60  # characters of a running node's latest text shown


def _one_line(text: str, limit: int = TAIL) -> str:
    text = text.replace("\n", "⏎ ")
    return text if len(text) <= limit else "…" + text[-limit:]


def node_label(node: Node, pair: tuple[Task, Method] | None) -> Text:
    """Status icon, problem, depth and answer; a closed node whose own text parts from the
    oracle's (``pair``: the trace's task and method) gets a red ✗ and "(not the oracle's)"
    even when its run went on."""
    icon, style = STATUS_STYLE.get(node.status, ("?", "white"))
    own_mistake = node.status == DONE and pair is not None and node_verdict(segment_checks(*pair, node)) is False
    if own_mistake:
        icon, style = STATUS_STYLE[ERROR]
    label = Text.assemble((f"{icon} ", style), (node.problem_text, "bold"), (f"  d{node.depth}", "dim"))
    if node.status == DONE and node.answer is not None:
        label.append(f"  → {_one_line(node.answer)}", style="red" if own_mistake else "green")
        if own_mistake:
            label.append("  (not the oracle's)", style="red")
    elif node.status == ERROR and node.error:
        label.append(f"  {node.error}", style="red")
    elif node.status in (RUNNING, WAITING):
        label.append(f"  {_one_line(node.segments[-1].text)}", style="yellow")
    return label


def trace_tree(trace: Trace) -> Tree:
    """The call tree of one problem."""
    root = trace.root
    header = Text.assemble((f"{trace.task} · {trace.method} · ", "dim"), (trace.problem, "bold"))
    tree = Tree(header)
    if root is None:
        return tree
    pair = task_and_method(trace)
    branches = {root.id: tree.add(node_label(root, pair))}
    for node in trace.walk():
        if node.parent is not None:
            branches[node.id] = branches[node.parent].add(node_label(node, pair))
    return tree


def trace_summary(trace: Trace, live: bool = True) -> Text:
    """The answer checked against the ground truth, and what it took (``live``: the run is
    still going; a saved trace with no answer was stopped before one)."""
    fin = trace.finished
    if fin is None:
        return Text("running…", style="yellow") if live else Text("stopped before an answer", style="bold magenta")
    verdict = {True: ("correct", "bold green"), False: ("wrong", "bold red")}.get(fin.correct, ("?", "white"))
    text = Text.assemble("answer ", (fin.shown_value, "bold"), "  expected ", (str(trace.expected), "bold"),
                         "  ", verdict)
    off_path = detour_note(trace, trace_fault(trace))
    if off_path:
        text.append(f" ({off_path})", style="yellow")
    contexts = f"{len(trace.nodes)} context" + ("s" if len(trace.nodes) != 1 else "")
    text.append(f"   {contexts}, {fin.tokens} tokens, {fin.seconds:.3f}s", style="dim")
    if fin.error:
        text.append(f"\n{fin.error}", style="red")
    return text


def trace_view(trace: Trace, live: bool = True) -> RenderableType:
    return Group(trace_tree(trace), trace_summary(trace, live))


def progress_bar(label: str) -> Progress:
    """A progress bar on stderr (stdout stays clean for data), hidden off a terminal."""
    console = Console(stderr=True)
    return Progress(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("eta"),
                    TimeRemainingColumn(), console=console, transient=True, disable=not console.is_terminal)
