"""Benchmarks run and write their JSON (their numbers are reported, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_models import tiny_model
from typer.testing import CliRunner

from retune_tui.bench.inference import PaperLoopGenerator, segments
from retune_tui.cli import app
from retune_tui.engine import Limits, Runner
from retune_tui.engine.hf import HFGenerator
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method


def test_paper_loop_and_engine_write_the_same_segments():
    model, tok = tiny_model("gpt2")
    task = get_task("parity")
    problems = [task.parse(p) for p in ("1 0 1", "0 1")]
    limits = Limits(max_segment_tokens=12)
    paper = [Runner(task, Method.RETUNING, PaperLoopGenerator(model, tok), limits).run([p])[0] for p in problems]
    engine = Runner(task, Method.RETUNING, HFGenerator(model, tok), limits).run(problems)
    assert [segments(t) for t in paper] == [segments(t) for t in engine]


def test_bench_inference_writes_json(tmp_path):
    model, tok = tiny_model("llama", dtype=torch.float32)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    out = tmp_path / "b.json"
    result = CliRunner().invoke(app, ["bench", "inference", "--base", str(tmp_path / "m"), "--task", "parity",
                                      "--sizes", "2", "--counts", "1,2", "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["problems"] for r in data["rows"]] == [1, 2]
    assert all(r["identical"] == r["problems"] for r in data["rows"])
    assert data["device"].startswith("cpu")


def test_bench_memory_on_cpu_reports_sequence_lengths(tmp_path):
    out = tmp_path / "m.json"
    config = Path(__file__).parent.parent / "training/configs/llama-7b.json"
    result = CliRunner().invoke(app, ["bench", "memory", "addition", "--base-config", str(config),
                                      "--sizes", "3,15", "--device", "cpu", "--out", str(out)])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())["rows"]
    tokens = {(r["method"], r["size"]): r["tokens"] for r in rows}
    assert tokens[("scratchpad", 15)] > tokens[("retuning", 15)] > tokens[("baseline", 15)]
    assert all(r["peak_gib"] is None and not r["out_of_memory"] for r in rows)
    missing = CliRunner().invoke(app, ["bench", "memory", "addition", "--base", str(tmp_path / "no-model"),
                                       "--device", "cpu", "--out", str(tmp_path / "n.json")])
    assert missing.exit_code == 2 and "not found" in missing.output and not (tmp_path / "n.json").exists()
    (tmp_path / "data.jsonl").write_text('{"prompt": "x"}\n')
    for bad, message in ((["--base-config", str(tmp_path / "data.jsonl")], "base_config: cannot read"),
                         (["--base-config", str(tmp_path)], "base_config: cannot read"),
                         (["--base-config", str(config), "--methods", ","], "--methods names none")):
        refused = CliRunner().invoke(app, ["bench", "memory", "addition", *bad, "--device", "cpu",
                                           "--out", str(tmp_path / "n.json")])
        assert refused.exit_code == 2 and message in refused.output and not (tmp_path / "n.json").exists()
        assert len(refused.output.strip().splitlines()) == 1


@pytest.mark.bundled
def test_bench_memory_without_a_model_measures_the_bundled_base(tmp_path):
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["bench", "memory", "parity", "--sizes", "5", "--device", "cpu",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["base"].endswith("assets/base")
    both = CliRunner().invoke(app, ["bench", "memory", "parity", "--base", "x", "--base-config", "y",
                                    "--out", str(tmp_path / "b.json")])
    assert both.exit_code == 2 and "not both" in both.output


@pytest.mark.slow
@pytest.mark.bundled
def test_bench_solve_times_both_engines_in_fresh_processes(tmp_path):
    out = tmp_path / "s.json"
    result = CliRunner().invoke(app, ["bench", "solve", "7 + 5", "--repeats", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["engine"] for r in data["rows"]] == ["numpy", "torch"]
    assert data["identical"] and all(r["answer"] == "12" and r["correct"] for r in data["rows"])


@pytest.mark.parametrize("bench", ["solve", "eval"])
def test_bench_of_the_engines_refuses_what_it_cannot_compare(tmp_path, bench):
    model, tok = tiny_model("gpt2", dtype=torch.float32)
    model.save_pretrained(tmp_path / "gpt2")
    tok.save_pretrained(tmp_path / "gpt2")
    problem = ["12 + 34"] if bench == "solve" else []
    for args, message in [
        (["--model", "oracle"], "needs a model, not the oracle"),
        (["--base", str(tmp_path / "gpt2"), "--task", "addition", "--device", "cpu"], "numpy engine does not run"),
        (["--repeats", "0"], "--repeats must be at least 1") if bench == "solve" else
        (["--n", "0"], "--n and --batch must be at least 1"),
    ]:
        result = CliRunner().invoke(app, ["bench", bench, *problem, *args, "--out", str(tmp_path / "b.json")])
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "b.json").exists()


@pytest.mark.slow
@pytest.mark.bundled
def test_bench_eval_times_both_engines_on_the_same_problems(tmp_path):
    out = tmp_path / "e.json"
    result = CliRunner().invoke(app, ["bench", "eval", "--task", "parity", "--sizes", "3,8", "--n", "4",
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert [r["engine"] for r in data["rows"]] == ["numpy", "torch"] and data["identical"]
    assert all(r["problems"] == 8 and r["correct"] == 8 and r["tokens"] > 0 for r in data["rows"])
