"""Trainer callbacks: the loss log and its curve, a time limit, a checkpoint on Ctrl-C and a
progress bar; and the learning-rate factor of a time-budgeted run."""

from __future__ import annotations

import contextlib
import json
import math
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback


class LossLog(TrainerCallback):
    """Appends every logged loss to a JSON Lines file (main process only); on resume,
    lines past the checkpoint's step are dropped so the log stays one curve."""

    def __init__(self, path: Path, resume_step: int = 0) -> None:
        self.path = path
        self.resume_step = resume_step
        self.last_loss: float | None = None
        self._start = time.perf_counter()
        self.tokens_at_start = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self._start, self.tokens_at_start = time.perf_counter(), state.num_input_tokens_seen or 0
        if not state.is_world_process_zero:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if self.path.exists() and self.resume_step:
            for line in self.path.read_text().splitlines():
                try:
                    record = json.loads(line)
                    if record["step"] <= self.resume_step:
                        kept.append(line)
                        self.last_loss = float(record["loss"])
                except (ValueError, KeyError, TypeError):
                    continue  # a line half-written when the run was killed
        self.path.write_text("".join(line + "\n" for line in kept))

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step >= state.max_steps or control.should_training_stop:
            control.should_log = True  # the last step is always logged: a run has a final loss
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero or not logs or "loss" not in logs:
            return
        self.last_loss = float(logs["loss"])
        elapsed = time.perf_counter() - self._start
        tokens = (state.num_input_tokens_seen or 0) - self.tokens_at_start
        record = {"step": state.global_step, "loss": round(self.last_loss, 6),
                  "learning_rate": logs.get("learning_rate"), "tokens": state.num_input_tokens_seen,
                  "tokens_per_s": round(tokens / elapsed, 1) if elapsed > 0 else None, "seconds": round(elapsed, 2)}
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")

    def plot(self, path: Path, title: str) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        records = [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]
        if not records:
            return
        fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
        ax.plot([r["step"] for r in records], [r["loss"] for r in records], color="#1f77b4")
        ax.set(xlabel="step", ylabel="loss (per example)", title=title, yscale="log")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)


_PROCESS = uuid.uuid4().hex  # tells this process's time marks from those restored out of a checkpoint


class TimeCosine:
    """The learning-rate factor of ``scheduler = "cosine_time"``: a linear warmup over
    ``warmup`` steps, then cosine from 1 to 0 over ``minutes`` of training time.

    A callable object, so torch's LambdaLR saves its attributes in each checkpoint and a
    resumed run continues from the training time already spent (not from zero).
    """

    now = staticmethod(time.perf_counter)  # a class attribute: not saved with the schedule's state

    def __init__(self, minutes: float, warmup: int) -> None:
        self.seconds = 60 * minutes
        self.warmup = warmup
        self.spent = 0.0
        self.process = ""
        self.mark = 0.0

    def __call__(self, step: int) -> float:
        now = self.now()
        if self.process == _PROCESS:
            self.spent += now - self.mark
        self.process, self.mark = _PROCESS, now
        ramp = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        return ramp * 0.5 * (1 + math.cos(math.pi * min(1.0, self.spent / self.seconds)))


class TimeLimit(TrainerCallback):
    """Stops training (and saves) after ``minutes``: of this run, or of the training time a
    `TimeCosine` has counted (which a resumed run carries over)."""

    def __init__(self, minutes: float | None, clock: TimeCosine | None = None) -> None:
        self.minutes = minutes
        self.clock = clock
        self.reached = False  # the run has had its minutes
        self._start = time.perf_counter()

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        spent = self.clock.spent if self.clock else time.perf_counter() - self._start
        if self.minutes is not None and spent > 60 * self.minutes:
            self.reached = True
            control.should_training_stop = True
            control.should_save = True
        return control


class StopOnInterrupt(TrainerCallback):
    """Ctrl-C ends the run after the step in progress, with a checkpoint saved, so running the
    same command again goes on from that step; a second Ctrl-C stops at once.

    Only while `watching` (around the Trainer's loop), only in the main thread of a one-process
    run (processes of a distributed run could stop at different steps and wait on each other
    for ever, so there Ctrl-C stops at once, as before), and only where SIGINT is Python's to
    handle (a background job that ignores it goes on ignoring it).
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002 - a signal handler's signature
        self.requested = True
        signal.signal(signal.SIGINT, self._previous)
        print("\nstopping after this step to save a checkpoint (Ctrl-C again stops at once)",
              file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) in (
                signal.SIG_IGN, None):
            yield
            return
        self._previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, self._previous)

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.requested:
            control.should_training_stop = True
            control.should_save = True
        return control


class ProgressBar(TrainerCallback):
    """A rich progress bar on the main process: step, loss, tokens/s, ETA. A run with a
    time budget (a `TimeCosine` clock) counts seconds of that budget instead of steps."""

    def __init__(self, clock: TimeCosine | None = None) -> None:
        self.clock = clock
        self._bar: Any = None
        self._task: Any = None
        self._loss = float("nan")
        self._start = 0.0
        self._tokens0 = 0

    def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if not state.is_world_process_zero:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        unit = TextColumn("s") if self.clock else TextColumn("")
        self._bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), unit,
                             TextColumn("{task.fields[info]}"), TextColumn("eta"), TimeRemainingColumn(),
                             transient=False)
        if self.clock:
            total, done = round(self.clock.seconds), self.clock.spent
        else:
            total, done = state.max_steps, state.global_step
        self._task = self._bar.add_task("train", total=total, completed=done, info="")
        self._start, self._tokens0 = time.perf_counter(), state.num_input_tokens_seen or 0
        self._bar.start()

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ANN001
        if logs and "loss" in logs:
            self._loss = float(logs["loss"])
            self.on_step_end(args, state, control)  # the bar shows it now, not a step later

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self._bar is None:
            return
        elapsed = max(time.perf_counter() - self._start, 1e-9)
        rate = ((state.num_input_tokens_seen or 0) - self._tokens0) / elapsed
        done = self.clock.spent if self.clock else state.global_step
        step = f"step {state.global_step}  " if self.clock else ""
        loss = "–" if math.isnan(self._loss) else f"{self._loss:.4f}"  # none logged yet
        self._bar.update(self._task, completed=done, info=f"{step}loss {loss}  {rate:,.0f} tok/s")

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.close()

    def close(self) -> None:
        """Stop the bar (also after an exception, so the terminal gets its cursor back)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
