"""The teacher-forced check: its tallies by depth, by size of context and per problem, and its tables."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")

from retune_tui.evaluate.accuracy import RunResult, problems_for  # noqa: E402
from retune_tui.evaluate.report import teacher_tables  # noqa: E402
from retune_tui.evaluate.teacher import END, _text, segment_kind, teacher_forced  # noqa: E402
from retune_tui.tasks import get_task  # noqa: E402
from retune_tui.tasks.protocol import Method  # noqa: E402
from retune_tui.tokenizer import char_tokenizer  # noqa: E402
from retune_tui.train.dataset import tokenize  # noqa: E402


class Peeking(torch.nn.Module):
    """Predicts each next token by reading it from its input, so every segment is exact,
    except in sequences longer than ``wrong_from`` tokens, where it predicts token 0."""

    def __init__(self, vocab: int, wrong_from: int) -> None:
        super().__init__()
        self.vocab, self.wrong_from = vocab, wrong_from
        self.weight = torch.nn.Parameter(torch.zeros(1))  # a device to find

    def forward(self, input_ids, attention_mask):
        lengths = attention_mask.sum(dim=1)
        following = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1)
        following[lengths > self.wrong_from] = 0
        return SimpleNamespace(logits=torch.nn.functional.one_hot(following, self.vocab).float())


def expected(task, tok, sizes, n, seed, wrong_from):
    """What the check must find, from the lengths of the tokenized oracle examples."""
    by_size, inexact = {}, set()
    for size in sizes:
        for index, problem in enumerate(problems_for(task, size, n, seed)):
            for ex in task.oracle_examples(problem, Method.RETUNING):
                bad = len(tokenize(tok, ex.prompt, ex.completion)[0]) > wrong_from
                cell = by_size.setdefault((ex.size, segment_kind(Method.RETUNING, ex.prompt, ex.completion)), [0, 0])
                cell[0] += not bad
                cell[1] += 1
                if bad:
                    inexact.add((size, index))
    return by_size, inexact


@pytest.mark.parametrize("wrong_from", [10_000, 110])
def test_tallies_by_size_of_context_and_per_problem(wrong_from):
    task, tok = get_task("dp"), char_tokenizer()
    sizes, n, seed = [2, 4], 6, 3
    result = teacher_forced(task, Method.RETUNING, Peeking(len(tok), wrong_from), tok, sizes, n, seed, batch=7)

    by_size, inexact = expected(task, tok, sizes, n, seed, wrong_from)
    assert {(r["size"], r["kind"]): [r["correct"], r["total"]] for r in result["by_size"]} == by_size
    assert result["problems"] == [{"size": s, "exact": n - sum(1 for p, _ in inexact if p == s), "total": n}
                                  for s in sizes]
    assert sum(r["total"] for r in result["rows"]) == result["segments"] == sum(t for _, t in by_size.values())
    if wrong_from > 1000:
        assert result["accuracy"] == 1.0 and all(r["accuracy"] == 1.0 for r in result["by_size"])
    else:  # the longest contexts fail, and with them some 4-element problems
        assert 0 < result["accuracy"] < 1
        assert result["problems"][1]["exact"] < n


def test_wrong_segments_are_kept_with_what_the_model_would_write():
    task, tok = get_task("dp"), char_tokenizer()
    every: list[dict] = []
    result = teacher_forced(task, Method.RETUNING, Peeking(len(tok), 110), tok, [2, 4], 6, 3, keep=2,
                            every_wrong=every)
    wrong = sum(r["total"] - r["correct"] for r in result["by_size"])
    assert len(every) == wrong > 0
    kept = result["wrong"]
    groups = {(r["size"], r["kind"]) for r in every}
    assert len(kept) == sum(min(2, sum(1 for r in every if (r["size"], r["kind"]) == g)) for g in groups)
    # the oracle's text up to where the model parts from it (here its first token), then the model's choice there
    assert all(r["predicted"] == tok.decode([0]) for r in every)
    assert [(r["size"], r["kind"]) for r in kept] == sorted((r["size"], r["kind"]) for r in kept)
    exact = teacher_forced(task, Method.RETUNING, Peeking(len(tok), 10_000), tok, [2], 2, 3, every_wrong=every[:0])
    assert exact["wrong"] == []


def test_what_the_model_writes_reads_as_the_completion_where_it_is_right():
    tok = char_tokenizer()
    ids, labels = tokenize(tok, "What is the parity of [1]?\nSolution: ", "1")
    written = [i for i, label in zip(ids, labels) if label != -100]
    assert _text(tok, written) == "1" + END
    assert _text(tok, written[:-1] + [tok.convert_tokens_to_ids("0")]) == "10"  # no end where one was due
    assert _text(tok, [tok.eos_token_id]) == END  # an end where the oracle goes on


def test_tables_pivot_kinds_into_columns_and_read_old_results():
    teacher = {"contexts": 5, "accuracy": 0.8,
               "rows": [{"depth": 0, "kind": "call", "correct": 2, "total": 2, "accuracy": 1.0},
                        {"depth": 1, "kind": "base case", "correct": 2, "total": 3, "accuracy": 0.6667}],
               "by_size": [{"size": 1, "kind": "base case", "correct": 2, "total": 3, "accuracy": 0.6667},
                           {"size": 2, "kind": "call", "correct": 2, "total": 2, "accuracy": 1.0}],
               "problems": [{"size": 2, "exact": 1, "total": 2}]}
    run = RunResult("dp-retuning", "dp", "retuning", (2, 5), teacher=teacher)
    depth, size = teacher_tables(run)
    assert "(5 segments, 80.0% exact)" in str(depth.title)  # an old file names them contexts
    assert [c.header for c in depth.columns] == ["depth", "base case", "call"]  # the same order in both
    assert list(depth.columns[1].cells) == ["", "2/3 (66.7%)"]
    assert [c.header for c in size.columns] == ["size", "base case", "call", "problems all exact"]
    assert list(size.columns[3].cells) == ["", "1/2 (50.0%)"]
    teacher["by_size"][1].update(correct=4999, total=5000, accuracy=0.9998)
    assert list(teacher_tables(run)[1].columns[2].cells) == ["", "4999/5000 (99.9%)"]  # never 100% for less

    del teacher["by_size"], teacher["problems"]  # a results file written before them
    assert len(teacher_tables(run)) == 1
    assert teacher_tables(RunResult("x", "dp", "retuning", None)) == []


def test_the_wrong_segments_table_shows_where_model_and_oracle_part():
    wrong = [{"prompt": "Create chosen indices array: sum array [5, 5, 0], item array [0, 5, 0], can use item True\n"
                        "Solution: ", "completion": "Call: Create chosen indices array: sum array [5, 0], item array "
                        "[5, 0], can use item False\n", "size": 3, "depth": 1, "kind": "call",
              "predicted": "Call: Create chosen indices array: sum array [5, 0], item array [5, 0], can use item T"}]
    run = RunResult("dp-retuning", "dp", "retuning", (2, 5), teacher={"segments": 1, "accuracy": 0.0, "rows": [],
                                                                      "wrong": wrong})
    table = teacher_tables(run)[-1]
    assert [c.header for c in table.columns] == ["size", "kind", "context", "oracle", "model"]
    oracle, model = (str(next(iter(table.columns[i].cells))) for i in (3, 4))
    assert oracle == "…can use item False\n" + END and model == "…can use item T"
