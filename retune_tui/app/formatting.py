"""How nodes, contexts and results read on screen: rich ``Text`` built from trace data.

Kept apart from the widgets so that every label and pane is a plain function of the
trace (easy to test, and the same whether the trace is live, replayed or loaded).
"""

from __future__ import annotations

from rich.text import Text

from retune_tui.checks import SegmentCheck, detour_note, judged
from retune_tui.evaluate.faults import Fault
from retune_tui.tasks.protocol import return_text
from retune_tui.trace import DONE, ERROR, RUNNING, WAITING, Node, Trace

STOPPED = "stopped"  # a node left running or waiting when its run ended: not a trace status
STATUS = {RUNNING: ("run ", "bold yellow"), WAITING: ("wait", "cyan"), DONE: ("done", "green"),
          ERROR: ("err ", "bold white on red"), STOPPED: ("stop", "magenta")}
PROMPT_STYLE = "bold #8aa4ff"
TEXT_STYLE = "#e8e8e8"
RETURN_STYLE = "bold #5fd75f"
FAULT_STYLE = "on #5f0000"
MATCH_STYLE = "black on yellow"
TAIL = 48  # characters of a running node's latest text shown in its label


def _flat(text: str) -> str:
    return text.replace("\n", "⏎ ")


def verdict_mark(verdict: bool | None) -> tuple[str, str]:
    """✓ / ✗ against the oracle, or a blank while nothing is finished."""
    return {True: ("✓", "bold green"), False: ("✗", "bold red")}.get(verdict, (" ", ""))


def shown_status(node: Node, live: bool = True) -> str:
    """The node's status, or ``stopped`` for one still open when its run is over."""
    return node.status if live or node.status not in (RUNNING, WAITING) else STOPPED


def body_text(node: Node, flat: bool = False) -> Text:
    """What came after the prompt: generated text, and the values returned into it."""
    text = Text()
    for seg in node.segments:
        text.append(_flat(seg.text) if flat else seg.text, TEXT_STYLE)
        if seg.returned is not None:
            returned = return_text(seg.returned)
            text.append(_flat(returned) if flat else returned, RETURN_STYLE)
    return text


def node_label(trace: Trace, node: Node, verdict: bool | None, fault: Fault | None, term: str = "",
               many: bool = False, live: bool = True) -> Text:
    """One line: status, oracle mark, the problem, depth, then the answer, the error or
    the tail of the text being written (where a returned value visibly arrives).
    ``live``: the run is still going (else an open node reads as stopped)."""
    status = shown_status(node, live)
    tag, tag_style = STATUS.get(status, (status[:4], ""))
    mark, mark_style = verdict_mark(verdict)
    label = Text.assemble((tag, tag_style), " ", (mark, mark_style), " ")
    if node.parent is None and many:
        label.append(f"#{trace.tree} ", "dim")
    # The root reads as the user typed it; the prompt can be a paragraph (DP baseline).
    label.append(trace.problem if node.parent is None and trace.problem else node.problem_text, "bold")
    label.append(f"  d{node.depth}", "dim")
    if node.status == DONE and node.answer is not None:
        label.append(f"  → {_flat(node.answer)}", "green")
    elif node.status == ERROR and node.error:
        label.append(f"  {node.error}", "red")
    else:
        body = body_text(node, flat=True)
        if len(body) > TAIL:
            body = Text("…") + body[len(body) - TAIL:]
        label.append("  ")
        label.append_text(body)
    if node.parent is None and (trace.finished is not None or not live):
        label.append("  ")
        label.append_text(trace_verdict(trace, short=True, live=live))
    if fault is not None and fault.node == node.id:
        label.stylize(FAULT_STYLE)
        label.append(f"  ◀ first fault: {fault.kind}", "bold red")
    if term:
        label.highlight_words([term], MATCH_STYLE, case_sensitive=False)
    return label


def trace_verdict(trace: Trace, short: bool = False, live: bool = True, fault: Fault | None = None) -> Text:
    """The final answer checked against the ground truth (``live``: the run is still going);
    unless ``short``, a right answer reached through ``fault`` (the trace's first) says so."""
    fin = trace.finished
    if fin is None:
        if live:
            return Text("running…", "yellow")
        return Text("■ stopped" if short else "■ stopped before an answer", "bold magenta")
    if fin.correct:
        verdict = Text.assemble(("⇒ ", "dim"), (fin.shown_value, "bold"), ("  ✓ correct", "bold green"))
    else:
        verdict = Text.assemble(("⇒ ", "dim"), (fin.shown_value, "bold"), ("  ✗ wrong", "bold red"),
                                ("  expected ", "dim"), (str(trace.expected), "bold"))
    if not short and fin.error:
        verdict.append(f"  {fin.error}", "red")
    off_path = None if short else detour_note(trace, fault)
    if off_path:
        verdict.append(f"  ({off_path})", "yellow")
    return verdict


def context_text(node: Node) -> Text:
    """The whole context, its three kinds of text in three styles."""
    text = Text(node.prompt, PROMPT_STYLE)
    text.append_text(body_text(node))
    return text


def detail_text(trace: Trace, node: Node, checks: list[SegmentCheck], fault: Fault | None,
                live: bool = True) -> Text:
    """The detail pane for one node (``live``: its run is still going)."""
    status = shown_status(node, live)
    tag, tag_style = STATUS.get(status, (status, ""))
    now = trace.events[-1].t if trace.events else node.opened_at
    seconds = (node.closed_at if node.closed_at is not None else now) - node.opened_at
    out = Text.assemble((f"node {node.id}", "bold"), f" · depth {node.depth} · ", (tag.strip(), tag_style), "\n",
                        f"{node.tokens} tokens · {seconds:.3f} s")
    known = judged(checks)
    if known:
        good = sum(bool(check.matches) for check in known)
        mark, style = verdict_mark(good == len(known))
        out.append(f" · oracle {mark} {good}/{len(known)} segments", style)
    if len(known) < len(checks):
        out.append(f" · {len(checks) - len(known)} past where the oracle can follow", "yellow")
    out.append("\n")
    out.append_text(Text.assemble(("prompt", PROMPT_STYLE), " · ", ("generated", TEXT_STYLE), " · ",
                                  ("returned", RETURN_STYLE), "\n", style="dim"))
    out.append("─" * 40 + "\n", "dim")
    out.append_text(context_text(node))
    out.append("\n" + "─" * 40 + "\n", "dim")
    if node.answer is not None:
        out.append_text(Text.assemble(("answer  ", "dim"), (node.answer, "bold green"), "\n"))
    if node.error:
        out.append_text(Text.assemble(("error   ", "dim"), (node.error, "bold red"), "\n"))
    if fault is not None and fault.node == node.id:
        out.append(f"first fault of this trace: {fault.kind}\n", "bold red")
    for check in checks:
        if check.matches is None:
            out.append(f"segment {check.index + 1}: off the oracle's path (it has no segment for this "
                       "context)\n", "yellow")
        elif not check.matches:
            out.append(f"segment {check.index + 1} differs from the oracle\n", "red")
            out.append_text(Text.assemble(("  oracle  ", "dim"), (repr(check.expected), "green"), "\n"))
            out.append_text(Text.assemble(("  model   ", "dim"), (repr(check.got), "red"), "\n"))
    if node.parent is None:
        out.append_text(Text.assemble(("problem ", "dim"), (trace.problem, "bold"), ("  expected ", "dim"),
                                      (str(trace.expected), "bold"), "\n"))
        out.append_text(trace_verdict(trace, live=live, fault=fault))
    return out
