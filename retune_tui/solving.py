"""`retune solve`: one problem drawn live, or a file of problems batched with a progress bar."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from pathlib import Path

from retune_tui.engine import Generator, Limits, OracleGenerator, Runner
from retune_tui.engine.loading import ModelSpec
from retune_tui.errors import InputError, Stopped, UserError
from retune_tui.manifest import Manifest, full_model_manifest
from retune_tui.tasks import Task, get_method, parse_problem
from retune_tui.tasks.protocol import Method
from retune_tui.trace import Event, Trace, write_events

REFRESH = 1 / 15  # seconds between redraws of the live tree


@dataclass(frozen=True)
class Backend:
    """What writes the segments: the oracle, a model, or the bundled model (the adapter
    for the problem's task and method is picked when the task is known)."""

    model: ModelSpec | None = None
    bundled: bool = False
    device: str = "auto"
    dtype: str = "auto"
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    @property
    def is_oracle(self) -> bool:
        return self.model is None and not self.bundled

    @property
    def name(self) -> str:
        return "bundled model" if self.bundled else "oracle" if self.model is None else self.model.base

    def defaults(self, task: str | None, method: str | None) -> tuple[str | None, Method]:
        """The task and method to use: as asked, else as the adapter's manifest says (or a
        full fine-tune's own)."""
        if self.model is None:
            manifest = None
        elif self.model.adapter:
            manifest = Manifest.read(self.model.adapter)
        else:
            manifest = full_model_manifest(self.model.base)
        task = task or (manifest.task if manifest else None)
        return task, get_method(method or (manifest.method if manifest else "retuning"))

    def spec(self, task: Task, method: Method) -> ModelSpec | None:
        """The model that will solve ``task`` with ``method`` (None: the oracle)."""
        if not self.bundled:
            return self.model
        from retune_tui import bundled

        base, adapter = bundled.base_dir(), bundled.adapter_dir(task.name, method.value)
        if base is None or adapter is None:
            raise UserError(f"no bundled model for {task.name} / {method} in {bundled.assets_dir()}; "
                            "pass --base (and --adapter), or --model oracle")
        return ModelSpec(str(base), str(adapter), self.device, bundled.dtype_on(base, self.dtype))

    def generator(self, task: Task, method: Method, *, batched: bool = False) -> Generator:
        """What writes the segments of ``task`` with ``method``; ``batched``: for many
        problems at once. Small Llamas on the CPU run in numpy (see numpy_llama.py); otherwise a
        single problem runs on one CPU thread (see loading.py)."""
        spec = self.spec(task, method)
        if spec is None:
            return OracleGenerator(task, method)
        from retune_tui.engine.decoding import Sampling

        try:
            sampling = Sampling(self.temperature, self.top_p, self.seed)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        from retune_tui.engine import numpy_llama

        fast = numpy_llama.load(spec, task=task.name, method=method.value, sampling=sampling, batched=batched)
        if fast is not None:  # small Llamas on the CPU run in numpy, without waiting seconds for torch
            return fast
        from retune_tui.engine.hf import HFGenerator
        from retune_tui.engine.loading import load_model

        loaded = load_model(spec, task=task.name, method=method.value)
        if not batched:
            from retune_tui.engine.loading import threads_for_one_problem

            threads_for_one_problem(loaded.model)
        return HFGenerator(loaded.model, loaded.tokenizer, name=loaded.name, sampling=sampling)


def solve_one(text: str, save: Path | None, *, task: str | None, method: str | None, backend: Backend,
              limits: Limits) -> Trace:
    """Solve one problem, drawing its tree live; save the events if asked."""
    from rich.console import Console
    from rich.live import Live

    from retune_tui.render import trace_view

    task, the_method = backend.defaults(task, method)
    the_task, problem = parse_problem(text, task)
    runner = Runner(the_task, the_method, backend.generator(the_task, the_method), limits)
    events: list[Event] = []
    console = Console()
    trace: Trace | None = None
    last = 0.0
    # Off a terminal (piped, captured) only the finished tree is printed.
    with Live(console=console, auto_refresh=False, transient=True) if console.is_terminal else _nothing() as live:
        for event in runner.events([problem]):
            events.append(event)
            trace = runner.trace(event.tree)
            now = time.perf_counter()
            if live is not None and now - last >= REFRESH:
                live.update(trace_view(trace), refresh=True)
                last = now
    assert trace is not None
    console.print(trace_view(trace))
    if save is not None:
        write_events(save, events)
        console.print(f"[dim]saved {len(events)} events to {save}[/dim]")
    return trace


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield None


def read_problems(path: Path, task: str | None) -> list[tuple[Task, Hashable]]:
    """One problem a line; blank lines and lines starting with # are skipped."""
    problems = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # the file's contents: exit code 1, as for every bad content
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}); give one problem a line") from None
    except OSError as exc:
        raise InputError(f"cannot read problems {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                problems.append(parse_problem(line, task))
            except InputError as exc:
                raise UserError(f"{path}:{number}: {exc}") from None
    if not problems:
        raise UserError(f"{path} holds no problems")
    return problems


def solve_file(path: Path, out: Path | None, *, task: str | None, method: str | None, backend: Backend,
               limits: Limits, batch: int = 256) -> list[Trace]:
    """Solve every problem of a file, ``batch`` at a time per task, with a progress bar; trace N
    is the file's Nth problem, whatever its task. Ctrl-C keeps (and writes) the problems finished by then."""
    import dataclasses

    from rich.console import Console

    from retune_tui.render import progress_bar
    from retune_tui.trace import RunFinished

    task, the_method = backend.defaults(task, method)
    problems = read_problems(path, task)
    by_task: dict[str, tuple[Task, list[Hashable], list[int]]] = {}
    for index, (the_task, problem) in enumerate(problems):
        group = by_task.setdefault(the_task.name, (the_task, [], []))
        group[1].append(problem)
        group[2].append(index)
    events: list[Event] = []
    traces: list[Trace] = []
    interrupted = False
    start, loading = time.perf_counter(), 0.0
    with progress_bar("solving") as bar:
        job = bar.add_task("solve", total=len(problems))
        try:
            for the_task, group, indices in by_task.values():
                loaded = time.perf_counter()
                generator = backend.generator(the_task, the_method, batched=True)
                loading += time.perf_counter() - loaded
                runner = Runner(the_task, the_method, generator, limits)
                try:
                    for event in runner.events(group, batch=batch):
                        events.append(dataclasses.replace(event, tree=indices[event.tree]))
                        if isinstance(event, RunFinished):
                            bar.advance(job)
                finally:  # numbered as in the file, also when Ctrl-C stops it part way
                    for trace in runner.traces:
                        trace.tree = indices[trace.tree]
                    traces += runner.traces
        except KeyboardInterrupt:
            interrupted = True
            done = {e.tree for e in events if isinstance(e, RunFinished)}  # whole in the stream so far
            traces = [t for t in traces if t.tree in done]
            events = [e for e in events if e.tree in done]
            if not traces:
                raise
    traces.sort(key=lambda trace: trace.tree)
    seconds = time.perf_counter() - start - loading  # solving alone: the rate is the model's, not its loading's
    correct = sum(bool(t.finished and t.finished.correct) for t in traces)
    console = Console()
    loaded = f", after {loading:.2f}s loading" if loading >= 0.005 else ""
    console.print(f"{correct}/{len(traces)} correct ({100 * correct / len(traces):.1f}%) "
                  f"in {seconds:.2f}s ({len(traces) / seconds:.1f} problems/s{loaded})"
                  + (f", of the {len(traces)} of {len(problems)} finished before Ctrl-C" if interrupted else ""))
    if out is not None:
        write_events(out, events)
        console.print(f"[dim]wrote {len(traces)} traces to {out}[/dim]")
    if interrupted:
        raise Stopped("interrupted" + (f"; wrote the {len(traces)} problems finished to {out}" if out else ""))
    return traces
