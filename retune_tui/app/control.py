"""Pause, step and stop for the engine worker, and the scheduler that paces its lanes.

Plain Python (no Textual): the worker thread calls ``RunControl.gate`` before each event
is shown, and the UI thread calls ``pause``/``resume``/``step``/``stop``. Only text
events are held back: structural events (a node opened, a value returned) are
consequences of the text before them, so a paused run always shows a whole segment.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from retune_tui.trace import CallIssued, Event, NodeClosed, TextGenerated


class Stopped(Exception):
    """Raised in the worker thread when the user stopped the run (or quit)."""


class RunControl:
    """Shared between the UI thread (which commands) and the worker (which obeys).

    Args:
        clock: the base clock; ``clock()`` of this object excludes time spent paused,
            so token rates and node times measure generation, not the user's pauses.
        paused: start paused (the "step" key on an idle app starts a run this way).
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, paused: bool = False) -> None:
        self._base = clock
        self._cond = threading.Condition()
        self._paused = paused
        self._stepping = False  # a step was asked: let text through until a segment ends
        self._stopped = False
        self._paused_total = 0.0

    # --- commands (UI thread) -----------------------------------------------------------

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._stepping = False
            self._cond.notify_all()

    def step(self) -> None:
        """Let one segment through, then hold again."""
        with self._cond:
            self._paused = True
            self._stepping = True
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def stopped(self) -> bool:
        return self._stopped

    # --- the worker side ----------------------------------------------------------------

    def clock(self) -> float:
        """Seconds on the base clock, less the time spent paused."""
        return self._base() - self._paused_total

    def gate(self, event: Event, before_wait: Callable[[], None] | None = None) -> float:
        """Wait while ``event`` must be held back; return the seconds waited.

        Raises:
            Stopped: the run was stopped (before or while waiting).
        """
        with self._cond:
            if isinstance(event, (CallIssued, NodeClosed)):
                self._stepping = False  # the segment that was stepped through has ended
            waited = 0.0
            if self._holds(event) and before_wait is not None:
                before_wait()
            while self._holds(event):
                start = self._base()
                self._cond.wait()
                waited += self._base() - start
            self._paused_total += waited
            if self._stopped:
                raise Stopped
            return waited

    def sleep(self, seconds: float) -> None:
        """Sleep, waking at once when stopped.

        Raises:
            Stopped: the run was stopped.
        """
        deadline = time.monotonic() + seconds
        with self._cond:
            while not self._stopped:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stopped:
                raise Stopped

    def _holds(self, event: Event) -> bool:
        return (not self._stopped and self._paused and not self._stepping
                and isinstance(event, TextGenerated))


# --- pacing ---------------------------------------------------------------------------


@dataclass
class Stream:
    """One lane's events and how fast they are shown.

    Attributes:
        events: the lane's event iterator (a runner's, or a file's).
        tokens_per_second: show text at most this fast (None: as fast as it comes).
        replay_speed: show events at their recorded times ``t``, this many times
            faster (None: ignore the recorded times).
    """

    events: Iterator[Event]
    tokens_per_second: float | None = None
    replay_speed: float | None = None
    due: float = 0.0
    start: float = field(default=0.0, repr=False)

    def next_due(self, event: Event, now: float) -> float:
        """When ``event`` (just fetched) should be shown."""
        if self.replay_speed:
            return max(now, self.start + event.t / self.replay_speed)
        return max(now, self.due)

    def shown(self, event: Event, now: float) -> None:
        """Book the time ``event`` takes on screen before the next one of this lane."""
        if self.tokens_per_second and isinstance(event, TextGenerated):
            self.due = max(self.due, now) + event.tokens / self.tokens_per_second


def schedule(streams: Sequence[Stream], control: RunControl,
             before_wait: Callable[[], None] | None = None) -> Iterator[tuple[int, Event]]:
    """Merge the lanes' events in the order they are due, sleeping until each is.

    Yields ``(lane, event)``; lanes run side by side (a slow lane does not hold a fast
    one back beyond its own pace). Ties go round-robin.

    Raises:
        Stopped: the run was stopped.
    """
    order = itertools.count()
    heap: list[tuple[float, int, int, Event]] = []
    now = time.monotonic()
    for lane, stream in enumerate(streams):
        stream.start = stream.due = now
        _push(heap, order, lane, stream, now)
    while heap:
        due, _, lane, event = heapq.heappop(heap)
        now = time.monotonic()
        if due > now:
            if before_wait is not None:
                before_wait()
            control.sleep(due - now)
        waited = control.gate(event, before_wait)
        if waited:
            for stream in streams:  # a pause shifts every lane, it does not make them race
                stream.due += waited
                stream.start += waited
            heap = [(d + waited, o, la, e) for d, o, la, e in heap]
            heapq.heapify(heap)
        yield lane, event
        now = time.monotonic()
        streams[lane].shown(event, now)
        _push(heap, order, lane, streams[lane], now)


def _push(heap: list, order: Iterator[int], lane: int, stream: Stream, now: float) -> None:
    event = next(stream.events, None)
    if event is not None:
        heapq.heappush(heap, (stream.next_due(event, now), next(order), lane, event))
