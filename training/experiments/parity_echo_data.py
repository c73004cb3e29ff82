"""Parity Re-Tuning data in which a parent's answer mostly *is* the value its call returned.

The first of the two CPU stages that taught the bundled parity adapter's parent to use what
came back (docs/results.md, "A parity parent that uses what came back"). Oracle examples of
1-21-bit problems with the paper's weighting; every example that uses a returned value
gets, half the time, a copy with that value changed (as `perturbed_returns` makes them);
four in five of those whose list starts with a 1 are left out, so that for most of them the
answer equals the returned value. A parent that has learned to write the returned value
can then learn the XOR with the first bit, which from oracle data alone it did not find
(the loss sat where the answer bit is a coin toss).

    python training/experiments/parity_echo_data.py runs/parity-echo.jsonl
    retune train --recipe training/experiments/parity-echo.toml
    retune train --recipe training/experiments/parity-xor.toml
"""

from __future__ import annotations

import json
import sys
from random import Random

from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import returned_values
from retune_tui.train import dataset as ds

KEEP_STARTING_WITH_1 = 0.2
CHANGED = 0.5


def main(out: str) -> None:
    task = get_task("parity")
    rng = Random(1)
    examples = ds.oracle_examples("parity", "retuning", (1, 21), 10000, 9, True)
    kept = []
    for ex in examples:
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
    with open(out, "w") as f:
        for ex in kept:
            f.write(json.dumps({"prompt": ex.prompt, "completion": ex.completion, "size": ex.size}) + "\n")
    print(f"{len(examples)} oracle examples, {len(kept)} written to {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/parity-echo.jsonl")
