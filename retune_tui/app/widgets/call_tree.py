"""The call tree of one lane: traces rebuilt from events, drawn as a Textual ``Tree``.

Events are applied as they arrive (``apply``) and the screen is brought up to date once
per batch (``flush``): new contexts become tree nodes, changed ones are relabelled, and
the cursor follows the node being written unless the user has moved it.
"""

from __future__ import annotations

import sys

from textual import events
from textual.binding import Binding
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from retune_tui.app.formatting import node_label, trace_verdict
from retune_tui.checks import SegmentCheck, node_verdict, segment_checks, task_and_method, trace_fault
from retune_tui.evaluate.faults import Fault
from retune_tui.trace import (
    ERROR,
    Event,
    EventOrderError,
    Node,
    NodeClosed,
    NodeOpened,
    ProblemStarted,
    RunFinished,
    TextGenerated,
    Trace,
    ValueReturned,
)

Key = tuple[int, int]  # (tree, node)


def room_for_depth(depth: int) -> None:
    """Raise Python's recursion limit, if need be, so that a tree ``depth`` levels deep can be
    laid out: Textual's ``Tree`` does it recursively, a frame per level, and an oracle
    parity of 1,000 bits recurses 1,000 deep (Python 3.11 keeps such frames off the C stack)."""
    needed = 2 * depth + 1000
    if sys.getrecursionlimit() < needed:
        sys.setrecursionlimit(needed)


