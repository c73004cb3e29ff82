"""The data of DP Re-Tuning's third, fourth and fifth GPU stages: the faults each stage was after, repeated.

    python training/bundled/dp_retuning_data.py [FOLDER] [--stage gpu3|gpu4|gpu5]
        [--problems N --times T --seed S --name F]   (a variant of the third stage's file)

writes into FOLDER (default ``runs/bundled``; gpu-stage.sh runs it where a stage's file is
missing) the file of each stage, or of the one asked for:

``dp-retuning-focus.jsonl`` (``dp-retuning.gpu3.toml``): oracle examples of 30,000 2-5-element
problems with the paper's weighting, in which every context that makes a "chosen indices"
call on a 5-element array appears 28 times, so they are a quarter of the examples (560,000,
about 130 MB; 20 seconds). The DP adapter of the first two GPU stages made that call right
only 29 times in 100 (teacher-forced, fresh problems; 94 in 100 on 4-element arrays): it
copied the sum array without its first element, then put the wrong element first in the item
array (item 2 as often as item 1, item 0 one time in eight), so at 5 elements only 20% of its
answers came the oracle's way. Those contexts are 1.2% of oracle data. On the CPU, weighted
to a seventh of the examples, 20 minutes changed nothing; at half (training/experiments/
dp-focus.toml) the call was learned in 25 minutes, but the rest of the recursion got worse.
On a GPU, at a quarter of a stage's worth of problems, both held (training/bundled/README.md).

``dp-retuning-faults.jsonl`` (``dp-retuning.gpu4.toml``): oracle examples of 30,000 other
problems, in which the two faults the third stage's adapter had left (teacher-forced on 500
fresh problems per size, 2026-11-27) are repeated: every "chosen indices" call at a tie
(``dp[0] == dp[1]`` with the first item usable, where the decision needs ``item[0] + dp[2]``)
three times in all, 17% of the examples, and every combination of a 5-element dp array
(``max(return[0], array[0] + return[1])``, wrong 53 times in 500) 16 times, 14% (559,138
examples; 11 seconds).

``dp-retuning-ties.jsonl`` (``dp-retuning.gpu5.toml``; on the CPU, ``training/experiments/
dp-ties-cpu.toml``): 30,000 other problems, in which every tie decision on a 5-element array
appears 20 times, every other tie decision 3 times and every 5-element combination 8 (575,678
examples, 11% of them 5-element tie decisions; 20 seconds): the faults the fourth stage's
adapter left.

``dp-retuning-ties45.jsonl`` (``training/experiments/dp-ties45-cpu.toml``): 8,000 other problems,
in which every tie decision on a 4- or 5-element array appears 12 times, every other decision on
a usable first item of a 4-element array 4 times (teacher-forced on 2,000 fresh 4-element
problems, the fifth stage's adapter got 18 of those decisions wrong, 15 of them at a tie), every
other tie decision 3 times and every 4- or 5-element combination 4 times: the faults the fifth
stage's adapter left, now as many at 4 elements as at 5.

Each file is the same byte for byte on every run (fixed seeds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from retune_tui.tasks import get_task
from retune_tui.tasks.dp import DPArray, DPChosen
from retune_tui.tasks.protocol import call_stop, returned_values
from retune_tui.train import dataset as ds

SIZE = 5
FILES = {"gpu3": "dp-retuning-focus.jsonl", "gpu4": "dp-retuning-faults.jsonl", "gpu5": "dp-retuning-ties.jsonl",
         "ties45": "dp-retuning-ties45.jsonl"}


def is_focus(ex: ds.TextExample) -> bool:
    """A context that makes a "chosen indices" call on an array of SIZE elements."""
    return (ex.size == SIZE and isinstance(get_task("dp").parse(ex.prompt), DPChosen)
            and call_stop(ex.completion) is not None)


def focus_examples(problems: int = 30000, times: int = 28, seed: int = 61) -> list[ds.TextExample]:
    """Oracle examples of ``problems`` problems, each focus context ``times`` times in all."""
    examples = ds.oracle_examples("dp", "retuning", (2, 5), problems, seed, True)
    return examples + [ex for ex in examples if is_focus(ex) for _ in range(times - 1)]


def usable_decision(ex: ds.TextExample) -> DPChosen | None:
    """The sub-problem of a "chosen indices" call deciding on a usable first item (a tie or not)."""
    if not ex.prompt.startswith("Create"):
        return None
    problem = get_task("dp").parse(ex.prompt)
    usable = isinstance(problem, DPChosen) and problem.can_use and call_stop(ex.completion) is not None
    return problem if usable else None


def is_tie(ex: ds.TextExample) -> bool:
    """A "chosen indices" call deciding on a usable first item when ``dp[0] == dp[1]``."""
    problem = usable_decision(ex)
    return problem is not None and problem.sums[0] == problem.sums[1]


def combination(ex: ds.TextExample) -> DPArray | None:
    """The sub-problem of a dp array's combination with what its call returned."""
    if not ex.prompt.startswith("Create"):
        return None
    problem = get_task("dp").parse(ex.prompt)
    return problem if isinstance(problem, DPArray) and returned_values(ex.prompt) else None


