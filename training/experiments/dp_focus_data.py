"""The data of an experiment, not shipped: DP Re-Tuning's 5-element "chosen indices" call.

    python training/experiments/dp_focus_data.py runs/experiments

writes ``dp-focus.jsonl`` into that folder (for ``training/experiments/dp-focus.toml``):
oracle examples of 2-5-element problems with the paper's weighting, in which every context
that makes a "chosen indices" call on a 5-element array appears 80 times, so they are about
half of the examples.

The shipped DP adapter makes that call right only 29 times in 100 (teacher-forced, fresh
problems; 94 in 100 on 4-element arrays): it copies the sum array without its first element,
then puts the wrong element first in the item array (item 2 as often as item 1, item 0 one
time in eight), so at 5 elements only 20% of its answers come the oracle's way. Those contexts
are 1.2% of oracle data; repeated four times or weighted to a seventh of the examples, 15-24
CPU minutes changed nothing. Here, at half, the call was learned between steps 150 and 300
(its item array's first element right 27, then 95 times in 100; the whole call 97 in 100 at
the end), but the rest of the recursion got worse (docs/results.md, "DP inside the trained
sizes").

The file is the same byte for byte on every run (fixed seed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from retune_tui.tasks import get_task
from retune_tui.tasks.dp import DPChosen
from retune_tui.tasks.protocol import call_stop
from retune_tui.train import dataset as ds

TIMES = 80
SIZE = 5


def is_focus(ex: ds.TextExample) -> bool:
    """A context that makes a "chosen indices" call on an array of SIZE elements."""
    return (ex.size == SIZE and isinstance(get_task("dp").parse(ex.prompt), DPChosen)
            and call_stop(ex.completion) is not None)


def focus_examples() -> list[ds.TextExample]:
    examples = ds.oracle_examples("dp", "retuning", (2, 5), 8000, 61, True)
    return examples + [ex for ex in examples if is_focus(ex) for _ in range(TIMES - 1)]


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "dp-focus.jsonl"
    examples = focus_examples()
    ds.write_examples(path, examples)
    print(f"{len(examples)} examples written to {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/experiments")