class CallTree(Tree[Key]):
    """One lane's call trees, live."""

    BINDINGS = [
        Binding("minus", "collapse_all", "Collapse all", show=False),
        Binding("equals_sign,plus", "expand_all", "Expand all", show=False),
        Binding("right_square_bracket", "next_error", "Next error", show=False),
        Binding("left_square_bracket", "previous_error", "Previous error", show=False),
        Binding("F", "first_fault", "First fault", show=False),
        Binding("f", "follow", "Follow the running node", show=False),
    ]

    def __init__(self, title: str, *, id: str | None = None) -> None:
        super().__init__("traces", id=id)
        self.show_root = False
        self.border_title = title
        self.traces: dict[int, Trace] = {}
        """The lane's traces, rebuilt here from events (the worker's own never cross threads)."""
        self.events: list[Event] = []
        """Every event of the lane, in order: what "save" writes."""
        self.tokens = 0
        self.elapsed = 0.0
        self.follow = True
        """Keep the cursor on the node being written; off once the user moves."""
        self.term = ""
        """The search text: only matching nodes and their ancestors are shown."""
        self.skipped = 0
        """Events that did not fit the tree (a damaged file): skipped, not fatal."""
        self.live = True
        """The lane's run is still going; once it ends, nodes left open read as stopped."""
        self._shown: dict[Key, TreeNode[Key]] = {}
        self._dirty: dict[Key, None] = {}  # an ordered set: parents before children
        self._checks: dict[Key, list[SegmentCheck]] = {}
        self._faults: dict[int, Fault | None] = {}
        self._live: Key | None = None
        self._verdicts_changed = False

    # --- events -> model ----------------------------------------------------------------

    def apply(self, event: Event) -> None:
        """Change the model by one event; the screen changes at the next ``flush``."""
        trace = self.traces.setdefault(event.tree, Trace(event.tree))
        try:
            trace.apply(event)
        except EventOrderError:
            self.skipped += 1
            return
        self.events.append(event)
        self.elapsed = max(self.elapsed, event.t)
        node_id = getattr(event, "node", None)
        if isinstance(event, ProblemStarted) and len(self.traces) == 2:
            self._dirty[(min(self.traces), 0)] = None  # the first root now shows its number
        if node_id is None:
            if isinstance(event, RunFinished):
                self._finish(trace)
            return
        key = (event.tree, node_id)
        self._dirty[key] = None
        if isinstance(event, TextGenerated):
            self.tokens += event.tokens
            self._live = key
        elif isinstance(event, (NodeOpened, ValueReturned)):
            self._live = key
        elif isinstance(event, NodeClosed):
            self._check(trace, trace.nodes[node_id])

    def _check(self, trace: Trace, node: Node) -> None:
        pair = task_and_method(trace)
        if pair is not None:
            self._checks[(trace.tree, node.id)] = segment_checks(pair[0], pair[1], node)

    def _finish(self, trace: Trace) -> None:
        fault = self._faults[trace.tree] = trace_fault(trace)
        self._verdicts_changed = True
        self._dirty[(trace.tree, 0)] = None
        if fault is not None:
            self._dirty[(trace.tree, fault.node)] = None

    def end(self) -> None:
        """The run is over: what it left open (a stopped run, a trace saved mid-run) reads
        as stopped, not as still running."""
        self.live = False
        unfinished = {tree for tree, trace in self.traces.items() if trace.finished is None}
        if unfinished:
            self._dirty.update((key, None) for key in self.keys() if key[0] in unfinished)
            self._verdicts_changed = True
        self.flush()

    # --- model -> screen ----------------------------------------------------------------

    def flush(self) -> None:
        """Bring the tree up to date with every event applied since the last flush."""
        for key in self._dirty:
            if key[1] not in self.traces[key[0]].nodes:
                continue
            if key in self._shown:
                self._shown[key].set_label(self.label(key))
            elif self._shows(key):
                self._ensure(key)
        self._dirty.clear()
        if self._verdicts_changed:  # not per batch: a border change repaints the whole tree
            self._verdicts_changed = False
            self.border_subtitle = self.summary()
        if self.follow and self._live in self._shown:
            self.call_after_refresh(self._move_to, self._live)

    def rebuild(self) -> None:
        """Redraw every node from the model (after the search text changed); the cursor stays
        on its node, or where the search hides it, on its nearest ancestor still shown."""
        selected = self.cursor_key
        self.clear()
        self._shown.clear()
        for key in self.keys():
            if self._shows(key):
                self._ensure(key)
        self._dirty.clear()
        while selected is not None and selected not in self._shown:
            parent = self.traces[selected[0]].nodes[selected[1]].parent
            selected = None if parent is None else (selected[0], parent)
        if selected is not None:
            self.go_to(selected)

    def keys(self) -> list[Key]:
        """Every node of the lane in display order."""
        return [(tree, node.id) for tree in sorted(self.traces) for node in self.traces[tree].walk()]

    def label(self, key: Key):
        trace = self.traces[key[0]]
        node = trace.nodes[key[1]]
        return node_label(trace, node, self.verdict(key), self._faults.get(key[0]), self.term,
                          many=len(self.traces) > 1, live=self.live)

    def verdict(self, key: Key) -> bool | None:
        return node_verdict(self._checks.get(key, []))

    def checks(self, key: Key) -> list[SegmentCheck]:
        return self._checks.get(key, [])

    def fault(self, tree: int) -> Fault | None:
        return self._faults.get(tree)

    def node_at(self, key: Key) -> tuple[Trace, Node]:
        trace = self.traces[key[0]]
        return trace, trace.nodes[key[1]]

    def summary(self) -> str:
        """The lane's verdicts and speed, for its border."""
        rate = f"{self.tokens / self.elapsed:,.0f} tok/s" if self.elapsed > 0 else "– tok/s"
        finished = [t for t in self.traces.values() if t.finished is not None]
        if len(self.traces) == 1 and (finished or not self.live):
            verdict = trace_verdict(next(iter(self.traces.values())), short=True, live=self.live)
            return f"{verdict.plain} · {self.tokens} tok · {rate}"
        correct = sum(bool(t.finished.correct) for t in finished)
        counts = f"{correct}/{len(finished)} correct"
        if not self.live and len(finished) < len(self.traces):
            counts += f" · {len(self.traces) - len(finished)} stopped"
        return f"{counts} · {self.tokens} tok · {rate}"

    def _shows(self, key: Key) -> bool:
        if not self.term:
            return True
        trace, node = self.node_at(key)
        term = self.term.lower()
        return any(term in text.lower() for text in (node.context, node.answer or "", node.error or ""))

    def _ensure(self, key: Key) -> TreeNode[Key]:
        """The tree node of ``key``, added (with its ancestors) if missing."""
        if key in self._shown:
            return self._shown[key]
        trace, node = self.node_at(key)
        room_for_depth(node.depth)
        if node.parent is None:
            parent, siblings = self.root, [(tree, 0) for tree in sorted(self.traces)]
        else:
            parent = self._ensure((key[0], node.parent))
            siblings = [(key[0], c) for c in trace.nodes[node.parent].children]
        shown_before = sum(1 for s in siblings[: siblings.index(key)] if s in self._shown) if self.term else None
        if shown_before is not None and shown_before < len(parent.children):
            added = parent.add(self.label(key), key, before=shown_before, expand=True)
        else:
            added = parent.add(self.label(key), key, expand=True)
        self._shown[key] = added
        return added

    def _move_to(self, key: Key) -> None:
        node = self._shown.get(key)
        if node is None:
            return
        ancestor = node.parent
        while ancestor is not None and ancestor is not self.root:
            if not ancestor.is_expanded:  # expanding re-lays the whole tree out: only when needed
                ancestor.expand()
            ancestor = ancestor.parent
        if self.cursor_node is not node:
            _ = self.last_line  # lays the lines out, so the node's line is known
            self.move_cursor(node)

    def go_to(self, key: Key) -> None:
        """Put the cursor on ``key`` (expanding its ancestors) once the tree is laid out."""
        self.call_after_refresh(self._move_to, key)

    @property
    def cursor_key(self) -> Key | None:
        node = self.cursor_node
        return None if node is None else node.data

    # --- navigation (keys) ----------------------------------------------------------------

    def action_collapse_all(self) -> None:
        """Every problem folded to its root; the cursor stays in the problem it was in."""
        self.follow = False
        key = self.cursor_key
        for child in self.root.children:
            child.collapse_all()
        if key is not None:
            self.go_to((key[0], 0))

    def action_expand_all(self) -> None:
        self.root.expand_all()

    def action_follow(self) -> None:
        self.follow = True
        if self._live in self._shown:
            self.go_to(self._live)

    def _is_bad(self, key: Key) -> bool:
        """A node worth jumping to: it wrote a wrong segment, or failed on its own
        (not just because a child failed)."""
        trace, node = self.node_at(key)
        if self.verdict(key) is False:
            return True
        return node.status == ERROR and not any(trace.nodes[c].status == ERROR for c in node.children)

    def _jump(self, step: int) -> None:
        keys = [key for key in self.keys() if key in self._shown]
        if not keys:
            return
        here = keys.index(self.cursor_key) if self.cursor_key in keys else (-1 if step > 0 else len(keys))
        for offset in range(1, len(keys) + 1):
            key = keys[(here + step * offset) % len(keys)]
            if self._is_bad(key):
                self.follow = False
                self.go_to(key)
                return
        self.notify("no errors: every node matches the oracle", timeout=3)

    def action_next_error(self) -> None:
        self._jump(+1)

    def action_previous_error(self) -> None:
        self._jump(-1)

    def action_first_fault(self) -> None:
        tree = self.cursor_key[0] if self.cursor_key else min(self.traces, default=None)
        fault = self._faults.get(tree) if tree is not None else None
        if fault is None:
            self.notify("no fault: this trace matches the oracle (or is not finished)", timeout=3)
            return
        self.follow = False
        self.go_to((tree, fault.node))

    # --- the user moving away stops following ---------------------------------------------

    def _user_moved(self) -> None:
        self.follow = False

    def action_cursor_up(self) -> None:
        self._user_moved()
        super().action_cursor_up()

    def action_cursor_down(self) -> None:
        self._user_moved()
        super().action_cursor_down()

    def action_page_up(self) -> None:
        self._user_moved()
        super().action_page_up()

    def action_page_down(self) -> None:
        self._user_moved()
        super().action_page_down()

    def action_scroll_home(self) -> None:
        self._user_moved()
        super().action_scroll_home()

    def action_scroll_end(self) -> None:
        self._user_moved()
        super().action_scroll_end()

    def action_cursor_parent(self) -> None:
        self._user_moved()
        super().action_cursor_parent()

    def action_cursor_parent_next_sibling(self) -> None:
        self._user_moved()
        super().action_cursor_parent_next_sibling()

    def action_cursor_previous_sibling(self) -> None:
        self._user_moved()
        super().action_cursor_previous_sibling()

    def action_cursor_next_sibling(self) -> None:
        self._user_moved()
        super().action_cursor_next_sibling()

    def action_toggle_node(self) -> None:
        self._user_moved()
        super().action_toggle_node()

    def action_toggle_expand_all(self) -> None:
        self._user_moved()
        super().action_toggle_expand_all()

    def on_click(self, event: events.Click) -> None:
        self._user_moved()

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        self._user_moved()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self._user_moved()
