"""The teacher-forced check: every context of the oracle traces, one forward pass each.

A segment counts as right when, fed the oracle's context and segment, the model's
greedy choice at every position of the segment (and its EOS) is the oracle's token:
exactly the condition for greedy decoding to write it. It needs no generation, so it
runs in seconds where free-running evaluation takes minutes, and it separates how
well each depth and each kind of segment is learned ("shallow vs deep" accuracy).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from retune_tui.evaluate.accuracy import problems_for
from retune_tui.tasks.protocol import Method, Task, call_stop, returned_values


def segment_kind(method: Method, prompt: str, completion: str) -> str:
    if method is not Method.RETUNING:
        return "answer" if method is Method.BASELINE else "scratchpad"
    if call_stop(completion) is not None:
        return "call"
    return "combine" if returned_values(prompt) else "base case"


def teacher_forced(task: Task, method: Method, model: Any, tokenizer: Any, sizes: Sequence[int], n: int, seed: int,
                   batch: int = 64) -> dict[str, Any]:
    """Exact-segment accuracy by depth and kind over the oracle traces of the eval problems."""
    import torch

    from retune_tui.train.dataset import IGNORE, collate, tokenize

    examples = []
    for size in sizes:
        for problem in problems_for(task, size, n, seed):
            for ex in task.oracle_examples(problem, method):
                ids, labels = tokenize(tokenizer, ex.prompt, ex.completion)
                examples.append((ids, labels, ex.depth, segment_kind(method, ex.prompt, ex.completion)))
    examples.sort(key=lambda e: len(e[0]))
    device = next(model.parameters()).device
    pad = collate(tokenizer.pad_token_id)
    tally: dict[tuple[int, str], list[int]] = defaultdict(lambda: [0, 0])
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(examples), batch):
            chunk = examples[start : start + batch]
            inputs = pad([{"input_ids": ids, "labels": labels} for ids, labels, _, _ in chunk])
            logits = model(input_ids=inputs["input_ids"].to(device),
                           attention_mask=inputs["attention_mask"].to(device)).logits
            predicted = logits[:, :-1].argmax(-1).cpu()  # (B, T-1): the token after each position
            target = inputs["labels"][:, 1:]
            wrong = ((predicted != target) & (target != IGNORE)).any(dim=1)
            for (_, _, depth, kind), bad in zip(chunk, wrong.tolist()):
                cell = tally[(depth, kind)]
                cell[0] += not bad
                cell[1] += 1
    rows = [{"depth": d, "kind": k, "correct": c, "total": t, "accuracy": round(c / t, 4)}
            for (d, k), (c, t) in sorted(tally.items())]
    correct = sum(r["correct"] for r in rows)
    total = sum(r["total"] for r in rows)
    return {"contexts": total, "accuracy": round(correct / max(total, 1), 4), "rows": rows}
