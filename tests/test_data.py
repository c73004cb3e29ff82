"""Data sets from oracle traces: deterministic, re-weighted, de-duplicated, two formats."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from retune_tui import data
from retune_tui.errors import InputError
from retune_tui.tasks import get_task
from retune_tui.tasks.protocol import Method


def spec(**kw):
    base = dict(task="addition", method=Method.RETUNING, lengths=(1, 6), n=300, seed=3)
    base.update(kw)
    return data.DataSpec(**base)


def test_records_are_oracle_segments(tmp_path):
    path = tmp_path / "d.jsonl"
    stats = data.write_dataset(spec(), path, workers=1)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert stats.examples == len(records) and stats.problems == 300
    task = get_task("addition")
    for rec in records[:200]:
        assert task.oracle(rec["prompt"], Method.RETUNING) == rec["completion"]
        assert set(rec) == {"prompt", "completion", "size", "depth"}
        assert rec["size"] == task.size(task.parse(rec["prompt"]))


def test_same_data_whatever_the_number_of_workers(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CHUNK", 70)
    one, two = tmp_path / "1.jsonl", tmp_path / "2.jsonl"
    data.write_dataset(spec(), one, workers=1)
    data.write_dataset(spec(), two, workers=2)
    assert one.read_bytes() == two.read_bytes()
    data.write_dataset(spec(seed=4), two, workers=1)
    assert one.read_bytes() != two.read_bytes()


def test_reweighting_thins_long_and_repeats_short():
    plain = Counter(ex.size for ex in data.examples(spec(task="parity", lengths=(1, 10), n=4000)))
    weighted = Counter(ex.size for ex in data.examples(
        spec(task="parity", lengths=(1, 10), n=4000, weighting=data.Weighting(thin_long=0.5, short={1: 1.0}))))
    assert weighted[1] > plain[1] + 3000  # about one extra base case per problem
    tops = lambda c: c[10]  # noqa: E731 - only top levels have size 10
    assert tops(weighted) < 0.7 * tops(plain)


def test_addition_draws_every_pair_of_widths():
    task = get_task("addition")
    rng = __import__("random").Random(0)
    widths = Counter()
    for problem in data.sample_problems(task, spec(lengths=(1, 3), n=0), rng, 9000):
        widths[(len(problem.a.lstrip("0") or "0"), len(problem.b.lstrip("0") or "0"))] += 1
    assert len(widths) == 9 and min(widths.values()) > 700


def test_dedup_and_paper_format(tmp_path):
    path = tmp_path / "d.json"
    small = spec(lengths=(1, 2), n=2000)
    stats = data.write_dataset(small, path, fmt="paper", dedup=True, workers=1)
    records = json.loads(path.read_text())
    assert stats.duplicates > 0 and len(records) == stats.examples
    assert len({(r["input"], r["output"]) for r in records}) == len(records)
    assert set(records[0]) == {"input", "output"}
    lines = tmp_path / "d.jsonl"  # an example met at two depths is one example; across worker processes too
    as_lines = data.write_dataset(spec(lengths=(1, 2), n=data.CHUNK + 10), lines, dedup=True, workers=2)
    pairs = [(r["prompt"], r["completion"]) for r in map(json.loads, lines.read_text().splitlines())]
    assert as_lines.duplicates > 0 and len(set(pairs)) == len(pairs)


@pytest.mark.parametrize(("text", "expected"), [("1-15", (1, 15)), ("7", (7, 7)), (" 2 - 5 ", (2, 5))])
def test_parse_lengths(text, expected):
    assert data.parse_lengths(text) == expected


@pytest.mark.parametrize("text", ["0-3", "5-2", "a-b", "1-2-3", ""])
def test_bad_lengths(text):
    with pytest.raises(InputError, match="bad length range"):
        data.parse_lengths(text)


def test_a_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "d.jsonl"
    path.write_text("precious\n")

    def boom(args):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(data, "_chunk_lines", boom)
    with pytest.raises(RuntimeError):
        data.write_dataset(spec(), path, workers=1)
    assert path.read_text() == "precious\n" and list(tmp_path.iterdir()) == [path]


@pytest.mark.slow
def test_ctrl_c_with_worker_processes_is_one_line_and_leaves_no_file(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "big.jsonl"
    run = subprocess.Popen([sys.executable, "-m", "retune_tui.cli", "data", "addition", "--n", "300000",
                            "--out", str(out), "--workers", "2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    time.sleep(5)  # the workers are busy by then; the whole set takes about 40 s on two cores
    os.killpg(run.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    output, _ = run.communicate(timeout=120)
    assert run.returncode == 130 and output.strip() == "error: interrupted", output
    assert list(tmp_path.iterdir()) == []


def test_the_pool_makes_only_a_few_chunks_ahead_of_the_writer():
    """A huge --n streams: chunks are started as earlier ones are written, not all at once."""
    pulled = []

    def items():
        for i in range(1_000):
            pulled.append(i)
            yield i

    with data._Pool(2) as pool:
        results = pool.map(abs, items())
        assert [next(results) for _ in range(3)] == [0, 1, 2]
        assert len(pulled) <= 2 * 2 + 3
        assert list(results) == list(range(3, 1_000))
