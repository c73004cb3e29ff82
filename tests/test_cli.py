"""The `retune` command line: thin commands, one-line errors, exit codes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from retune_tui.cli import app

GOLDEN = Path(__file__).parent / "formats-golden.jsonl"
runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_solve_with_the_oracle_prints_tree_and_answer(tmp_path):
    save = tmp_path / "t.jsonl"
    result = invoke("solve", "73199 + 21439", "--model", "oracle", "--save", str(save))
    assert result.exit_code == 0, result.output
    assert "3199 + 1439" in result.output and "answer 94638" in result.output and "correct" in result.output
    shown = invoke("trace", "show", str(save))
    assert shown.exit_code == 0 and "answer 94638" in shown.output
    as_json = json.loads(invoke("trace", "show", str(save), "--json").output)
    assert as_json[0]["value"] == "94638" and as_json[0]["root"]["children"][0]["prompt"] == "3199 + 1439\nSolution: "
    stopped = tmp_path / "stopped.jsonl"  # a run stopped before its answer (the TUI's s, then w)
    stopped.write_text("".join(line + "\n" for line in save.read_text().splitlines()[:-3]))
    shown = invoke("trace", "show", str(stopped))
    assert shown.exit_code == 0 and "stopped before an answer" in shown.output and "running" not in shown.output


@pytest.mark.parametrize("method", ["baseline", "scratchpad", "retuning"])
def test_solve_every_method(method):
    result = invoke("solve", "[3, -2, 5, 1]", "--method", method, "--model", "oracle")
    assert result.exit_code == 0 and "answer [1, 2, 1, 2]" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (("solve", "12x", "--model", "oracle"), "not a problem of any task"),
    (("solve", "1 2 3", "--task", "parity"), "not a parity problem"),
    (("solve", "1 + 2", "--method", "cot"), "unknown method"),
    (("solve", "1 + 2", "--max-depth", "-1"), "--max-depth must be 0 (the top context only) or more"),
    (("solve", "1 + 2", "--max-seconds", "-1"), "--max-seconds must be positive"),
    (("solve", "1 + 2", "--max-seconds", "nan"), "--max-seconds must be positive"),
    (("solve", "1 + 2", "--temperature", "nan"), "--temperature must be a number >= 0, got nan"),
    (("solve", "1 + 2", "--temperature", "inf"), "--temperature must be a number >= 0, got inf"),
    (("solve", "1 + 2", "--model", "oracle", "--temperature", "0.5"), "--temperature and --top-p are for a model"),
    (("solve", "1 + 2", "--adapter", "."), "--adapter needs"),  # a folder, of no manifest, and nothing bundled
    (("data", "multiplication", "--problem", "1"), "unknown task"),
    (("data", "addition", "--lengths", "9-2", "--out", "x.jsonl"), "bad length range"),
    (("data", "addition"), "give --out FILE"),
    (("data", "addition", "--n", "0", "--out", "x.jsonl"), "--n must be at least 1, got 0"),
    (("bench", "inference", "--sizes", "0,5"), "bad sizes"),
    (("solve", "1 + 2", "--out", "x.jsonl", "--model", "oracle"), "--out goes with --file"),
    (("solve",), "give a problem"),
    (("solve", "1 + 2", "--batch", "4", "--model", "oracle"), "--batch goes with --file"),
    (("solve", "--file", "p.txt", "--batch", "0", "--model", "oracle"), "--batch must be at least 1"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


BUNDLED = pytest.mark.bundled  # these look for the adapter or the data after the bundled base


@pytest.mark.parametrize(("args", "message"), [
    (("trace", "show", "{none}"), "cannot read trace file"),
    (("report", "{none}"), "cannot read results"),
    (("solve", "--file", "{none}", "--model", "oracle"), "cannot read problems"),
    pytest.param(("solve", "1 + 2", "--adapter", "{none}"), "adapter directory", marks=BUNDLED),
    (("solve", "1 + 2", "--model", "{none}"), "base model"),
    pytest.param(("eval", "--adapter", "{none}"), "adapter directory", marks=BUNDLED),
    (("average", "{none}", "{none}2", "--out", "{none}3"), "not found"),
    (("train", "--recipe", "{none}"), "cannot read recipe"),
    pytest.param(("train", "parity", "--data", "{none}", "--out", "{none}3"), "cannot read data", marks=BUNDLED),
    (("bench", "inference", "--adapter", "{none}"), "adapter directory"),
    (("bench", "solve", "--adapter", "{none}"), "adapter directory"),
])
def test_a_missing_input_path_is_bad_input_exit_2_in_every_command(tmp_path, args, message):
    none = tmp_path / "none"
    result = invoke(*(arg.format(none=none) for arg in args))
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("command", [("solve", "1 + 2"), ("eval",), ("bench", "inference"), ("bench", "solve")])
def test_an_adapter_that_is_a_file_is_named_as_one(tmp_path, command):
    (tmp_path / "adapter.safetensors").write_text("x")
    result = invoke(*command, "--adapter", str(tmp_path / "adapter.safetensors"))
    assert result.exit_code == 2 and "is a file; give the adapter's folder" in result.output, result.output


def test_an_output_that_cannot_be_made_is_named_as_asked_not_as_its_temporary_file(tmp_path, monkeypatch):
    import errno
    import tempfile

    from retune_tui.files import atomic_write_text

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / ".r.json.abc.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", full_disk)
    with pytest.raises(OSError) as caught:
        atomic_write_text(tmp_path / "r.json", "{}")
    assert caught.value.filename == str(tmp_path / "r.json") and caught.value.errno == errno.ENOSPC


def test_debug_shows_the_traceback():
    result = invoke("--debug", "solve", "12x", "--model", "oracle")
    assert result.exit_code != 0 and result.exception is not None


def test_data_problem_prints_the_golden_records():
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines()]
    want = {(r["prompt"], r["completion"]) for r in golden if r["task"] == "dp" and r["method"] == "retuning"
            and r["problem"] == "[1, -2, 3]"}
    result = invoke("data", "dp", "--method", "retuning", "--problem", "[1, -2, 3]")
    got = {(r["prompt"], r["completion"]) for r in map(json.loads, result.output.splitlines())}
    assert result.exit_code == 0 and got == want


def test_data_reweights_unless_told_not_to(tmp_path):
    made = {}
    for flag in ("", "--reweight", "--no-reweight"):
        out = tmp_path / f"d{flag}.jsonl"
        result = invoke("data", "addition", "--n", "40", "--lengths", "1-6", "--out", str(out), *[flag][:bool(flag)])
        assert result.exit_code == 0, result.output
        made[flag] = out.read_text()
    assert made[""] == made["--reweight"] != made["--no-reweight"]


def test_data_file_equals_problem_records(tmp_path):
    out = tmp_path / "d.jsonl"
    result = invoke("data", "parity", "--n", "50", "--lengths", "1-4", "--out", str(out), "--workers", "1")
    assert result.exit_code == 0 and "examples from 50 problems" in result.output
    records = [json.loads(line) for line in out.read_text().splitlines()]
    first = records[0]
    single = invoke("data", "parity", "--problem", first["prompt"]).output.splitlines()
    assert json.loads(single[0]) == first


def test_solve_file_batched(tmp_path):
    problems = tmp_path / "p.txt"
    problems.write_text("# a comment\n12 + 34\n\n1 0 1\n[3, -2, 5]\n999 + 1\n")
    out = tmp_path / "traces.jsonl"
    result = invoke("solve", "--file", str(problems), "--out", str(out), "--model", "oracle")
    assert result.exit_code == 0 and "4/4 correct" in result.output
    shown = json.loads(invoke("trace", "show", str(out), "--json").output)
    by_tree = {t["tree"]: t["problem"] for t in shown}  # trace N is the file's Nth problem, tasks mixed
    assert by_tree == {0: "12 + 34", 1: "[1, 0, 1]", 2: "[3, -2, 5]", 3: "999 + 001"}
    drawn = invoke("trace", "show", str(out)).output
    assert sorted(line for line in drawn.splitlines() if line.startswith("tree ")) == [f"tree {n}" for n in range(4)]
    assert "tree 2" not in invoke("trace", "show", str(out), "--tree", "2").output  # one tree: no ids
    one_by_one = invoke("solve", "--file", str(problems), "--out", str(out), "--model", "oracle", "--overwrite",
                        "--batch", "1")
    assert one_by_one.exit_code == 0 and "4/4 correct" in one_by_one.output
    seconds = float(one_by_one.output.split(" in ")[1].split("s")[0])
    assert 0 <= seconds < 60  # the time it took (not the clock's reading)
    assert {t["tree"]: t["problem"] for t in json.loads(invoke("trace", "show", str(out), "--json").output)} == by_tree


def test_ctrl_c_in_solve_file_writes_the_problems_finished(tmp_path, monkeypatch):
    import retune_tui.render as render

    class StopsAtTheFifth:
        def __init__(self, label):
            self.done = 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def add_task(self, *args, **kwargs):
            return 0

        def advance(self, job):
            self.done += 1
            if self.done == 5:
                raise KeyboardInterrupt

    monkeypatch.setattr(render, "progress_bar", StopsAtTheFifth)
    problems = tmp_path / "p.txt"
    problems.write_text("".join(f"{a} + {a + 7}\n1 0 1 {a % 2}\n" for a in range(10, 30)))
    out = tmp_path / "traces.jsonl"
    result = invoke("solve", "--file", str(problems), "--out", str(out), "--model", "oracle")
    assert result.exit_code == 130, result.output
    finished = int(result.output.split("wrote the ")[1].split()[0])
    assert 5 <= finished < 40 and f"of the {finished} of 40 finished before Ctrl-C" in " ".join(result.output.split())
    shown = json.loads(invoke("trace", "show", str(out), "--json").output)
    assert len(shown) == finished and all(t["correct"] for t in shown)  # whole traces only, numbered as in the file
    lines = problems.read_text().splitlines()
    assert all(t["problem"].replace("[", "").replace("]", "").replace(",", "") == lines[t["tree"]] for t in shown)


def test_bad_line_in_problem_file(tmp_path):
    problems = tmp_path / "p.txt"
    problems.write_text("12 + 34\nbanana\n")
    result = invoke("solve", "--file", str(problems), "--model", "oracle")
    assert result.exit_code == 1 and "p.txt:2" in result.output  # the file's contents, as the README says
    problems.write_bytes(b"\xff\xfe1 + 2\n")
    binary = invoke("solve", "--file", str(problems), "--model", "oracle")
    assert binary.exit_code == 1 and f"{problems} is not UTF-8 text" in binary.output


def test_help_imports_no_torch():
    code = "import sys; from retune_tui.cli import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "retune_tui.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "solve" in out.stdout


def test_an_existing_output_is_kept_unless_overwrite_and_new_files_follow_the_umask(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text("mine\n")
    args = ("data", "parity", "--n", "5", "--lengths", "1-3", "--out", str(out), "--workers", "1")
    refused = invoke(*args)
    assert refused.exit_code == 2 and "exists; pass --overwrite" in refused.output
    assert out.read_text() == "mine\n"
    assert invoke(*args, "--overwrite").exit_code == 0 and out.read_text() != "mine\n"
    save = tmp_path / "t.jsonl"
    save.write_text("mine\n")
    assert invoke("solve", "1 + 2", "--model", "oracle", "--save", str(save)).exit_code == 2
    assert save.read_text() == "mine\n"
    fresh = tmp_path / "new.jsonl"
    old = os.umask(0o022)
    try:
        assert invoke("solve", "1 + 2", "--model", "oracle", "--save", str(fresh)).exit_code == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o644  # readable by others, as any file the user makes


def test_a_folder_of_files_written_at_once_follows_the_umask(tmp_path):
    from safetensors.torch import save_file

    from retune_tui.files import staged_into

    old = os.umask(0o022)
    try:
        with staged_into(tmp_path / "adapter") as staging:
            save_file({"w": __import__("torch").zeros(2)}, staging / "adapter_model.safetensors")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "adapter" / "adapter_model.safetensors").stat().st_mode) == 0o644


def test_no_output_is_written_over_another_output_or_over_an_input_even_with_overwrite(tmp_path):
    problems = tmp_path / "p.txt"
    problems.write_text("1 + 2\n")
    same_as_input = invoke("solve", "--file", str(problems), "--out", str(problems), "--model", "oracle", "--overwrite")
    assert same_as_input.exit_code == 2 and "--out" in same_as_input.output and "also read" in same_as_input.output
    assert problems.read_text() == "1 + 2\n"
    results = tmp_path / "r.png"  # eval's plot would default to the results' own name
    plot_over_results = invoke("eval", "--task", "parity", "--model", "oracle", "--sizes", "2", "--n", "1",
                               "--out", str(results))
    assert plot_over_results.exit_code == 2 and "--out and --plot are the same file" in plot_over_results.output
    assert not results.exists()
    same = invoke("report", str(tmp_path / "missing.json"), "--plot", str(tmp_path / "x.svg"),
                  "--markdown", str(tmp_path / "x.svg"))
    assert same.exit_code == 2 and "--plot and --markdown are the same file" in same.output


@pytest.mark.parametrize(("args", "message"), [
    (("eval", "--oracle", "--task", "parity", "--sizes", "2", "--n", "1", "--out", "{dir}"), "is a directory"),
    (("eval", "--oracle", "--task", "parity", "--sizes", "2", "--n", "1", "--out", "{dir}/r.json",
      "--failures", "{file}"), "is a file; give a folder"),
    (("eval", "--oracle", "--task", "parity", "--sizes", "2", "--n", "1", "--out", "{dir}/r.json",
      "--plot", "{dir}/r.xyz"), "a plot is written as .png"),
    (("solve", "1 + 2", "--model", "oracle", "--save", "{dir}"), "is a directory"),
    (("solve", "1 + 2", "--model", "oracle", "--save", "{file}/t.jsonl"), "is a file, not a folder"),
])
def test_a_bad_output_path_is_refused_before_any_work(tmp_path, args, message):
    (tmp_path / "f").write_text("x")
    result = invoke(*(a.format(dir=tmp_path, file=tmp_path / "f") for a in args))
    assert result.exit_code in (1, 2) and message in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "r.json").exists()


@pytest.mark.parametrize(("args", "message"), [
    (("data", "parity", "--problem", "1 0", "--out", "x.jsonl"), "give one of them"),
    (("data", "parity", "--problem", "1 0", "--format", "xml"), "unknown --format 'xml'"),
    (("data", "parity", "--problem", "1 0", "--n", "5"), "--n is for a data set"),
    (("data", "parity", "--problem", "1 0", "--seed", "3"), "--seed is for a data set"),
    (("data", "parity", "--problem", "1 0", "--no-reweight"), "--reweight/--no-reweight is for a data set"),
    (("data", "parity", "--out", "x.jsonl", "--workers", "0"), "--workers must be at least 1"),
    (("data", "parity", "--lengths", "2-5000", "--out", "x.jsonl"), "size 5000 is past the largest"),
    (("eval", "--adapter", str(Path(__file__).parent.parent / "assets/adapters/addition-retuning"), "--task",
      "parity"), "was trained for addition"),
    (("eval", "--oracle", "--task", "parity", "--methods", ","), "--methods names none"),
    (("solve", "--file", "p.txt", "--out", "a.jsonl", "--save", "b.jsonl"), "give one"),
    (("solve", "1 + 2", "--model", "oracle", "--top-p", "0.9"), "--top-p goes with --temperature"),
    (("eval", "--adapter", str(Path(__file__).parent.parent / "assets/adapters/addition-retuning"), "--methods",
      "baseline"), "--methods is for --oracle or a --model alone"),
])
def test_conflicting_or_impossible_options_are_one_line(args, message):
    result = invoke(*args)
    assert result.exit_code == 2 and message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_report_refuses_a_file_twice_and_a_file_of_no_runs(tmp_path):
    empty = tmp_path / "e.json"
    empty.write_text('{"settings": {}, "runs": []}')
    assert "holds no evaluated runs" in invoke("report", str(empty)).output
    twice = invoke("report", str(empty), str(empty))
    assert twice.exit_code == 2 and "named twice" in twice.output
    spelled_twice = invoke("report", str(empty), str(tmp_path / "." / "e.json"))
    assert spelled_twice.exit_code == 2 and "named twice" in spelled_twice.output
    run = {"label": "a", "task": "parity", "method": "retuning", "trained": [1, 3],
           "sizes": [{"size": 2, "n": 4, "correct": 4, "in_distribution": True}]}
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps({"runs": [run]}))
    assert invoke("report", str(edited)).exit_code == 0  # as written; each edit below breaks it
    for counts, said in (({"correct": 5}, "5 right of 4 problems"), ({"correct": -1}, "-1 right of 4"),
                         ({"faithful": 5}, "5 of them the oracle's way"), ({"tokens": -3}, "-3 tokens")):
        edited.write_text(json.dumps({"runs": [{**run, "sizes": [{**run["sizes"][0], **counts}]}]}))
        refused = invoke("report", str(edited))
        assert refused.exit_code == 1 and "holds counts no evaluation gives" in refused.output, refused.output
        assert said in refused.output
    for field, value in (("sizes", [{"size": None, "n": 4, "correct": 4}]),  # as a hand-edited file may hold
                         ("sizes", [{"size": 2, "n": "4", "correct": 4}]), ("faults", [{"size": 2, "kind": "call"}])):
        edited = tmp_path / "edited.json"
        edited.write_text(json.dumps({"runs": [{**run, field: value}]}))
        refused = invoke("report", str(edited))
        assert refused.exit_code == 1 and "is not a `retune eval` results file" in refused.output, refused.output
        assert "Traceback" not in refused.output
    other = tmp_path / "o.json"
    other.write_text('{"some": "json"}')
    assert "is not a `retune eval` results file (no 'runs' field)" in invoke("report", str(other)).output


def test_usage_errors_are_one_line_with_a_hint():
    def retune(*args):
        return subprocess.run([sys.executable, "-m", "retune_tui.cli", *args], capture_output=True, text=True)

    unquoted = retune("solve", "12", "+", "34")
    assert unquoted.returncode == 2 and unquoted.stderr.count("\n") == 1
    assert "put a problem with spaces in quotes" in unquoted.stderr and "retune solve --help" in unquoted.stderr
    negative = retune("solve", "-2 3 5")
    assert negative.returncode == 2 and "put -- before it" in negative.stderr
    assert retune("solve", "--model", "oracle", "--", "-2 3 5").returncode == 0
    debug = retune("solve", "12x", "--model", "oracle", "--debug")  # --debug after the command too
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_a_problem_deeper_than_pythons_recursion_limit():
    from retune_tui.evaluate.faults import writing_order
    from retune_tui.tasks import get_method, get_task
    from retune_tui.trace import Node, Segment, Trace

    parity, retuning = get_task("parity"), get_method("retuning")
    bits = sys.getrecursionlimit() + 100
    problem = parity.parse(" ".join("1" * bits))
    examples = parity.oracle_examples(problem, retuning)
    assert len(examples) == 2 * bits - 1 and parity.oracle_answer(problem, retuning) == str(bits % 2)
    trace = Trace(0, nodes={d: Node(d, d - 1 if d else None, d, "p", [Segment("c", call=d + 1)], [d + 1])
                            for d in range(bits)})
    assert sum(1 for _ in writing_order(trace)) == bits


def test_report_tells_the_same_adapter_in_two_files_apart(tmp_path):
    for name in ("before", "after"):
        result = invoke("eval", "--oracle", "--task", "parity", "--methods", "baseline,retuning", "--sizes", "2",
                        "--n", "2", "--out", str(tmp_path / f"{name}.json"))
        assert result.exit_code == 0, result.output
    one = invoke("report", str(tmp_path / "before.json"), "--markdown", str(tmp_path / "one.md"))
    assert one.exit_code == 0 and "before: oracle" not in (tmp_path / "one.md").read_text()
    both = invoke("report", str(tmp_path / "before.json"), str(tmp_path / "after.json"),
                  "--markdown", str(tmp_path / "both.md"))
    table = (tmp_path / "both.md").read_text()
    assert both.exit_code == 0 and "before: oracle" in table and "after: oracle" in table


def test_an_error_message_is_cut_to_its_first_line_unless_that_line_introduces_the_rest():
    from retune_tui.errors import first_line

    assert first_line(ValueError("bad value\n  at line 3")) == "bad value"
    assert first_line(ValueError("Couldn't do it from one of: \n(1) a file, \n(2) a class.")) == \
        "Couldn't do it from one of: (1) a file, (2) a class."
    assert first_line(KeyError()) == "KeyError"
