"""The bundled model end to end: real recursion through the transformers backend.

Slow (a model loads and generates); run with `pytest -m slow`.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from retune_tui import bundled
from retune_tui.cli import app
from retune_tui.engine import OracleGenerator, Runner
from retune_tui.engine.hf import HFGenerator
from retune_tui.engine.loading import ModelSpec, load_model
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method

pytestmark = [pytest.mark.slow, pytest.mark.bundled]

SAMPLES = {
    "addition": ["48213 + 90771", "7 + 5", "123456789 + 987654321"],
    "parity": ["1 0 1 1", "[0, 1, 1, 0, 1, 0, 0, 1, 1, 1]", "1"],
    "dp": ["[3, -2, 5, 1]", "[-1, 4]", "[2, 2, -3, 5, 1]"],
}


def _shape(trace):
    return [(n.depth, n.prompt, [s.text for s in n.segments], n.answer) for n in trace.walk()]


@pytest.mark.parametrize("task_name", sorted(SAMPLES))
def test_the_retuning_adapter_recurses_like_the_oracle(task_name):
    base, adapter = bundled.base_dir(), bundled.adapter_dir(task_name, "retuning")
    assert base is not None and adapter is not None, "the bundled model is missing from assets/"
    task = get_task(task_name)
    loaded = load_model(ModelSpec(str(base), str(adapter), device="cpu"), task=task_name, method="retuning")
    problems = [task.parse(p) for p in SAMPLES[task_name]]
    model = Runner(task, Method.RETUNING, HFGenerator(loaded.model, loaded.tokenizer)).run(problems)
    oracle = Runner(task, Method.RETUNING, OracleGenerator(task, Method.RETUNING)).run(problems)
    for got, want in zip(model, oracle):
        assert got.finished.correct, (got.problem, got.finished)
        assert _shape(got) == _shape(want)


def test_the_cli_uses_the_bundled_model_by_default():
    result = CliRunner().invoke(app, ["solve", "48213 + 90771"])
    assert result.exit_code == 0, result.output
    assert "answer 138984" in result.output and "correct" in result.output and "wrong" not in result.output
