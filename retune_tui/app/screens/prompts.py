"""Small dialogs: a path to open, save or export to; the model and speed picker."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from retune_tui.app.jobs import Settings, backend_name
from retune_tui.engine.loading import ModelSpec
from retune_tui.errors import InputError
from retune_tui.solving import Backend


class PathScreen(ModalScreen[Path | None]):
    """Ask for a file path; Enter accepts, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, title: str, default: str = "", hint: str = "", must_exist: bool = False) -> None:
        super().__init__()
        self.title_text = title
        self.default = default
        self.hint = hint
        self.must_exist = must_exist

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(value=self.default, id="path")
            yield Static(self.hint, classes="dialog-hint", id="path-hint", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        text = event.value.strip()
        if not text:
            return
        path = Path(text).expanduser()
        if self.must_exist and not path.is_file():
            hint = self.query_one("#path-hint", Static)
            hint.update(f"no such file: {path}")
            hint.add_class("-error")
            return
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


class SettingsScreen(ModalScreen[Settings | None]):
    """Choose the model (base and adapter, or the oracle), a second adapter to compare
    with, the device, and how fast the oracle writes."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, settings: Settings) -> None:
        super().__init__()
        self.settings = settings

    def compose(self) -> ComposeResult:
        model = self.settings.backend.model
        versus = self.settings.versus.model if self.settings.versus else None
        with Vertical(classes="dialog"):
            yield Label(f"model — now: {backend_name(self.settings.backend)}", classes="dialog-title")
            yield Label("base model (a directory or hub name; 'oracle': no model; 'bundled': assets/)")
            yield Input(value=model.base if model else "bundled" if self.settings.backend.bundled else "oracle",
                        id="base")
            yield Label("LoRA adapter directory (optional)")
            yield Input(value=(model.adapter or "") if model else "", id="adapter")
            yield Label("second adapter to compare with (optional; 'c' compares)")
            yield Input(value=(versus.adapter or "") if versus else "", id="versus")
            yield Label("device (auto, cpu, cuda, cuda:N, mps)")
            yield Input(value=model.device if model else self.settings.backend.device, id="device")
            yield Label("oracle speed in tokens/s (0: as fast as possible)")
            yield Input(value=f"{self.settings.tokens_per_second or 0:g}", id="speed")
            yield Static("", classes="dialog-hint", id="settings-error", markup=False)
            yield Button("Apply", variant="primary", id="apply")

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
        for name, path in (("adapter", adapter), ("second adapter", versus)):
            if path and not Path(path).expanduser().is_dir():
                raise InputError(f"{name}: no such directory {path}")
        if base in ("", "oracle", "bundled"):
            if adapter or versus:
                raise InputError("an adapter needs a base model (the oracle and the bundled model take none)")
            backend = Backend(bundled=True, device=device or "auto") if base == "bundled" else Backend()
            second = None
        else:
            backend = Backend(ModelSpec(base, adapter or None, device or "auto"))
            second = Backend(ModelSpec(base, versus, device or "auto")) if versus else None
        return replace(self.settings, backend=backend, versus=second, tokens_per_second=speed or None)

    def apply(self) -> None:
        try:
            settings = self.build()
        except InputError as exc:
            error = self.query_one("#settings-error", Static)
            error.update(str(exc))
            error.add_class("-error")
            return
        self.dismiss(settings)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.apply()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply()

    def action_cancel(self) -> None:
        self.dismiss(None)
