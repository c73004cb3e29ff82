"""The bundled model end to end: real recursion through the transformers backend.

Slow (a model loads and generates); run with `pytest -m slow`. These check the machinery
on the real assets — loading, the engine, the CLI — not the model's accuracy, which
`retune eval` measures (docs/results.md). On problems the adapters solve, the traces must
equal the oracle's, node for node.
"""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from retune_tui import bundled
from retune_tui.bench.inference import run_engine, run_paper_loop, segments
from retune_tui.cli import app
from retune_tui.engine import OracleGenerator, Runner
from retune_tui.engine.hf import HFGenerator
from retune_tui.engine.loading import ModelSpec, load_model
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method

pytestmark = [pytest.mark.slow, pytest.mark.bundled]

# Problems of several sizes per task; whatever the adapter writes, both loops must agree.
SAMPLES = {
    "addition": ["48213 + 90771", "7 + 5", "44 + 78", "123456789 + 987654321"],
    "parity": ["1 0 1 1", "[0, 1, 1, 0, 1, 0, 0, 1, 1, 1]", "1"],
    "dp": ["[3, -2, 5, 1]", "[-1, 4]", "[2, 2, -3, 5, 1]"],
}
# Problems the bundled adapters solve with the oracle's exact recursion (checked one by one).
# Addition: a base case, one call, a carry through every digit, the example, nine
# and fifteen digits, and eighteen (past the trained sizes, solved since addition Re-Tuning
# trains with position_stride). Parity: up to twenty-one bits, and twenty-five (past the trained sizes,
# solved since parity's stages train with position_stride). DP: two to five elements ([2, 2, -3, 5, 1]
# was answered right through a miscopied call until DP's third GPU stage).
SOLVED = {
    "addition": ["7 + 7", "44 + 78", "99999 + 1", "48213 + 90771", "123456789 + 987654321",
                 "482131234567891 + 907712345678912", "155670462648394832 + 208524553037123627"],
    "parity": ["1 1", "0 1 1", "1 0 1 1", "1 0 1 1 0 1 0 0 1 1", "0 1 1 0 1 0 0 1 1 1 0 1 0 1 1 0 0 1 0 1 1",
               "1 0 1 1 0 0 1 0 1 1 1 0 0 1 0 1 1 0 1 0 0 0 1 1 0"],
    "dp": ["[-1, 4]", "[5, 1, 4]", "[3, -2, 5, 1]", "[2, 2, -3, 5, 1]"],
}


def _load(task_name: str):
    base, adapter = bundled.base_dir(), bundled.adapter_dir(task_name, "retuning")
    assert base is not None and adapter is not None, "the bundled model is missing from assets/"
    return load_model(ModelSpec(str(base), str(adapter), device="cpu"), task=task_name, method="retuning")


def _shape(trace):
    return [(n.depth, n.prompt, [s.text for s in n.segments], n.answer) for n in trace.walk()]


def _tokens(trace):
    return [[s.tokens for s in n.segments] for n in trace.walk()]


@pytest.mark.parametrize("task_name", sorted(SAMPLES))
def test_the_engine_writes_what_the_papers_loop_writes(task_name):
    """Batched, cache-keeping generation on the real model gives the same traces, node for
    node, as one context at a time with the whole parent re-encoded after each return."""
    task, loaded = get_task(task_name), _load(task_name)
    problems = [task.parse(p) for p in SAMPLES[task_name]]
    engine = run_engine(task, Method.RETUNING, loaded.model, loaded.tokenizer, problems)
    paper = run_paper_loop(task, Method.RETUNING, loaded.model, loaded.tokenizer, problems)
    assert [segments(t) for t in engine] == [segments(t) for t in paper]
    assert all(t.finished is not None for t in engine)


@pytest.mark.parametrize("task_name", sorted(SOLVED))
def test_solved_problems_recurse_exactly_like_the_oracle(task_name):
    task, loaded = get_task(task_name), _load(task_name)
    problems = [task.parse(p) for p in SOLVED[task_name]]
    model = Runner(task, Method.RETUNING, HFGenerator(loaded.model, loaded.tokenizer)).run(problems)
    oracle = Runner(task, Method.RETUNING, OracleGenerator(task, Method.RETUNING)).run(problems)
    for got, want in zip(model, oracle):
        assert got.finished.correct, (got.problem, got.finished)
        assert _shape(got) == _shape(want)
        # the bundled tokenizer is one token per character, and an EOS is one token for both
        assert _tokens(got) == _tokens(want)
    assert max(len(t.nodes) for t in model) >= 2  # a real call was made and its value used


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_the_cli_uses_the_bundled_model_by_default(engine, monkeypatch):
    from retune_tui.engine import numpy_llama

    if engine == "torch":  # through transformers, as a GPU, a batch or sampling would run it
        monkeypatch.setenv(numpy_llama.ENGINE_ENV, "torch")
    result = CliRunner().invoke(app, ["solve", "48213 + 90771"])
    assert result.exit_code == 0, result.output
    assert "answer 138984" in result.output and "correct" in result.output and "wrong" not in result.output
    assert "oracle" not in result.output


@pytest.mark.parametrize("adapter", bundled.adapters(), ids=lambda path: path.name)
def test_numpy_writes_what_transformers_writes(adapter):
    """Problems solved on the CPU run in numpy (see numpy_llama.py): every bundled adapter
    writes the same traces there as through transformers, token for token, all at once
    (the samples and 12 fresh problems from 2 to past the trained sizes)."""
    from random import Random

    from retune_tui.engine import numpy_llama
    from retune_tui.engine.decoding import Sampling
    from retune_tui.trace import Trace

    task_name, method = adapter.name.split("-")
    task, the_method = get_task(task_name), Method(method)
    spec = ModelSpec(str(bundled.base_dir()), str(adapter), device="cpu")
    rng, (lo, hi) = Random(f"numpy:{adapter.name}"), task.train_lengths
    fresh = [task.sample(rng, size) for size in range(max(lo, 2), hi + 2)][:12]
    problems = [task.parse(p) for p in SAMPLES[task_name] + SOLVED[task_name]] + fresh
    loaded = load_model(spec, task=task_name, method=method)
    fast = numpy_llama.build(spec, task=task_name, method=method, sampling=Sampling())
    hf_traces = Runner(task, the_method, HFGenerator(loaded.model, loaded.tokenizer)).run(problems)
    fast_traces: list[Trace] = Runner(task, the_method, fast).run(problems)
    assert [_shape(t) for t in fast_traces] == [_shape(t) for t in hf_traces]
    assert [_tokens(t) for t in fast_traces] == [_tokens(t) for t in hf_traces]
    assert [t.finished.answer for t in fast_traces] == [t.finished.answer for t in hf_traces]


def test_the_bundled_model_solves_in_numpy_on_a_cpu():
    from retune_tui.engine import numpy_llama
    from retune_tui.solving import Backend

    backend = Backend(bundled=True)  # as `retune solve` and retune-tui build it: --device auto
    for adapter in bundled.adapters():
        task_name, method = adapter.name.split("-")
        assert isinstance(backend.generator(get_task(task_name), Method(method)), numpy_llama.NumpyGenerator)
    assert isinstance(backend.generator(get_task("dp"), Method.RETUNING, batched=True), numpy_llama.NumpyGenerator)
