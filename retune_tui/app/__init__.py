"""`retune-tui`: the Textual app (watch a model recurse live, debug saved traces)."""

from __future__ import annotations

import sys


def main() -> None:
    print("retune-tui: coming soon (the Textual app lands with its own issue); "
          "meanwhile `retune solve PROBLEM` draws the call tree in the terminal.")
    sys.exit(0)
