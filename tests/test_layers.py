"""Layering: the plain-Python core imports no UI and no torch (DESIGN.md)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "peft", "textual", "rich", "typer")


@pytest.mark.parametrize("module", [
    "retune_tui.tasks", "retune_tui.trace", "retune_tui.engine", "retune_tui.data", "retune_tui.manifest",
    "retune_tui.engine.loading", "retune_tui.evaluate.faults", "retune_tui.evaluate.accuracy", "retune_tui.bundled",
])
def test_core_modules_import_nothing_heavy(module):
    code = (f"import sys, {module}; bad = [m for m in {HEAVY!r} if m in sys.modules]; "
            "assert not bad, f'imported {bad}'")
    subprocess.run([sys.executable, "-c", code], check=True)