def is_long_combination(ex: ds.TextExample) -> bool:
    """The combination of a SIZE-element dp array with what its call returned."""
    problem = combination(ex)
    return problem is not None and len(problem.items) == SIZE


def fault_examples(problems: int = 30000, tie_times: int = 3, combination_times: int = 16,
                   seed: int = 83) -> list[ds.TextExample]:
    """Oracle examples of ``problems`` problems, each tie decision ``tie_times`` times in all
    and each SIZE-element combination ``combination_times``."""
    examples = ds.oracle_examples("dp", "retuning", (2, 5), problems, seed, True)
    ties = [ex for ex in examples if is_tie(ex)]
    combinations = [ex for ex in examples if is_long_combination(ex)]
    return examples + [ex for ex in ties for _ in range(tie_times - 1)] \
        + [ex for ex in combinations for _ in range(combination_times - 1)]


def tie_examples(problems: int = 30000, tie5_times: int = 20, tie_times: int = 3, combination_times: int = 8,
                 seed: int = 87) -> list[ds.TextExample]:
    """Oracle examples of ``problems`` problems, each tie decision on a SIZE-element array
    ``tie5_times`` times in all, each other ``tie_times``, each SIZE-element combination
    ``combination_times`` (every copy after the examples, in their order)."""
    examples = ds.oracle_examples("dp", "retuning", (2, 5), problems, seed, True)
    extra = []
    for ex in examples:
        if is_tie(ex):
            extra += [ex] * ((tie5_times if ex.size == SIZE else tie_times) - 1)
        elif is_long_combination(ex):
            extra += [ex] * (combination_times - 1)
    return examples + extra


def tie45_examples(problems: int = 8000, seed: int = 89) -> list[ds.TextExample]:
    """Oracle examples of ``problems`` problems, the decisions and combinations of 4- and
    5-element arrays repeated (the module's docstring says how often)."""
    examples = ds.oracle_examples("dp", "retuning", (2, 5), problems, seed, True)
    extra = []
    for ex in examples:
        if is_tie(ex):
            times = 12 if ex.size >= SIZE - 1 else 3
        elif usable_decision(ex) is not None and ex.size == SIZE - 1:
            times = 4
        elif combination(ex) is not None and ex.size >= SIZE - 1:
            times = 4
        else:
            times = 1
        extra += [ex] * (times - 1)
    return examples + extra


def write(path: Path, examples: list[ds.TextExample]) -> None:
    part = path.with_name(path.name + ".part")
    ds.write_examples(part, examples)
    part.replace(path)  # whole or not at all: a file that is there is kept by the GPU scripts
    print(f"{len(examples)} examples written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", default="runs/bundled")
    parser.add_argument("--stage", choices=sorted(FILES), help="write only this stage's file (default: every "
                        "stage's)")
    focus = parser.add_argument_group("the third stage's file made otherwise (training/experiments/)")
    focus.add_argument("--problems", type=int, default=30000)
    focus.add_argument("--times", type=int, default=28)
    focus.add_argument("--seed", type=int, default=61)
    focus.add_argument("--name", default=FILES["gpu3"])
    args = parser.parse_args()
    stages = [args.stage] if args.stage else list(FILES)
    if (args.problems, args.times, args.seed, args.name) != (30000, 28, 61, FILES["gpu3"]):
        stages = ["gpu3"]  # an experiment's variant of it
    out = Path(args.folder)
    out.mkdir(parents=True, exist_ok=True)
    if "gpu3" in stages:
        examples = focus_examples(args.problems, args.times, args.seed)
        write(out / args.name, examples)
        print(f"the focus call {sum(is_focus(ex) for ex in examples) / len(examples):.1%} of them")
    if "gpu4" in stages:
        examples = fault_examples()
        write(out / FILES["gpu4"], examples)
        print(f"tie decisions {sum(is_tie(ex) for ex in examples) / len(examples):.1%} of them, 5-element "
              f"combinations {sum(is_long_combination(ex) for ex in examples) / len(examples):.1%}")
    if "gpu5" in stages:
        examples = tie_examples()
        write(out / FILES["gpu5"], examples)
        ties5 = sum(is_tie(ex) and ex.size == SIZE for ex in examples)
        print(f"tie decisions {sum(is_tie(ex) for ex in examples) / len(examples):.1%} of them "
              f"({ties5 / len(examples):.1%} on 5-element arrays), 5-element combinations "
              f"{sum(is_long_combination(ex) for ex in examples) / len(examples):.1%}")
    if "ties45" in stages:
        examples = tie45_examples()
        write(out / FILES["ties45"], examples)
        ties = sum(is_tie(ex) and ex.size >= SIZE - 1 for ex in examples)
        print(f"tie decisions on 4- and 5-element arrays {ties / len(examples):.1%} of them")


if __name__ == "__main__":
    main()
