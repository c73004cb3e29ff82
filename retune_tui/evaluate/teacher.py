"""The teacher-forced check: every context of the oracle traces, one forward pass each.

A segment counts as right when, fed the oracle's context and segment, the model's
greedy choice at every position of the segment (and its EOS) is the oracle's token:
exactly the condition for greedy decoding to write it. It needs no generation, so it
runs in seconds where free-running evaluation takes minutes, and it separates how
well each depth and each kind of segment is learned ("shallow vs deep" accuracy), and
each size of context. A fault of one size of context hides in the depth rows, where the
contexts of every problem size meet: DP Re-Tuning's 5-element dp-array combinations were
wrong 53 times in 500 (bundled adapter, 2026-11-27) among depth-1 combinations right 98.6%
of the time. Per problem size it also counts the problems whose every context is exact:
those greedy decoding should solve the oracle's way (batched decoding can round
near-ties otherwise). It keeps the first few wrong segments of each size and kind of
context, with what the model writes there up to where it parts from the oracle (and all of
them for ``--failures``: a file ``retune train --data`` takes, to train on what is wrong).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from retune_tui.evaluate.accuracy import problems_for
from retune_tui.tasks.protocol import Method, Task, call_stop, returned_values

KINDS = ("base case", "call", "combine", "answer", "scratchpad")  # the order of the report's columns
END = "⏎end"  # where a segment's text shows its end (EOS)


def segment_kind(method: Method, prompt: str, completion: str) -> str:
    if method is not Method.RETUNING:
        return "answer" if method is Method.BASELINE else "scratchpad"
    if call_stop(completion) is not None:
        return "call"
    return "combine" if returned_values(prompt) else "base case"


def teacher_forced(task: Task, method: Method, model: Any, tokenizer: Any, sizes: Sequence[int], n: int, seed: int,
                   batch: int = 64, keep: int = 3, every_wrong: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Exact-segment accuracy by depth and kind and by context size and kind over the oracle
    traces of the eval problems, the problems of each size with every segment exact, and the
    first ``keep`` wrong segments of each size and kind of context (``every_wrong`` gets all)."""
    import torch

    from retune_tui.train.dataset import IGNORE, collate, tokenize

    sizes = sorted(set(sizes))  # a size given twice is scored once
    examples = []
    for size in sizes:
        for index, problem in enumerate(problems_for(task, size, n, seed)):
            for ex in task.oracle_examples(problem, method):
                ids, labels = tokenize(tokenizer, ex.prompt, ex.completion)
                kind = segment_kind(method, ex.prompt, ex.completion)
                examples.append((ids, labels, ex.depth, ex.size, kind, (size, index), ex))
    examples.sort(key=lambda e: len(e[0]))
    device = next(model.parameters()).device
    pad = collate(tokenizer.pad_token_id)
    by_depth: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    by_size: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    inexact: set[tuple[int, int]] = set()
    kept: list[dict[str, Any]] = []
    every_wrong = [] if every_wrong is None else every_wrong
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(examples), batch):
            chunk = examples[start : start + batch]
            inputs = pad([{"input_ids": ids, "labels": labels} for ids, labels, *_ in chunk])
            logits = model(input_ids=inputs["input_ids"].to(device),
                           attention_mask=inputs["attention_mask"].to(device)).logits
            predicted = logits[:, :-1].argmax(-1).cpu()  # (B, T-1): the token after each position
            target = inputs["labels"][:, 1:]
            wrong = ((predicted != target) & (target != IGNORE)).any(dim=1)
            for row, ((_, _, depth, context_size, kind, problem, ex), bad) in enumerate(zip(chunk, wrong.tolist())):
                cell = by_size[(context_size, kind)]
                for tally in (by_depth[(depth, kind)], cell):
                    tally[0] += not bad
                    tally[1] += 1
                if bad:
                    inexact.add(problem)
                    # what greedy decoding writes: the oracle's tokens up to the first it would not
                    # choose, then its own choice there (past it, its choices follow the oracle's text)
                    expected = target[row][target[row] != IGNORE]
                    chosen = predicted[row][target[row] != IGNORE]
                    parted = int((chosen != expected).nonzero()[0])
                    written = chosen[: parted + 1].tolist()
                    record = {"prompt": ex.prompt, "completion": ex.completion, "size": ex.size, "depth": ex.depth,
                              "kind": kind, "predicted": _text(tokenizer, written)}
                    every_wrong.append(record)
                    if cell[1] - cell[0] <= keep:
                        kept.append(record)
    rows = _rows("depth", by_depth)
    correct = sum(r["correct"] for r in rows)
    total = sum(r["total"] for r in rows)
    problems = [{"size": size, "exact": n - sum(1 for s, _ in inexact if s == size), "total": n}
                for size in sizes]
    return {"segments": total, "accuracy": round(correct / max(total, 1), 4), "rows": rows,
            "by_size": _rows("size", by_size), "problems": problems,
            "wrong": sorted(kept, key=lambda r: (r["size"], KINDS.index(r["kind"])))}


def _text(tokenizer: Any, ids: list[int]) -> str:
    """The text of a segment's tokens, its end (EOS, only ever the last) as ``⏎end``: a segment
    that stops too early or goes on too long reads as such."""
    ends = bool(ids) and ids[-1] == tokenizer.eos_token_id
    return tokenizer.decode(ids[:-1] if ends else ids) + (END if ends else "")


def _rows(key: str, tally: dict[tuple[int, str], list[int]]) -> list[dict[str, Any]]:
    return [{key: k, "kind": kind, "correct": c, "total": t, "accuracy": round(c / t, 4)}
            for (k, kind), (c, t) in sorted(tally.items())]
