"""Shared pieces for the app's tests: a fake clock, oracle traces, and waiting on the worker."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from retune_tui.app import make_app
from retune_tui.app.jobs import Settings
from retune_tui.engine import OracleGenerator, Runner
from retune_tui.solving import Backend
from retune_tui.tasks import Method, parse_problem
from retune_tui.trace import Event, Trace, write_events

SIZE = (120, 36)


class TickClock:
    """A clock that moves 1 ms each time it is read: the same times on every run."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def fast_settings(**changes) -> Settings:
    """The oracle at full speed, on a fake clock (exact and stable), even once a bundled
    model ships (it would be the app's default)."""
    return Settings(**{"backend": Backend(), "tokens_per_second": None, "clock": TickClock(), **changes})


def oracle_run(text: str, method: Method = Method.RETUNING, task: str | None = None,
               chars_per_step: int | None = 3, generator: OracleGenerator | None = None) -> tuple[Trace, list[Event]]:
    """The oracle's trace of one problem, and its events, straight from the engine."""
    the_task, problem = parse_problem(text, task)
    generator = generator or OracleGenerator(the_task, method, chars_per_step=chars_per_step)
    events: list[Event] = []
    traces = Runner(the_task, method, generator, clock=TickClock()).run([problem], on_event=events.append)
    return traces[0], events


class FaultyOracle(OracleGenerator):
    """The oracle, except that it adds 1 to the digit sum of one base case (to find)."""

    def segment(self, context: str) -> str:
        text = super().segment(context)
        if context.startswith("3 + 1\n"):
            return text.replace("Output 4", "Output 5")
        return text


async def settle(pilot, until: Callable[[], bool] | None = None, tries: int = 400) -> None:
    """Let the trace file load and the worker finish (or ``until`` hold), and the screen catch up."""
    app = pilot.app
    for _ in range(tries):
        if until is not None and until():
            break
        if until is None and not app.loading and app.run_view.state != "running":
            break
        await pilot.pause(0.01)
    if until is None:
        await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


async def type_problem(pilot, text: str, submit: bool = True) -> None:
    await pilot.click("#problem")
    await pilot.press(*text)
    if submit:
        await pilot.press("enter")


def run(coro) -> None:
    asyncio.run(coro)


@pytest.fixture
def tui() -> SimpleNamespace:
    """The helpers above, for test modules (conftest is not importable by name)."""
    return SimpleNamespace(TickClock=TickClock, fast_settings=fast_settings, oracle_run=oracle_run,
                           FaultyOracle=FaultyOracle, settle=settle, type_problem=type_problem, run=run,
                           SIZE=SIZE)


@pytest.fixture
def trace_file(tmp_path: Path) -> Callable[..., Path]:
    """Write the oracle's (or a given generator's) trace of problems to a JSONL file."""

    def write(*texts: str, name: str = "trace.jsonl", method: Method = Method.RETUNING,
              faulty: bool = False) -> Path:
        events: list[Event] = []
        for tree, text in enumerate(texts):
            task, problem = parse_problem(text)
            generator = (FaultyOracle if faulty else OracleGenerator)(task, method)
            runner = Runner(task, method, generator, clock=TickClock())
            events += list(runner.events([problem], first_tree=tree))
        path = tmp_path / name
        write_events(path, events)
        return path

    return write


@pytest.fixture
def app_factory():
    def build(trace: Path | None = None, **settings_changes):
        return make_app(trace, settings=fast_settings(**settings_changes))

    return build
