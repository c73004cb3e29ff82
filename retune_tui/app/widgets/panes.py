"""The detail pane (one node, in full) and the status line (the run and its answer)."""

from __future__ import annotations

from rich.text import Text
from textual.containers import VerticalScroll
from textual.widgets import Static

from retune_tui.app.formatting import detail_text, trace_verdict
from retune_tui.app.widgets.call_tree import CallTree, Key

WELCOME = Text.assemble(
    ("retune-tui", "bold"), " — watch a model solve a problem recursively.\n\n",
    "Type a problem above and press ", ("Enter", "bold"), ". The call tree grows on the left;\n",
    "this pane shows the selected context: its ", ("prompt", "bold #8aa4ff"), ", the ",
    ("generated", "bold"), " text and the values ", ("returned", "bold #5fd75f"), " into it.\n\n",
    "Press ", ("F1", "bold"), " for every key (or ", ("?", "bold"), " once out of the input: ",
    ("Esc", "bold"), " leaves it).",
)


class DetailPane(VerticalScroll):
    """The selected node: whole context, tokens, time, oracle check, error."""

    def compose(self):
        yield Static(WELCOME, id="detail-text")

    shown: tuple[CallTree, Key] | None = None
    """The node on show (None: the welcome text)."""

    def show_node(self, lane: CallTree, key: Key) -> None:
        trace, node = lane.node_at(key)
        self.shown = (lane, key)
        text = detail_text(trace, node, lane.checks(key), lane.fault(key[0]), live=lane.live)
        self.query_one("#detail-text", Static).update(text)

    def show_text(self, text: Text) -> None:
        self.shown = None
        self.query_one("#detail-text", Static).update(text)


class RunSummary(Static):
    """One line: what the run is doing, the answer against the ground truth, speed."""

    def show(self, state: str, lane: CallTree | None, key: Key | None, note: str = "", hint: str = "") -> None:
        """``note``: an error to show (red); ``hint``: anything else worth a word (yellow).
        Both come before the figures, which a narrow terminal cuts first."""
        text = Text.assemble((f" {state} ", f"bold reverse {STATE_STYLE.get(state, '')}"), " ")
        figures = ""
        if lane is not None and lane.traces:
            tree = key[0] if key is not None and key[0] in lane.traces else max(lane.traces)
            trace = lane.traces[tree]
            if len(lane.traces) > 1:
                text.append(f"#{tree} ", "dim")
            text.append(f"{trace.problem}  ", "bold")
            text.append_text(trace_verdict(trace, live=lane.live, fault=lane.fault(tree)))
            contexts = sum(len(t.nodes) for t in lane.traces.values())
            rate = f"{lane.tokens / lane.elapsed:,.0f} tok/s" if lane.elapsed > 0 else "– tok/s"
            figures = f"   {contexts} contexts · {lane.tokens} tokens · {rate} · {lane.elapsed:.2f} s"
        elif state == "running":
            text.append("starting… (a model loads on its first run)", "dim")
        if hint:
            text.append(f"   {hint}", "yellow")
        if note:
            text.append(f"   {note}", "red")
        text.append(figures, "dim")
        self.update(text, layout=False)  # one line, always: no layout pass per batch


STATE_STYLE = {"running": "yellow", "paused": "cyan", "done": "green", "stopped": "magenta", "error": "red"}
