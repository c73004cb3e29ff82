"""Evaluation: the oracle scores 100%, a corrupted oracle's fault is found, results round-trip."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from retune_tui.cli import app
from retune_tui.engine import OracleGenerator
from retune_tui.evaluate.accuracy import RunResult, Subject, evaluate_subject, merge
from retune_tui.evaluate.faults import LIMIT, MISSING_CALL, WRONG_BASE, WRONG_CALL, WRONG_COMBINE, classify, first_fault
from retune_tui.evaluate.report import read_results, write_results
from retune_tui.tasks import TASKS, get_task
from retune_tui.tasks.protocol import METHODS, Method, returned_values
from retune_tui.trace import read_traces


class CorruptedOracle(OracleGenerator):
    """The addition oracle, except that contexts at ``depth`` ignore the returned carry."""

    def __init__(self, depth: int):
        super().__init__(get_task("addition"), Method.RETUNING)
        self.depth = depth

    def segment(self, context: str) -> str:
        problem = self.task.parse(context)
        returns = returned_values(context)
        if returns and self.task.size(problem) == self.size - self.depth:
            returns = [returns[-1].replace("Carry 1", "Carry 0")]
        return self.task.oracle_step(problem, Method.RETUNING, returns).text


def oracle_subject(task, method, trained=None):
    return Subject("oracle", task, method, trained, lambda: OracleGenerator(task, method))


@pytest.mark.parametrize("task_name", sorted(TASKS))
@pytest.mark.parametrize("method", METHODS)
def test_the_oracle_scores_100_percent_at_every_size(task_name, method):
    task = get_task(task_name)
    result, failures = evaluate_subject(oracle_subject(task, method, (2, 3)), [2, 3, 5, 8], n=6, seed=1)
    assert [r.accuracy for r in result.sizes] == [1.0] * 4 and not result.faults and not failures
    assert [r.in_distribution for r in result.sizes] == [True, True, False, False]


def test_a_dropped_carry_is_found_at_depth_3():
    task = get_task("addition")
    size = 6

    def corrupted():
        gen = CorruptedOracle(depth=3)
        gen.size = size
        return gen

    # Problems whose digit sums carry everywhere, so that dropping a carry changes the answer.
    subject = Subject("corrupt", task, Method.RETUNING, (1, 6), corrupted)
    result, failures = evaluate_subject(subject, [size], n=30, seed=0, keep_failures=2)
    assert result.sizes[0].correct < 30
    kinds = {(f["depth"], f["kind"]) for f in result.faults}
    assert kinds == {(3, WRONG_COMBINE)}
    fault = first_fault(task, Method.RETUNING, failures[0])
    assert fault.depth == 3 and fault.kind == WRONG_COMBINE and "Carry" in fault.expected


@pytest.mark.parametrize(("expected", "got", "index", "kind"), [
    ("Call: 12 + 34\n", "Call: 12 + 35\n", 0, WRONG_CALL),
    ("Call: 12 + 34\n", "Carry 0, Output 46", 0, MISSING_CALL),
    ("Carry 0, Output 46", "Carry 0, Output 47", 0, WRONG_BASE),
    ("Carry 0, Output 46", "Carry 0, Output 47", 1, WRONG_COMBINE),
])
def test_fault_kinds(expected, got, index, kind):
    assert classify(get_task("addition"), Method.RETUNING, index, expected, got) == kind


def test_a_limit_is_its_own_kind():
    from helpers import ScriptedGenerator

    from retune_tui.engine import Limits, Runner

    task = get_task("parity")
    gen = ScriptedGenerator(lambda c: task.oracle(c, Method.RETUNING) + ("x" * 50 if "[1]?" in c else ""))
    [trace] = Runner(task, Method.RETUNING, gen, Limits(max_segment_tokens=40)).run([task.parse("0 0 1")])
    fault = first_fault(task, Method.RETUNING, trace)
    assert fault.kind == LIMIT and fault.depth == 2


def reversing_parity_subject():
    """Parity whose top context calls on the rest of the list *reversed*: a wrong call, the right answer."""
    from helpers import ScriptedGenerator

    from retune_tui.tasks.lists import format_list

    task = get_task("parity")

    def script(context: str) -> str:
        bits = task.parse(context).bits
        text = task.oracle(context, Method.RETUNING)
        if len(bits) == 4 and not returned_values(context):
            text = text.replace(format_list(bits[1:]), format_list(bits[1:][::-1]))
        return text

    return Subject("reversing", task, Method.RETUNING, (1, 4), lambda: ScriptedGenerator(script))


def test_right_answers_off_the_oracles_path_are_told_apart():
    result, _ = evaluate_subject(reversing_parity_subject(), [3, 4], n=20, seed=0)
    short, long = result.sizes
    assert short.correct == short.faithful == 20
    assert long.correct == 20 and 0 < long.faithful < 20  # a palindromic rest is still the oracle's call
    assert [(d["size"], d["depth"], d["kind"]) for d in result.detours] == [(4, 0, WRONG_CALL)]
    assert result.detours[0]["count"] == 20 - long.faithful and not result.faults
    merged = merge([evaluate_subject(reversing_parity_subject(), [3, 4], n=20, seed=0, shard=(r, 2))[0]
                    for r in range(2)])
    assert [r.faithful for r in merged.sizes] == [20, long.faithful] and merged.detours == result.detours
    older = RunResult.from_json({**result.to_json(), "sizes": [{k: v for k, v in row.items() if k != "faithful"}
                                                                for row in result.to_json()["sizes"]]})
    assert [r.faithful for r in merge([older, result]).sizes] == [None, None]  # unknown in one part: unknown


def test_the_oracles_way_shows_in_the_report(tmp_path):
    from retune_tui.evaluate.report import markdown_tables

    result, _ = evaluate_subject(reversing_parity_subject(), [3, 4], n=20, seed=0)
    out = tmp_path / "r.json"
    write_results(out, [result], {"n": 20})
    [again], _ = read_results(out)
    assert again.sizes[1].faithful == result.sizes[1].faithful and again.detours == result.detours
    table = markdown_tables([again])
    assert result.sizes[1].faithful == 12  # these 20 problems: 8 rests are not palindromes
    assert "| 3 | 100* |" in table and "| 4 | 100* (60) |" in table
    shown = CliRunner().invoke(app, ["report", str(out)])
    assert shown.exit_code == 0 and "oracle's way  60.0%" in shown.output and "reached off" in shown.output


def test_results_without_the_oracles_way_still_read(tmp_path):
    out = tmp_path / "old.json"
    out.write_text(json.dumps({"settings": {}, "runs": [{"label": "a", "task": "dp", "method": "retuning",
                                                         "trained": [2, 5], "faults": [], "teacher": None,
                                                         "sizes": [{"size": 3, "n": 4, "correct": 4, "seconds": 0.5,
                                                                    "in_distribution": True, "accuracy": 1.0}]}]}))
    [run], _ = read_results(out)
    assert run.sizes[0].faithful is None and run.detours == [] and run.seconds is None
    assert "faithful" not in run.to_json()["sizes"][0]
    assert "seconds" not in run.to_json()["sizes"][0]  # a share of the run's time, written by older versions


def test_the_time_is_the_runs_not_split_by_size():
    """The sizes' problems share batches: only the whole run's solving time is a measure."""
    subject = oracle_subject(get_task("dp"), Method.RETUNING)
    parts = [evaluate_subject(subject, [2, 4], n=5, seed=2, shard=(r, 2))[0] for r in range(2)]
    assert all(part.seconds is not None and part.seconds >= 0 for part in parts)
    assert merge(parts).seconds == max(part.seconds for part in parts)
    assert "seconds" not in parts[0].to_json()["sizes"][0] and "seconds" in parts[0].to_json()


def test_shards_merge_to_the_whole():
    task = get_task("dp")
    subject = oracle_subject(task, Method.RETUNING)
    whole, _ = evaluate_subject(subject, [2, 4], n=5, seed=2)
    parts = [evaluate_subject(subject, [2, 4], n=5, seed=2, shard=(r, 3))[0] for r in range(3)]
    merged = merge(parts)
    assert [(r.size, r.n, r.correct) for r in merged.sizes] == [(r.size, r.n, r.correct) for r in whole.sizes]


def test_results_round_trip_through_report(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["eval", "--oracle", "--task", "parity", "--methods", "retuning,baseline",
                                      "--sizes", "1-3", "--n", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.png").exists()
    runs, settings = read_results(out)
    assert [r.method for r in runs] == ["retuning", "baseline"] and settings["n"] == 4
    write_results(tmp_path / "again.json", runs, settings)
    assert json.loads((tmp_path / "again.json").read_text()) == json.loads(out.read_text())
    shown = CliRunner().invoke(app, ["report", str(out), "--plot", str(tmp_path / "p.png"),
                                     "--markdown", str(tmp_path / "r.md")])
    assert shown.exit_code == 0 and "100.0%" in shown.output and (tmp_path / "p.png").exists()
    assert "| 3 | 100* | 100* |" in (tmp_path / "r.md").read_text()


def test_eval_bad_input(tmp_path, monkeypatch):
    monkeypatch.setenv("RETUNE_ASSETS", str(tmp_path))  # no bundled adapters to fall back on
    runner = CliRunner()
    assert "nothing to evaluate" in runner.invoke(app, ["eval"]).output
    bad = runner.invoke(app, ["report", "/no/such.json"])
    assert bad.exit_code == 2 and "cannot read results" in bad.output


@pytest.mark.slow
def test_two_processes_shard_the_problems_and_merge(tmp_path, free_port):
    import os
    import subprocess
    import sys

    args = ["-m", "retune_tui.cli", "eval", "--oracle", "--task", "dp", "--sizes", "2-4", "--per-size", "5",
            "--no-teacher"]
    single = subprocess.run([sys.executable, *args, "--out", str(tmp_path / "one.json")], capture_output=True,
                            text=True)
    assert single.returncode == 0, single.stderr[-1500:]
    sharded = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                              free_port, *args, "--out", str(tmp_path / "two.json")], capture_output=True, text=True,
                             env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert sharded.returncode == 0, sharded.stderr[-1500:]
    one, _ = read_results(tmp_path / "one.json")
    two, _ = read_results(tmp_path / "two.json")
    assert [(r.size, r.n, r.correct) for r in two[0].sizes] == [(r.size, r.n, r.correct) for r in one[0].sizes]
    assert sum(r.n for r in two[0].sizes) == 15


def test_a_model_alone_is_evaluated_as_its_manifest_says_or_as_asked(tmp_path):
    import torch

    from retune_tui.manifest import Manifest
    from tests.tiny_models import tiny_model

    model, tok = tiny_model("llama", dtype=torch.float32)
    plain, full = tmp_path / "plain", tmp_path / "full"
    for path in (plain, full):
        model.save_pretrained(path)
        tok.save_pretrained(path)
    Manifest(task="parity", method="baseline", base="random", base_fingerprint="", tokenizer="char",
             train_lengths=(1, 4), extra={"full": True}).write(full)
    runner = CliRunner()
    args = ["--sizes", "2,6", "--n", "3", "--no-teacher", "--device", "cpu", "--max-total-tokens", "40"]

    result = runner.invoke(app, ["eval", "--model", str(full), *args, "--out", str(tmp_path / "full.json")])
    assert result.exit_code == 0, result.output
    assert re.search(r"^full: \d of 6 right in [\d.]+s$", result.stderr, re.M)  # off a terminal: a line per model
    (run,), _ = read_results(tmp_path / "full.json")
    assert (run.label, run.task, run.method, run.trained) == ("full", "parity", "baseline", (1, 4))
    assert [(r.size, r.n, r.in_distribution) for r in run.sizes] == [(2, 3, True), (6, 3, False)]

    # the teacher-forced check may score more problems than are solved free-running
    one = ["--n", "1", "--device", "cpu", "--max-total-tokens", "40"]
    teacher = runner.invoke(app, ["eval", "--model", str(full), *one, "--sizes", "2,2", "--teacher-n", "4",
                                  "--out", str(tmp_path / "teacher.json")])
    assert teacher.exit_code == 0, teacher.output
    assert "segments by size of context" in " ".join(teacher.output.split())
    (run,), _ = read_results(tmp_path / "teacher.json")
    assert [r.n for r in run.sizes] == [1] and [p["total"] for p in run.teacher["problems"]] == [4]  # 2,2: once
    assert run.teacher["segments"] == 4  # a baseline writes one segment per problem
    # every wrong teacher-forced segment goes with --failures, as data to train on
    forced = runner.invoke(app, ["eval", "--model", str(full), *one, "--sizes", "2", "--teacher-n", "4",
                                 "--failures", str(tmp_path / "forced"), "--out", str(tmp_path / "forced.json")])
    assert forced.exit_code == 0, forced.output
    (run,), _ = read_results(tmp_path / "forced.json")
    wrong = 4 - run.teacher["problems"][0]["exact"]  # a random model: every one, or nearly
    assert wrong > 0 and len(run.teacher["wrong"]) == min(3, wrong)
    assert "the first wrong segments" in " ".join(forced.output.split())
    from retune_tui.train.dataset import file_examples

    assert len(file_examples(str(tmp_path / "forced" / "full-teacher-wrong.jsonl"), "parity", "baseline")) == wrong
    again = runner.invoke(app, ["eval", "--model", str(full), *one, "--failures", str(tmp_path / "forced")])
    assert again.exit_code == 2 and "already holds failed traces" in again.output
    folder = tmp_path / "forced"
    bad = runner.invoke(app, ["eval", "--model", str(full), *one, "--sizes", "two", "--failures", str(folder),
                              "--overwrite"])
    assert bad.exit_code == 2 and (folder / "full-teacher-wrong.jsonl").exists()  # a run that fails keeps them
    (folder / "other-failures.rank0.jsonl").write_text("")  # as a run of another adapter leaves
    replaced = runner.invoke(app, ["eval", "--model", str(full), *one, "--sizes", "2", "--teacher-n", "4",
                                   "--failures", str(folder), "--overwrite", "--out", str(tmp_path / "again.json")])
    assert replaced.exit_code == 0, replaced.output
    assert sorted(p.name for p in folder.iterdir()) == ["full-failures.rank0.jsonl", "full-teacher-wrong.jsonl"]
    none = runner.invoke(app, ["eval", "--model", str(full), *one, "--teacher-n", "0"])
    assert none.exit_code == 2 and "--teacher-n must be at least 1" in none.output

    # as many failed traces as asked (a random model fails them all)
    kept = runner.invoke(app, ["eval", "--model", str(full), *args, "--failures", str(tmp_path / "failed"),
                               "--failures-per-size", "2", "--out", str(tmp_path / "kept.json")])
    assert kept.exit_code == 0, kept.output
    failed = read_traces(next((tmp_path / "failed").glob("*-failures.rank0.jsonl")))
    parity = get_task("parity")
    assert sorted(parity.measure(parity.parse(t.problem)) for t in failed) == [(2,), (2,), (6,), (6,)]  # two per size
    for extra, message in ((["--failures-per-size", "2"], "--failures-per-size needs --failures DIR"),
                           (["--failures", str(tmp_path / "f"), "--failures-per-size", "0"],
                            "--failures-per-size must be at least 1"),
                           (["--teacher-n", "5", "--no-teacher"], "--no-teacher turns off")):
        refused = runner.invoke(app, ["eval", "--model", str(full), *args, *extra])
        assert refused.exit_code == 2 and message in refused.output and len(refused.output.strip().splitlines()) == 1

    asked = runner.invoke(app, ["eval", "--model", str(plain), "--task", "addition", "--methods", "retuning,baseline",
                                *args, "--out", str(tmp_path / "plain.json")])
    assert asked.exit_code == 0, asked.output
    runs, _ = read_results(tmp_path / "plain.json")
    assert [(r.label, r.method, r.trained) for r in runs] == [("plain (retuning)", "retuning", None),
                                                              ("plain (baseline)", "baseline", None)]

    unsure = runner.invoke(app, ["eval", "--model", str(plain), *args])
    assert unsure.exit_code == 2 and "give --task" in unsure.output
    wrong = runner.invoke(app, ["eval", "--model", str(full), "--task", "dp", *args])
    assert wrong.exit_code == 2 and "trained for task 'parity'" in wrong.output


def test_a_right_answer_off_the_oracles_path_is_said_so_where_a_trace_is_shown():
    from retune_tui.app.export import trace_markdown
    from retune_tui.checks import detour_note, trace_fault
    from retune_tui.engine import Limits, Runner
    from retune_tui.render import trace_summary

    subject = reversing_parity_subject()
    # The rest of [1, 1, 0, 1] is a palindrome, so its reversed call is the oracle's; [0, 1, 0, 0]'s is not.
    on, off = Runner(subject.task, subject.method, subject.make_generator(), Limits()).run(
        [subject.task.parse("1 1 0 1"), subject.task.parse("0 1 0 0")])
    assert on.finished.correct and off.finished.correct
    note = "reached off the oracle's path: wrong call text at depth 0"
    assert detour_note(on, trace_fault(on)) is None and detour_note(off, trace_fault(off)) == note
    assert note not in trace_summary(on).plain and note in trace_summary(off).plain
    assert note in trace_markdown(off) and note not in trace_markdown(on)


def test_adapters_of_the_same_folder_name_are_told_apart_and_one_given_twice_is_refused(tmp_path):
    from retune_tui.errors import InputError
    from retune_tui.evaluate import EvalConfig, adapter_labels

    a, b = tmp_path / "a" / "dp", tmp_path / "b" / "dp"
    assert adapter_labels([str(a), str(b)]) == ["a/dp", "b/dp"]
    assert adapter_labels([str(a), str(tmp_path / "parity")]) == ["dp", "parity"]
    with pytest.raises(InputError, match="an adapter is given twice"):
        EvalConfig(adapters=[str(a), str(tmp_path / "a" / ".." / "a" / "dp")], base="x")


def test_ctrl_c_keeps_the_problems_finished_by_then():
    from retune_tui.evaluate import EvalConfig, Interrupted, run_eval

    seen = []

    def stop_at_the_seventh(trace):
        seen.append(trace)
        if len(seen) == 7:
            raise KeyboardInterrupt

    config = EvalConfig(oracle=True, task="parity", sizes=[2, 3], n=5, teacher=False, batch=4)
    with pytest.raises(Interrupted) as stop:
        run_eval(config, on_done=stop_at_the_seventh)
    (result,) = stop.value.results
    assert result.partial and 7 <= sum(r.n for r in result.sizes) < 10
    assert all(r.correct == r.n for r in result.sizes)  # the oracle: every finished problem right
    assert RunResult.from_json(result.to_json()).partial


def test_an_interrupted_eval_writes_what_was_finished_and_exits_130(tmp_path, monkeypatch):
    import retune_tui.evaluate as evaluate
    from retune_tui.evaluate.accuracy import SizeResult

    finished = [RunResult("oracle", "parity", "retuning", (1, 21), [SizeResult(2, 5, 5, True, faithful=5)],
                          partial=True)]

    def stopped(config, **kwargs):
        raise evaluate.Interrupted(finished)

    monkeypatch.setattr(evaluate, "run_eval", stopped)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["eval", "--oracle", "--task", "parity", "--sizes", "2", "--out", str(out)])
    assert result.exit_code == 130
    assert "interrupted; wrote the results of the 5 problems finished to" in " ".join(result.output.split())
    assert "interrupted" in result.output.split("error:")[0]  # the table says so too
    runs, settings = read_results(out)
    assert settings["interrupted"] and runs[0].partial and runs[0].sizes[0].n == 5
    finished[:] = [RunResult("oracle", "parity", "retuning", (1, 21), [], partial=True)]  # none finished yet
    none = CliRunner().invoke(app, ["eval", "--oracle", "--task", "parity", "--out", str(tmp_path / "none.json")])
    assert none.exit_code == 130 and none.output.strip() == "error: interrupted"
    assert not (tmp_path / "none.json").exists()


def test_ctrl_c_in_the_teacher_forced_check_keeps_the_whole_accuracy_run(tmp_path, monkeypatch):
    import torch

    import retune_tui.evaluate.teacher as teacher
    from retune_tui.manifest import Manifest
    from tests.tiny_models import tiny_model

    model, tok = tiny_model("llama", dtype=torch.float32)
    model.save_pretrained(tmp_path / "full")
    tok.save_pretrained(tmp_path / "full")
    Manifest(task="parity", method="baseline", base="random", base_fingerprint="", tokenizer="char",
             train_lengths=(1, 4), extra={"full": True}).write(tmp_path / "full")

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(teacher, "teacher_forced", stopped)
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["eval", "--model", str(tmp_path / "full"), "--sizes", "2", "--n", "3",
                                      "--device", "cpu", "--max-total-tokens", "40", "--out", str(out)])
    assert result.exit_code == 130 and "wrote the results of the 3 problems finished" in " ".join(result.output.split())
    (run,), settings = read_results(out)
    assert settings["interrupted"] and not run.partial and run.teacher is None and run.sizes[0].n == 3


@pytest.mark.parametrize(("args", "message"), [
    (("--device", "gpu0"), "unknown device 'gpu0'"),
    (("--dtype", "float8"), "unknown dtype 'float8'"),
])
def test_the_oracle_alone_refuses_a_bad_device_or_dtype_too(tmp_path, args, message):
    evaluate = ["eval", "--oracle", "--task", "parity", "--sizes", "2", "--n", "1", "--out", str(tmp_path / "r.json")]
    for command in (evaluate, ["solve", "[1, 0]", "--model", "oracle"]):
        result = CliRunner().invoke(app, [*command, *args])
        assert result.exit_code == 2 and message in result.output and not (tmp_path / "r.json").exists()


def test_a_method_given_twice_is_evaluated_once(tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["eval", "--oracle", "--task", "parity", "--methods", "retuning,retuning",
                                      "--sizes", "2", "--n", "2", "--out", str(out), "--no-teacher"])
    assert result.exit_code == 0, result.output
    assert [run["method"] for run in json.loads(out.read_text())["runs"]] == ["retuning"]


def test_a_small_llama_on_the_cpu_is_evaluated_in_numpy_as_transformers_would(tmp_path, monkeypatch):
    """The same counts and tokens either way; without the teacher-forced check, transformers
    is not even loaded."""
    import torch

    import retune_tui.engine.loading as loading
    from retune_tui.engine import numpy_llama
    from retune_tui.evaluate import EvalConfig, run_eval
    from tests.tiny_models import tiny_model

    model, tok = tiny_model("llama", dtype=torch.float32, init=0.3)  # weights that write varied text
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    config = EvalConfig(base=str(tmp_path / "m"), whole_model=True, task="addition", sizes=[2, 5], n=6,
                        teacher=False, device="cpu", batch=4)

    def counts(runs):
        return [(row.size, row.n, row.correct, row.tokens) for run in runs for row in run.sizes]

    real_load = loading.load_model
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("transformers loaded"))
    fast = run_eval(config)
    monkeypatch.setattr(loading, "load_model", real_load)
    monkeypatch.setenv(numpy_llama.ENGINE_ENV, "torch")
    torch_runs = run_eval(config)
    assert counts(fast) == counts(torch_runs) and sum(row.tokens for row in fast[0].sizes) > 12 * 5
