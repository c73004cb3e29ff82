"""The data of DP Re-Tuning's third GPU stage: its 5-element "chosen indices" call, a quarter of it.

    python training/bundled/dp_retuning_data.py [FOLDER] [--problems N --times T --seed S --name F]

writes ``dp-retuning-focus.jsonl`` into FOLDER (default ``runs/bundled``; gpu-stage.sh runs it
where that file is missing, ``training/bundled/dp-retuning.gpu3.toml`` reads it): oracle
examples of 30,000 2-5-element problems with the paper's weighting, in which every context
that makes a "chosen indices" call on a 5-element array appears 28 times, so they are a
quarter of the examples (560,000, about 130 MB; 20 seconds).

The DP adapter of the first two GPU stages made that call right only 29 times in 100
(teacher-forced, fresh problems; 94 in 100 on 4-element arrays): it copied the sum array
without its first element, then put the wrong element first in the item array (item 2 as
often as item 1, item 0 one time in eight), so at 5 elements only 20% of its answers came
the oracle's way. Those contexts are 1.2% of oracle data. On the CPU, weighted to a seventh
of the examples, 20 minutes changed nothing; at half (``--problems 8000 --times 80 --name
dp-focus.jsonl``, training/experiments/dp-focus.toml) the call was learned in 25 minutes,
but the rest of the recursion got worse. On a GPU, at a quarter of a stage's worth of
problems, both held (training/bundled/README.md).

The file is the same byte for byte on every run (fixed seed).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retune_tui.tasks import get_task
from retune_tui.tasks.dp import DPChosen
from retune_tui.tasks.protocol import call_stop
from retune_tui.train import dataset as ds

SIZE = 5


def is_focus(ex: ds.TextExample) -> bool:
    """A context that makes a "chosen indices" call on an array of SIZE elements."""
    return (ex.size == SIZE and isinstance(get_task("dp").parse(ex.prompt), DPChosen)
            and call_stop(ex.completion) is not None)


def focus_examples(problems: int = 30000, times: int = 28, seed: int = 61) -> list[ds.TextExample]:
    """Oracle examples of ``problems`` problems, each focus context ``times`` times in all."""
    examples = ds.oracle_examples("dp", "retuning", (2, 5), problems, seed, True)
    return examples + [ex for ex in examples if is_focus(ex) for _ in range(times - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="runs/bundled")
    parser.add_argument("--problems", type=int, default=30000)
    parser.add_argument("--times", type=int, default=28)
    parser.add_argument("--seed", type=int, default=61)
    parser.add_argument("--name", default="dp-retuning-focus.jsonl")
    args = parser.parse_args()
    out = Path(args.folder)
    out.mkdir(parents=True, exist_ok=True)
    path = out / args.name
    examples = focus_examples(args.problems, args.times, args.seed)
    part = path.with_name(path.name + ".part")
    ds.write_examples(part, examples)
    part.replace(path)  # whole or not at all: a file that is there is kept by the GPU scripts
    share = sum(is_focus(ex) for ex in examples) / len(examples)
    print(f"{len(examples)} examples written to {path} (the focus call {share:.1%} of them)")


if __name__ == "__main__":
    main()
