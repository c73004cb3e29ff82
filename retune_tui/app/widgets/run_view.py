"""The lanes of a run side by side, and the one thread worker that drives them.

The worker opens each lane's events (loading a model or reading a file happens there),
merges them in the order they are due, and posts them to this widget in batches of
about one frame, so a fast backend cannot flood the screen. Widgets are changed only
here, on the main thread, when a batch arrives.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from textual import work
from textual.containers import Horizontal
from textual.message import Message
from textual.reactive import reactive
from textual.worker import Worker, WorkerState, get_current_worker

from retune_tui.app.control import RunControl, Stopped, Stream, schedule
from retune_tui.app.jobs import GeneratorCache, Job
from retune_tui.app.widgets.call_tree import CallTree
from retune_tui.errors import UserError
from retune_tui.trace import Event

FRAME = 1 / 30  # seconds of events gathered into one message

IDLE, RUNNING, PAUSED, DONE, STOPPED, FAILED = "idle", "running", "paused", "done", "stopped", "error"


def one_line(error: BaseException) -> str:
    """A worker's error as the one line the user sees."""
    if isinstance(error, UserError):
        return str(error).splitlines()[0] if str(error) else type(error).__name__
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


class RunView(Horizontal):
    """One ``CallTree`` per lane of the current job, fed by the engine worker."""

    @dataclass
    class EventsArrived(Message):
        """A batch of events from the worker: ``(lane, event)`` in order."""

        run: int
        items: list[tuple[int, Event]]

    @dataclass
    class RunEnded(Message):
        """The worker finished: ``outcome`` is done, stopped or error (with ``error``)."""

        run: int
        outcome: str
        error: str | None = None

    state: reactive[str] = reactive(IDLE)
    """What the run is doing: idle, running, paused, done, stopped or error."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.clock = clock
        self.cache = GeneratorCache()
        self.job: Job | None = None
        self.run = 0
        self._control: RunControl | None = None
        self._worker: Worker | None = None
        # One run at a time touches the generators: a new run's worker waits here until the
        # run it replaced has closed its contexts (they share cached generators and keys).
        self._engine = threading.Lock()

    @property
    def lanes(self) -> list[CallTree]:
        return list(self.query_children(CallTree))

    @property
    def active(self) -> bool:
        return self.state in (RUNNING, PAUSED)

    # --- commands -------------------------------------------------------------------------

    async def start(self, job: Job, follow: bool = True) -> None:
        """Drop the current run and start ``job`` (its lanes replace the old ones)."""
        self.stop()
        self.run += 1
        self.job = job
        await self.remove_children()
        lanes = [CallTree(lane.title, id=f"lane-{i}") for i, lane in enumerate(job.lanes)]
        for lane in lanes:
            lane.follow = follow
        await self.mount_all(lanes)
        self.set_class(len(lanes) > 1, "-compare")
        lanes[0].focus()
        self._control = RunControl(self.clock, paused=job.paused)
        self.state = PAUSED if job.paused else RUNNING
        self._worker = self._drive(job, self._control, self.run)

    def pause(self) -> None:
        if self._control is not None and self.state == RUNNING:
            self._control.pause()
            self.state = PAUSED

    def resume(self) -> None:
        if self._control is not None and self.state == PAUSED:
            self._control.resume()
            self.state = RUNNING

    def step(self) -> None:
        """One more segment, then hold (pauses a running run first)."""
        if self._control is not None and self.active:
            self._control.step()
            self.state = PAUSED

    def stop(self) -> None:
        if self._control is not None:
            self._control.stop()

    # --- the worker (a thread) ----------------------------------------------------------

    @work(thread=True, exclusive=True, exit_on_error=False, group="engine")
    def _drive(self, job: Job, control: RunControl, run: int) -> str:
        """Iterate the job's events and post them in batches; returns done or stopped."""
        worker = get_current_worker()
        streams: list[Stream] = []
        batch: list[tuple[int, Event]] = []
        last = time.monotonic()

        def post() -> None:
            nonlocal batch, last
            if batch:
                self.post_message(self.EventsArrived(run, batch))
                batch = []
            last = time.monotonic()

        with self._engine:
            try:
                for lane in job.lanes:
                    streams.append(Stream(lane.open(self.cache, control.clock), lane.tokens_per_second,
                                          lane.replay_speed))
                for lane_index, event in schedule(streams, control, post):
                    batch.append((lane_index, event))
                    if worker.is_cancelled:
                        raise Stopped
                    if time.monotonic() - last >= FRAME:
                        post()
                return DONE
            except Stopped:
                return STOPPED
            finally:
                for stream in streams:  # a runner's generator frees its contexts when closed
                    close = getattr(stream.events, "close", None)
                    if close is not None:
                        close()
                post()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a run's end (or failure) is turned into one line for the user."""
        if event.worker is not self._worker:
            return
        if event.state == WorkerState.SUCCESS:
            outcome, error = str(event.worker.result), None
        elif event.state == WorkerState.ERROR:
            outcome, error = FAILED, one_line(event.worker.error)
        elif event.state == WorkerState.CANCELLED:
            outcome, error = STOPPED, None
        else:
            return
        for lane in self.lanes:  # (the worker's last batch came before this message)
            lane.end()
        if outcome == DONE and any(t.finished is None for lane in self.lanes for t in lane.traces.values()):
            outcome = STOPPED  # a replayed trace that was saved mid-run ends where it was stopped
        self.state = outcome
        self.post_message(self.RunEnded(self.run, outcome, error))

    # --- events -> lanes ----------------------------------------------------------------

    def on_run_view_events_arrived(self, message: EventsArrived) -> None:
        if message.run != self.run:
            message.stop()  # a batch from a run already replaced
            return
        lanes = self.lanes
        for lane, event in message.items:
            lanes[lane].apply(event)
        for lane in lanes:
            lane.flush()

    def on_unmount(self) -> None:
        self.stop()  # quitting mid-generation: the worker wakes, closes its generators, ends
