"""The engine: a recursive runner over a Generator backend (oracle, transformers, or numpy for a
small Llama solving one problem on a CPU)."""

from retune_tui.engine.generator import CALL, CONTEXT, EOS, LENGTH, Delta, Generator
from retune_tui.engine.limits import Limits
from retune_tui.engine.oracle import OracleGenerator
from retune_tui.engine.runner import Runner

__all__ = ["CALL", "CONTEXT", "EOS", "LENGTH", "Delta", "Generator", "Limits", "OracleGenerator", "Runner"]
