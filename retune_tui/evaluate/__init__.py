"""`retune eval`: the paper's measurement (accuracy by size, in and out of distribution),
where recursions break, and the teacher-forced check; `retune report` renders results again."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from retune_tui.engine import Limits, OracleGenerator
from retune_tui.engine.loading import ModelSpec, check_adapter_folder, check_device_name, dtype_name
from retune_tui.errors import InputError
from retune_tui.evaluate.accuracy import RunResult, Subject, evaluate_subject, merge
from retune_tui.files import atomic_write_text
from retune_tui.manifest import Manifest, full_model_manifest
from retune_tui.tasks import get_method, get_task
from retune_tui.trace import Trace, write_events

#: The file ``--failures`` gets of a model's wrong teacher-forced segments (``retune train --data`` takes it).
TEACHER_WRONG = "-teacher-wrong.jsonl"


@dataclass
class EvalConfig:
    """What to evaluate and how.

    Attributes:
        adapters: adapter directories (each with its manifest); one line each.
        base: the base model the adapters sit on.
        whole_model: evaluate ``base`` itself, no adapter: a full fine-tune (its manifest
            says its task and method) or any causal LM, prompted for ``task``/``methods``.
        oracle: also (or only) evaluate the oracle, for ``task``/``methods``.
        task, methods: what the oracle and a model without a manifest solve (adapters say their own).
        sizes: problem sizes (default: the task's evaluation range).
        n: problems per size; seed: which problems.
        teacher: also run the teacher-forced check (models only), on the first ``teacher_n``
            problems of each size (default: the first 20 of the ``n``; more than ``n`` is allowed).
    """

    adapters: list[str] = field(default_factory=list)
    base: str | None = None
    whole_model: bool = False
    oracle: bool = False
    task: str | None = None
    methods: list[str] = field(default_factory=lambda: ["retuning"])
    sizes: list[int] | None = None
    n: int = 100
    seed: int = 0
    batch: int = 256
    limits: Limits = field(default_factory=Limits)
    teacher: bool = True
    teacher_n: int | None = None
    keep_failures: int = 3
    device: str = "auto"
    dtype: str = "auto"

    def __post_init__(self) -> None:
        if not self.adapters and not self.oracle and not self.whole_model:
            raise InputError("nothing to evaluate: give --adapter DIR (one or more), --model DIR or --oracle")
        if self.oracle and self.task is None:
            raise InputError("--oracle needs --task")
        where = [Path(adapter).resolve() for adapter in self.adapters]
        if len(set(where)) < len(where):
            raise InputError("an adapter is given twice")
        for adapter in self.adapters:  # a path of the wrong kind first: the base cannot help it
            check_adapter_folder(adapter)
        if (self.adapters or self.whole_model) and self.base is None:
            raise InputError("adapters need the --base model they were trained on")
        if self.whole_model and self.adapters:
            raise InputError("evaluate a model with its adapters or alone, not both")
        for name, value in (("--n", self.n), ("--batch", self.batch), ("--teacher-n", self.teacher_n)):
            if value is not None and value < 1:
                raise InputError(f"{name} must be at least 1")
        if self.sizes is not None:
            self.sizes = sorted(set(self.sizes))  # a size given twice is evaluated once
        if self.oracle and not self.methods:
            raise InputError("--methods names none; give baseline, scratchpad or retuning (comma-separated)")
        self.methods = list(dict.fromkeys(get_method(name).value for name in self.methods))  # each once
        check_device_name(self.device)  # with the oracle alone too, which runs on neither
        dtype_name(self.dtype)
        if self.task is not None:
            get_task(self.task)
        for adapter in self.adapters:  # all checked before the first is evaluated
            manifest = Manifest.read(adapter)
            if manifest is None:
                raise InputError(f"{adapter} has no retune.json manifest; cannot tell its task and method")
            if self.task is not None and manifest.task != self.task:
                raise InputError(f"--task {self.task}, but {adapter} was trained for {manifest.task}")


def count_problems(config: EvalConfig) -> int:
    """How many problems this process will solve (for a progress bar), without loading models."""
    tasks = [config.task] * len(config.methods) if config.oracle else []
    if config.whole_model:
        task, methods, _ = _whole_model_jobs(config)
        tasks += [task] * len(methods)
    for adapter in config.adapters:
        manifest = Manifest.read(adapter)
        tasks.append(manifest.task if manifest else config.task)
    rank, world = _shard()
    total = 0
    for task in tasks:
        if task is None:
            continue
        lo, hi = get_task(task).eval_lengths
        sizes = config.sizes or list(range(lo, hi + 1))
        total += len(range(rank, len(sizes) * config.n, world))
    return total


def _whole_model_jobs(config: EvalConfig) -> tuple[str, list[str], tuple[int, int] | None]:
    """The task, methods and trained sizes of a model evaluated without adapters: its
    manifest's (a full fine-tune made by `retune train --full`), else ``--task`` and
    ``--methods`` (no trained sizes)."""
    manifest = full_model_manifest(config.base) if config.base else None
    if manifest is not None:
        if config.task not in (None, manifest.task):
            raise InputError(f"{config.base} was trained for task {manifest.task!r}, not {config.task!r}")
        return manifest.task, [manifest.method], tuple(manifest.train_lengths)
    if config.task is None:
        other = Manifest.read(config.base) if config.base and Path(config.base).is_dir() else None  # skills
        made_for = f" (it was trained on {other.task!r})" if other else ""
        raise InputError(f"which task should {config.base} solve{made_for}? give --task")
    return config.task, config.methods, None


def _shard() -> tuple[int, int]:
    """(rank, world) under torchrun / accelerate launch, else (0, 1)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _subjects(config: EvalConfig) -> Iterator[Subject]:
    """Subjects one at a time: a model is loaded when its turn comes and dropped after."""
    if config.oracle:
        task = get_task(config.task)
        for name in config.methods:
            method = get_method(name)
            yield Subject("oracle", task, method, task.train_lengths, lambda t=task, m=method: OracleGenerator(t, m))
    if config.whole_model:
        yield from _whole_model_subjects(config)
    for adapter, label in zip(config.adapters, adapter_labels(config.adapters)):
        manifest = Manifest.read(adapter)
        assert manifest is not None  # EvalConfig checked every adapter's
        subject = _model_subject(config, adapter, label, manifest)
        yield subject
        subject.loaded = None  # the only reference to the model: it goes before the next one loads
        _free_memory()


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _device(config: EvalConfig) -> str:
    """``--device``; under several processes, ``auto`` is this process's own GPU."""
    _, world = _shard()
    if world > 1 and config.device == "auto":
        import torch

        return f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    return config.device


def _loaded_subject(label: str, task: str, method: str, trained: tuple[int, int] | None, loaded: object,
                    fast: object = None) -> Subject:
    """A model's subject: solved in numpy where ``fast`` (a ``NumpyGenerator``) is given, else by
    transformers; ``loaded`` (the transformers model) is for the teacher-forced check, or None."""
    from retune_tui.engine.hf import HFGenerator

    def make_generator():
        if fast is not None:
            return fast
        return HFGenerator(subject.loaded.model, subject.loaded.tokenizer, name=subject.loaded.name)

    subject = Subject(label, get_task(task), get_method(method), trained, make_generator, loaded)
    return subject


def _load(config: EvalConfig, spec: ModelSpec, task: str | None, method: str | None) -> tuple[object, object]:
    """The model of ``spec``: its numpy generator where numpy runs it (None otherwise), and the
    transformers model where the problems or the teacher-forced check need it (None otherwise)."""
    from retune_tui.engine import numpy_llama
    from retune_tui.engine.decoding import Sampling
    from retune_tui.engine.loading import load_model

    fast = numpy_llama.load(spec, task=task, method=method, sampling=Sampling(), batched=True)
    loaded = load_model(spec, task=task, method=method) if fast is None or config.teacher else None
    return fast, loaded


def adapter_labels(adapters: list[str]) -> list[str]:
    """Each adapter's name in tables and file names: its folder's, or as many of the folders
    above it as tell it from another of the same name (``a/dp``, ``b/dp``)."""
    parts = [Path(adapter).resolve().parts for adapter in adapters]
    for depth in range(1, max((len(p) for p in parts), default=1) + 1):
        labels = ["/".join(p[-depth:]) for p in parts]
        if len(set(labels)) == len(labels):
            break
    return labels


def _model_subject(config: EvalConfig, adapter: str, label: str, manifest: Manifest) -> Subject:
    fast, loaded = _load(config, ModelSpec(config.base, adapter, _device(config), config.dtype), manifest.task,
                         manifest.method)
    return _loaded_subject(label, manifest.task, manifest.method, tuple(manifest.train_lengths), loaded, fast)


def _whole_model_subjects(config: EvalConfig) -> Iterator[Subject]:
    """The model alone, once per method (loaded once)."""
    task, methods, trained = _whole_model_jobs(config)
    fast, loaded = _load(config, ModelSpec(config.base, None, _device(config), config.dtype), None, None)
    name = Path(config.base.rstrip("/")).name
    for method in methods:
        subject = _loaded_subject(name if len(methods) == 1 else f"{name} ({method})", task, method, trained, loaded,
                                  fast)
        yield subject
        subject.loaded = None
    loaded = fast = None
    _free_memory()


class Interrupted(Exception):
    """Ctrl-C stopped an evaluation in one process; ``results``: what was finished by then, the
    last one ``partial`` if it was stopped part way (none if it stopped between subjects)."""

    def __init__(self, results: list[RunResult]) -> None:
        super().__init__("interrupted")
        self.results = results


def run_eval(config: EvalConfig, *, on_done: Callable[[Trace], None] | None = None,
             failures_dir: Path | None = None, on_result: Callable[[RunResult], None] | None = None,
             ) -> list[RunResult]:
    """Evaluate every subject; merged over processes when sharded (rank 0 gets the results).
    ``on_done`` is called with each problem's trace, ``on_result`` with each subject's result
    (this process's share) as it is finished. Ctrl-C in one process raises `Interrupted` with
    the results finished by then."""
    rank, world = _shard()
    results: list[RunResult] = []
    try:
        stopped = _evaluate_subjects(config, results, rank, world, on_done, failures_dir, on_result)
    except KeyboardInterrupt:
        if world > 1:
            raise
        raise Interrupted(results) from None
    if stopped:
        raise Interrupted(results)
    if world > 1:
        results = _gather(results)
    return results


def _evaluate_subjects(config: EvalConfig, results: list[RunResult], rank: int, world: int,
                       on_done: Callable[[Trace], None] | None, failures_dir: Path | None,
                       on_result: Callable[[RunResult], None] | None = None) -> bool:
    """Each subject's result into ``results`` as it is finished; True where Ctrl-C stopped it
    (its last result ``partial`` if that was while problems were being solved)."""
    for subject in _subjects(config):
        sizes = config.sizes or list(range(subject.task.eval_lengths[0], subject.task.eval_lengths[1] + 1))
        result, failures = evaluate_subject(subject, sizes, config.n, config.seed, limits=config.limits,
                                            batch=config.batch, shard=(rank, world), on_done=on_done,
                                            keep_failures=config.keep_failures)
        loaded = subject.loaded
        name = subject.label.replace("/", "-")
        if config.teacher and loaded is not None and rank == 0 and not result.partial:
            from retune_tui.evaluate.teacher import teacher_forced

            wrong: list[dict] = []
            try:
                result.teacher = teacher_forced(subject.task, subject.method, loaded.model, loaded.tokenizer, sizes,
                                                config.teacher_n or min(config.n, 20), config.seed,
                                                keep=config.keep_failures, every_wrong=wrong)
            except KeyboardInterrupt:  # every problem was solved: that result is whole, without the check
                if world > 1:
                    raise
                _keep(result, failures, failures_dir, name, rank, results, on_result)
                return True
            if failures_dir is not None and wrong:
                atomic_write_text(failures_dir / f"{name}{TEACHER_WRONG}",
                                  "".join(json.dumps(record) + "\n" for record in wrong))
        _keep(result, failures, failures_dir, name, rank, results, on_result)
        if result.partial:
            return True
    return False


def _keep(result: RunResult, failures: list[Trace], failures_dir: Path | None, name: str, rank: int,
          results: list[RunResult], on_result: Callable[[RunResult], None] | None = None) -> None:
    """A subject's result into ``results`` (and to ``on_result``), its failed traces into ``failures_dir``."""
    if failures_dir is not None and failures:
        events = [e for trace in failures for e in trace.events]
        write_events(failures_dir / f"{name}-failures.rank{rank}.jsonl", events)
    results.append(result)
    if on_result is not None:
        on_result(result)


def _gather(results: list[RunResult]) -> list[RunResult]:
    import torch.distributed as dist

    if not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    everyone: list[list[dict]] = [None] * dist.get_world_size()  # type: ignore[list-item]
    dist.all_gather_object(everyone, [r.to_json() for r in results])
    return [merge([RunResult.from_json(part[i]) for part in everyone]) for i in range(len(results))]
