"""Where the user types a problem and picks the task and method.

Text is checked here, before anything runs: what does not parse gets an inline message
saying what was expected, and only a problem that parses is posted on.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Select, Static

from retune_tui.tasks import METHODS, TASKS, Method, ProblemParseError, parse_problem

AUTO = "auto"
PLACEHOLDER = "type a problem — 48213 + 90771 · 1 0 1 1 · [3, -2, 5, 1]"
HINT = "addition: 48213 + 90771   parity: 1 0 1 1   dp: [3, -2, 5, 1]"


class ProblemBar(Vertical):
    """The problem input, the task and method pickers, and the inline message line."""

    @dataclass
    class ProblemSubmitted(Message):
        """A problem that parses was entered (``task`` None: recognised from the text)."""

        text: str
        task: str | None
        method: Method

    def __init__(self, task: str | None = None, method: Method = Method.RETUNING, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._initial_task = task or AUTO
        self._initial_method = method
        self.error: str | None = None
        """The error the message line shows (None: it shows a hint or what the text reads as)."""

    def compose(self) -> ComposeResult:
        with Horizontal(id="problem-row"):
            # Focus coming back (after a dialog, or with i) must not select the text: the next
            # key would replace the problem.
            yield Input(placeholder=PLACEHOLDER, id="problem", select_on_focus=False)
            yield Select([("task: auto", AUTO)] + [(f"task: {name}", name) for name in TASKS],
                         value=self._initial_task, allow_blank=False, id="task")
            yield Select([(f"method: {m}", m.value) for m in METHODS], value=self._initial_method.value,
                         allow_blank=False, id="method")
        yield Static(HINT, id="message", markup=False)

    @property
    def task(self) -> str | None:
        value = self.query_one("#task", Select).value
        return None if value == AUTO else str(value)

    @property
    def method(self) -> Method:
        return Method(str(self.query_one("#method", Select).value))

    def choose(self, task: str | None, method: Method) -> None:
        """Set the task and method pickers (``task`` None: recognised from the text)."""
        self.query_one("#task", Select).value = task or AUTO
        self.query_one("#method", Select).value = method.value

    @property
    def text(self) -> str:
        return self.query_one("#problem", Input).value

    def set_text(self, text: str) -> None:
        """Put ``text`` in the input as if typed, but leave the message line to ``check``
        (the change would otherwise replace its error with the typing hint)."""
        field = self.query_one("#problem", Input)
        with field.prevent(Input.Changed):
            field.value = text

    def check(self) -> str | None:
        """The problem's task if the text parses, else None (and the message says why)."""
        text = self.text
        if not text.strip():
            self.show(f"type a problem first — {HINT}", error=True)
            return None
        try:
            task, problem = parse_problem(text, self.task)
        except ProblemParseError as exc:
            self.show(str(exc), error=True)
            return None
        self.show(f"{task.name}: {task.display(problem)} · {self.method}")
        return task.name

    def show(self, message: str, error: bool = False) -> None:
        line = self.query_one("#message", Static)
        line.update(message)
        line.set_class(error, "-error")
        self.error = message if error else None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "problem":
            return
        event.stop()
        if self.check() is not None:
            self.post_message(self.ProblemSubmitted(self.text, self.task, self.method))

    def on_input_changed(self, event: Input.Changed) -> None:
        """While typing: say which task the text is read as, without nagging about errors."""
        if event.input.id != "problem":
            return
        try:
            task, problem = parse_problem(event.value, self.task)
        except ProblemParseError:
            self.show(HINT)
            return
        self.show(f"{task.name}: {task.display(problem)} · {self.method}")
