"""What a run is: one or more lanes, each a stream of trace events (plain Python).

A lane is built on the UI thread as a recipe and opened in the worker thread, so model
loading never blocks the screen (a trace file is read and checked before its job is made,
so a bad file never replaces what is on screen). Solving, comparing and replaying are all
lanes; the worker does not know which.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from retune_tui.engine import Generator, Limits, OracleGenerator, Runner
from retune_tui.solving import Backend
from retune_tui.tasks import METHODS, Method, Task, parse_problem
from retune_tui.trace import Event

#: Opens a lane's events in the worker thread, given the generator cache and the run's
#: clock (which leaves out the time the run was paused).
Opener = Callable[["GeneratorCache", Callable[[], float]], Iterator[Event]]


def default_backend(device: str = "auto") -> Backend:
    """The backend ``retune-tui`` opens on when no model is named: the bundled model in
    ``assets/`` once it is there (an adapter per task and method, picked per problem),
    else the oracle. The one place that decides it."""
    from retune_tui import bundled

    if bundled.base_dir() is not None and bundled.adapters():
        return Backend(bundled=True, device=device)
    return Backend()


def backend_name(backend: Backend) -> str:
    """A short name for titles: ``oracle``, ``bundled model``, or the base (and adapter)."""
    if backend.model is None:
        return backend.name
    name = Path(backend.model.base).name or backend.model.base
    if backend.model.adapter:
        name += f" + {Path(backend.model.adapter).name}"
    return name


@dataclass(frozen=True)
class Settings:
    """Everything a run depends on; the app holds one and the picker edits it.

    Attributes:
        backend: what writes the segments (oracle or a model).
        task: the task, or None to recognise it from the typed text.
        method: the format the model writes.
        versus: a second backend (another adapter) to compare with; None compares
            the three methods instead.
        tokens_per_second: how fast the oracle's text is shown (None: at once).
        chars_per_step: characters per oracle step, so its text streams like a model's.
        limits: budgets per problem.
        clock: the runs' base clock (tests inject a fake one for stable screenshots).
    """

    backend: Backend = field(default_factory=default_backend)
    task: str | None = None
    method: Method = Method.RETUNING
    versus: Backend | None = None
    tokens_per_second: float | None = 300.0
    chars_per_step: int = 3
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.perf_counter

    def __post_init__(self) -> None:
        if self.chars_per_step < 1:
            raise ValueError(f"chars_per_step must be at least 1, got {self.chars_per_step}")
        if self.tokens_per_second is not None and self.tokens_per_second <= 0:
            raise ValueError(f"tokens_per_second must be positive or None, got {self.tokens_per_second}")

    def pace(self, backend: Backend) -> float | None:
        """Only the oracle is slowed down; a model is shown as fast as it writes."""
        return self.tokens_per_second if backend.is_oracle else None


class GeneratorCache:
    """Generators by (backend, task, method), so a model is loaded once per session.

    Used only from the worker thread (the worker is exclusive, so one run at a time).
    """

    def __init__(self) -> None:
        self._generators: dict[tuple[Backend, str, Method], Generator] = {}

    def get(self, backend: Backend, task: Task, method: Method, chars_per_step: int) -> Generator:
        if backend.is_oracle:  # cheap, and holds per-run state: always fresh
            return OracleGenerator(task, method, chars_per_step=chars_per_step)
        key = (backend, task.name, method)
        if key not in self._generators:
            self._generators[key] = backend.generator(task, method)
        return self._generators[key]


@dataclass(frozen=True)
class Lane:
    """One column of the view: a title and how to open its events in the worker."""

    title: str
    open: Opener
    tokens_per_second: float | None = None
    replay_speed: float | None = None


@dataclass(frozen=True)
class Job:
    """A run: its lanes, and what to call it in the status line."""

    kind: str  # solve | compare | replay
    lanes: tuple[Lane, ...]
    problem: str = ""
    paused: bool = False

    def again(self, paused: bool = False) -> Job:
        return replace(self, paused=paused)


def solve_lane(settings: Settings, backend: Backend, task: Task, problem: Hashable, method: Method,
               title: str) -> Lane:
    def open_events(cache: GeneratorCache, clock: Callable[[], float]) -> Iterator[Event]:
        generator = cache.get(backend, task, method, settings.chars_per_step)
        runner = Runner(task, method, generator, settings.limits, clock=clock)
        return runner.events([problem])

    return Lane(title, open_events, tokens_per_second=settings.pace(backend))


def solve_job(settings: Settings, text: str, task: str | None = None, method: Method | None = None) -> Job:
    """Solve typed ``text`` with the settings' backend.

    Raises:
        ProblemParseError: the text is not a problem (of the chosen task).
    """
    the_task, problem = parse_problem(text, task or settings.task)
    the_method = method or settings.method
    title = f"{the_task.name} · {the_method} · {backend_name(settings.backend)}"
    return Job("solve", (solve_lane(settings, settings.backend, the_task, problem, the_method, title),),
               the_task.display(problem))


def compare_job(settings: Settings, text: str, task: str | None = None, method: Method | None = None) -> Job:
    """The same problem side by side: two backends (adapters), or the three methods."""
    the_task, problem = parse_problem(text, task or settings.task)
    if settings.versus is not None:
        lanes = tuple(
            solve_lane(settings, backend, the_task, problem, _method_for(backend, method or settings.method),
                       backend_name(backend))
            for backend in (settings.backend, settings.versus)
        )
    else:
        lanes = tuple(solve_lane(settings, settings.backend, the_task, problem, m, str(m)) for m in METHODS)
    return Job("compare", lanes, the_task.display(problem))


def _method_for(backend: Backend, fallback: Method) -> Method:
    """An adapter's own method (from its manifest), else the one chosen."""
    try:
        return backend.defaults(None, None)[1] if backend.model and backend.model.adapter else fallback
    except Exception:  # a missing manifest shows up when the model loads, as one line
        return fallback


def replay_job(events: list[Event], replay_speed: float | None = None, title: str = "replay") -> Job:
    """Show a trace's events (read and checked already): at once, or at their recorded
    pace times ``replay_speed``."""

    def open_events(cache: GeneratorCache, clock: Callable[[], float]) -> Iterator[Event]:
        return iter(events)

    return Job("replay", (Lane(title, open_events, replay_speed=replay_speed),), title)
