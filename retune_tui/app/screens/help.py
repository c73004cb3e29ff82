"""The help screen: every key, read from the bindings themselves so it cannot go stale."""

from __future__ import annotations

from collections.abc import Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static, Tree

from retune_tui.app.widgets.call_tree import CallTree

KEY_NAMES = {"question_mark": "?", "slash": "/", "minus": "-", "plus": "+", "equals_sign": "=",
             "left_square_bracket": "[", "right_square_bracket": "]", "escape": "Esc", "enter": "Enter",
             "space": "Space", "f1": "F1", "up": "↑", "down": "↓"}

#: Keys handled by widgets rather than bindings.
INPUT_KEYS = [
    ("Enter", "solve the typed problem (in the problem input)"),
    ("Esc", "leave the input / close a dialog / clear the search"),
    ("Tab / Shift+Tab", "move between the input, pickers, trees and the detail pane"),
    ("mouse", "click a node to select it; the wheel scrolls (and stops following)"),
]


def key_text(keys: str) -> str:
    """``question_mark,f1`` as ``? / F1``; ``shift+left`` as ``Shift+left``."""
    names = []
    for key in keys.split(","):
        parts = [KEY_NAMES.get(part, part) for part in key.strip().split("+")]
        parts = [part.capitalize() if part in ("ctrl", "shift", "alt") else part for part in parts]
        names.append("+".join(parts))
    return " / ".join(names)


def binding_rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    rows = []
    for binding in bindings:
        if isinstance(binding, Binding):
            rows.append((key_text(binding.key), binding.description or binding.action))
        else:
            rows.append((key_text(binding[0]), binding[2] if len(binding) > 2 else binding[1]))
    return rows


def help_sections(app_bindings: Iterable[BindingType]) -> list[tuple[str, list[tuple[str, str]]]]:
    tree_own = {b.action for b in CallTree.BINDINGS if isinstance(b, Binding)}
    navigation = [b for b in Tree.BINDINGS if isinstance(b, Binding) and b.action not in tree_own]
    return [
        ("run, files, views", binding_rows(app_bindings)),
        ("call tree", binding_rows(CallTree.BINDINGS)),
        ("moving in the tree", binding_rows(navigation) + [("PgUp / PgDn / Home / End", "scroll")]),
        ("input", INPUT_KEYS),
    ]


class HelpScreen(ModalScreen[None]):
    """Every key, grouped by where it works."""

    AUTO_FOCUS = "#help-box"  # so the arrow keys scroll it
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def __init__(self, app_bindings: Iterable[BindingType]) -> None:
        super().__init__()
        self.sections = help_sections(app_bindings)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(self.render_table())

    def render_table(self) -> Table:
        table = Table(title="retune-tui keys", show_header=False, box=None, padding=(0, 2), expand=True)
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("what it does")
        for title, rows in self.sections:
            table.add_row(Text(title, "bold underline"), "")
            for key, what in rows:
                table.add_row(key, what)
            table.add_row("", "")
        table.caption = "Esc closes this screen"
        return table
