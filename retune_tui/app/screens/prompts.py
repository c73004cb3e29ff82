"""Small dialogs: a path to open, save or export to; the model and speed picker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Literal

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from retune_tui import bundled
from retune_tui.app.export import output_problem
from retune_tui.app.jobs import Settings, backend_name
from retune_tui.engine.loading import ModelSpec, check_device_name
from retune_tui.errors import InputError
from retune_tui.files import is_folder
from retune_tui.solving import Backend


class PathScreen(ModalScreen[Path | None]):
    """Ask for a file path; Enter accepts, Esc cancels.

    A path to ``open`` must be a file; a path to ``write`` must be a file name in a folder
    that can be written, and one that exists is replaced only after a second Enter.
    What is wrong is said under the field, which keeps the text to fix.
    """

    AUTO_FOCUS = "#path"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: str = "", hint: str = "", *,
                 purpose: Literal["open", "write"] = "write") -> None:
        super().__init__()
        self.title_text = title
        self.default = default
        self.hint = hint
        self.purpose = purpose
        self._replace: Path | None = None  # the existing file a second Enter replaces

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(value=self.default, id="path")
            yield Static(self.hint, classes="dialog-hint", id="path-hint", markup=False)

    def problem(self, path: Path) -> str | None:
        """Why ``path`` will not do (one line), or None."""
        if self.purpose == "open":
            if path.is_dir():
                return f"{path} is a folder; give a trace file (JSON Lines)"
            return None if path.is_file() else f"no such file: {path}"
        return output_problem(path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        try:
            problem, exists = self.problem(path), path.exists()
        except OSError as exc:  # a name the system refuses outright (too long, say)
            problem, exists = f"cannot use that name: {exc.strerror or exc}", False
        if problem is not None:
            self.say(problem, error=True)
        elif self.purpose == "write" and exists and path != self._replace:
            self._replace = path
            self.say(f"{path} exists: Enter again replaces it (or change the name)", error=True)
        else:
            self.dismiss(path)

    def on_input_changed(self, event: Input.Changed) -> None:
        if self._replace is not None:  # a new name: the question no longer stands
            self._replace = None
            self.say(self.hint)

    def say(self, text: str, error: bool = False) -> None:
        hint = self.query_one("#path-hint", Static)
        hint.update(text)
        hint.set_class(error, "-error")

    def action_cancel(self) -> None:
        self.dismiss(None)


class SettingsScreen(ModalScreen[Settings | None]):
    """Choose the model (base and adapter, or the oracle), a second adapter to compare
    with, the device, and how fast the oracle writes. The box scrolls when the terminal
    is shorter than it (Tab moves down to Apply; the error line is scrolled into view)."""

    AUTO_FOCUS = "#base"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        model = self.settings.backend.model
        versus = self.settings.versus.model if self.settings.versus else None
        with VerticalScroll(classes="dialog", id="settings-box"):
            yield Label(f"model — now: {backend_name(self.settings.backend)}", classes="dialog-title")
            yield Label("base model: a folder or hub name, 'oracle' (no model) or 'bundled'")
            yield Input(value=model.base if model else "bundled" if self.settings.backend.bundled else "oracle",
                        id="base", compact=True)
            yield Label("LoRA adapter directory (optional)")
            yield Input(value=(model.adapter or "") if model else "", id="adapter", compact=True)
            yield Label("second adapter to compare with (optional; 'c' compares)")
            yield Input(value=(versus.adapter or "") if versus else "", id="versus", compact=True)
            yield Label("device (auto, cpu, cuda, cuda:N, mps)")
            yield Input(value=model.device if model else self.settings.backend.device, id="device", compact=True)
            yield Label("oracle speed in tokens/s (0: as fast as possible)")
            yield Input(value=f"{self.settings.tokens_per_second or 0:g}", id="speed", compact=True)
            yield Static("", classes="dialog-hint", id="settings-error", markup=False)
            yield Button("Apply", variant="primary", id="apply", compact=True)

    def value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def build(self) -> Settings:
        """The settings as entered. Raises InputError naming the field that is wrong."""
        base, adapter, versus, device = (self.value(i) for i in ("base", "adapter", "versus", "device"))
        try:
            speed = float(self.value("speed") or 0)
        except ValueError:
            raise InputError("oracle speed: a number of tokens per second, or 0") from None
        if speed < 0:
            raise InputError("oracle speed: must not be negative")
        try:
            check_device_name(device or "auto")
        except InputError as exc:
            raise InputError(f"device: {exc}") from None
        for name, path in (("adapter", adapter), ("second adapter", versus)):
            if path and Path(path).expanduser().is_file():
                raise InputError(f"{name}: {path} is a file; give the adapter's folder")
            if path and not is_folder(Path(path).expanduser()):
                raise InputError(f"{name}: no such directory {path}")
        if base in ("", "oracle", "bundled"):
            if adapter or versus:
                raise InputError("an adapter needs a base model (the oracle and the bundled model take none)")
            backend = Backend(bundled=True, device=device or "auto") if base == "bundled" else Backend()
            second = None
        else:
            dtype = bundled.dtype_on(base, "auto")  # the bundled base in float32, as on the command line
            backend = Backend(ModelSpec(base, adapter or None, device or "auto", dtype))
            second = Backend(ModelSpec(base, versus, device or "auto", dtype)) if versus else None
        return replace(self.settings, backend=backend, versus=second, tokens_per_second=speed or None)

    def apply(self) -> None:
        try:
            settings = self.build()
        except InputError as exc:
            error = self.query_one("#settings-error", Static)
            error.update(str(exc))
            error.add_class("-error")
            error.scroll_visible()
            return
        self.dismiss(settings)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.apply()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply()

    def action_cancel(self) -> None:
        self.dismiss(None)
