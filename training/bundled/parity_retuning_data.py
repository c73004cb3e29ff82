"""The data of the bundled parity Re-Tuning adapter's four stages (the last two share a file).

    python training/bundled/parity_retuning_data.py runs/bundled

writes into that folder:

* ``parity-calls.jsonl`` (stage ``parity-retuning.toml``): only the contexts that make a call,
  20,000 lists of 2-21 bits drawn uniformly, each completed by its call. An adapter trained on
  calls and answers together never learned to copy an 18-21-bit list into its call (wrong
  in about 1 element in 3 at 21 bits, teacher-forced, after 10.5 GPU and 76 CPU minutes), while
  10 CPU minutes of calls alone copied every one of them;
* ``parity-echo.jsonl`` (stage ``.echo``): oracle examples of 1-21-bit problems with the
  paper's weighting, in which a parent's answer mostly *is* the value its call returned:
  every example that uses a returned value gets, half the time, a copy with that value
  changed (as `perturbed_returns` makes them), and four in five of those whose list starts
  with a 1 are left out. From oracle data alone a parent learns to count the 1s in its own
  list and ignore what came back (the returned value and the first bit each say nothing of
  the answer alone: it is their XOR); from this it learns to use the returned value, then
  the XOR;
* ``parity-long.jsonl`` (stages ``.long`` and ``.long2``): the echo examples plus a quarter as
  many call contexts of 16-21 bits, where the echo stage had left a few calls miscopied.

Every file is the same byte for byte on every run (fixed seeds).
"""

from __future__ import annotations

import sys
from pathlib import Path
from random import Random

from retune_tui.tasks import get_task
from retune_tui.tasks.parity import ParityProblem
from retune_tui.tasks.protocol import Method, returned_values
from retune_tui.train import dataset as ds

KEEP_STARTING_WITH_1 = 0.2
CHANGED = 0.5


def call_example(rng: Random, lo: int, hi: int) -> ds.TextExample:
    """A random list of lo-hi bits, as the context that calls its parity without the first bit."""
    task = get_task("parity")
    problem = ParityProblem(tuple(rng.randrange(2) for _ in range(rng.randint(lo, hi))))
    return ds.TextExample(task.prompt(problem, Method.RETUNING), task.oracle_step(problem, Method.RETUNING, []).text,
                          task.size(problem))


def echo_examples() -> list[ds.TextExample]:
    task = get_task("parity")
    rng = Random(1)
    kept = []
    for ex in ds.oracle_examples("parity", "retuning", (1, 21), 10000, 9, True):
        if not returned_values(ex.prompt):
            kept.append(ex)
            continue
        if task.parse(ex.prompt).bits[0] == 1 and rng.random() > KEEP_STARTING_WITH_1:
            continue
        kept.append(ex)
        if rng.random() < CHANGED:
            other = ds.changed_return(task, ex.prompt, ex.completion, rng)
            if other is not None:
                kept.append(ds.TextExample(*other, ex.size))
    return kept


def write(path: Path, examples: list[ds.TextExample]) -> None:
    ds.write_examples(path, examples)
    print(f"{len(examples)} examples written to {path}")


def main(folder: str) -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    calls = Random(0)
    write(out / "parity-calls.jsonl", [call_example(calls, 2, 21) for _ in range(20000)])
    echo = echo_examples()
    write(out / "parity-echo.jsonl", echo)
    long = Random(5)
    write(out / "parity-long.jsonl", echo + [call_example(long, 16, 21) for _ in range(len(echo) // 4)])


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/bundled")
