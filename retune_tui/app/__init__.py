"""`retune-tui`: the Textual app (watch a model recurse live, debug saved traces).

``make_app`` builds the app for the command line and the tests alike; ``main`` only
parses arguments. Textual is imported when the app is built, not when this package is.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, NoReturn

from retune_tui.app.jobs import Settings, default_backend
from retune_tui.errors import InputError, UserError
from retune_tui.solving import Backend

if TYPE_CHECKING:
    from retune_tui.app.app import RetuneApp

__all__ = ["Start", "default_backend", "main", "make_app", "parse_args", "take_screenshot"]


def make_app(trace: Path | str | None = None, *, settings: Settings | None = None, problem: str | None = None,
             replay_speed: float | None = None) -> RetuneApp:
    """The app, opening ``trace`` (a JSON Lines file) or solving ``problem`` on start.

    Args:
        trace: a saved trace to show (all at once, or replayed with ``replay_speed``).
        settings: backend, task, method, speeds; the default is the oracle.
        problem: a problem to solve as soon as the app starts.
        replay_speed: replay ``trace`` at its recorded pace, this many times faster.
    """
    from retune_tui.app.app import RetuneApp

    return RetuneApp(settings or Settings(), Path(trace) if trace is not None else None, problem, replay_speed)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise InputError(f"{message} (see retune-tui --help)")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="retune-tui", description="Watch a model solve a problem recursively, live; "
                     "open saved traces to find where a recursion went wrong.")
    parser.add_argument("trace", nargs="?", type=Path, help="a trace file to open (JSON Lines, from "
                        "`retune solve --save` or the app's save key)")
    parser.add_argument("--base", "--model", help="base model: a local directory or a hub name; 'oracle' "
                        "writes the correct segments with no model; 'bundled' is the small model in assets/ "
                        "(default: the bundled model if it is there, else the oracle)")
    parser.add_argument("--adapter", type=Path, help="a LoRA adapter directory made by `retune train`")
    parser.add_argument("--versus", type=Path, help="a second adapter on the same base, for compare (c)")
    parser.add_argument("--task", help="addition, parity or dp (default: recognised from the typed text)")
    parser.add_argument("--method", "-m", help="baseline, scratchpad or retuning (default: the adapter's, "
                        "else retuning)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument("--problem", help="a problem to solve at once, e.g. '48213 + 90771'")
    parser.add_argument("--speed", type=float, default=300.0, help="oracle tokens per second, so its text "
                        "streams visibly (0: as fast as possible)")
    parser.add_argument("--replay", type=float, metavar="SPEED", help="replay the trace at its recorded "
                        "pace, SPEED times faster (default: show it at once)")
    parser.add_argument("--screenshot", type=Path, metavar="SVG", help="run without a terminal until the "
                        "problem is solved (or the trace shown), save an SVG screenshot, and exit")
    parser.add_argument("--overwrite", action="store_true", help="let --screenshot replace a file that exists")
    return parser


class Start(NamedTuple):
    """What to do on start-up, besides the settings."""

    trace: Path | None = None
    problem: str | None = None
    replay: float | None = None
    screenshot: Path | None = None


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, Start]:
    """The app's settings and start-up choices from the command line.

    Raises:
        InputError: a bad argument, in one line.
    """
    from retune_tui import bundled
    from retune_tui.engine.loading import ModelSpec, check_device_name
    from retune_tui.files import check_folder, check_output
    from retune_tui.tasks import get_method, get_task

    args = _parser().parse_args(argv)
    if args.trace is not None and args.trace.is_dir():
        raise InputError(f"{args.trace} is a folder; give a trace file (JSON Lines)")
    if args.trace is not None and not args.trace.is_file():
        raise InputError(f"no such trace file: {args.trace}")
    check_device_name(args.device)
    if args.speed < 0 or (args.replay is not None and args.replay <= 0):
        raise InputError("--speed must not be negative and --replay must be positive")
    for name, path in (("--adapter", args.adapter), ("--versus", args.versus)):
        if path is not None and path.is_file():
            raise InputError(f"{name}: {path} is a file; give the adapter's folder")
        if path is not None and not path.is_dir():
            raise InputError(f"{name}: no such adapter directory {path}")
    if args.base is None and (args.adapter is not None or args.versus is not None):
        args.base = bundled.base_for(args.adapter or args.versus)  # as `retune solve --adapter` does
        if args.base is None:
            raise InputError("--adapter needs the --base model it was trained on")
    if args.base in (None, "oracle", "bundled"):
        if args.adapter is not None or args.versus is not None:
            raise InputError("--adapter needs --base (the oracle and the bundled model take no adapter)")
        choices = {None: default_backend(args.device), "oracle": Backend(), "bundled": Backend(bundled=True,
                                                                                             device=args.device)}
        backend, versus = choices[args.base], None
    else:
        dtype = bundled.dtype_on(args.base, "auto")
        backend = Backend(ModelSpec(args.base, str(args.adapter) if args.adapter else None, args.device, dtype))
        versus = Backend(ModelSpec(args.base, str(args.versus), args.device, dtype)) if args.versus else None
    task_name = get_task(args.task).name if args.task else None
    task, method = backend.defaults(task_name, get_method(args.method) if args.method else None)
    if args.screenshot is not None:
        if args.trace is None and not args.problem:
            raise InputError("--screenshot needs a trace file or --problem")
        check_output(args.screenshot, overwrite=args.overwrite, option="--screenshot")
        check_folder(args.screenshot.parent, "--screenshot")
    elif args.overwrite:
        raise InputError("--overwrite is for --screenshot")
    settings = Settings(backend=backend, task=task, method=method, versus=versus,
                        tokens_per_second=args.speed or None)
    return settings, Start(args.trace, args.problem, args.replay, args.screenshot)


def take_screenshot(app: RetuneApp, path: Path, size: tuple[int, int] = (120, 36)) -> None:
    """Run ``app`` without a terminal until its first run ends, and save what it shows
    (whole, or not at all).

    Raises:
        UserError: the trace or problem to show is bad, the run failed, or ``path`` cannot
            be written (one line; nothing is saved).
    """
    from retune_tui.files import atomic_write_text

    shot: list[str] = []

    async def auto_pilot(pilot) -> None:
        app = pilot.app
        while app.busy:  # reading the trace, then showing it; or solving the problem
            await pilot.pause(0.05)
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)  # the last batch, and the detail pane's refresh
        if app.failure is None:
            shot.append(app.export_screenshot())
        app.exit()

    app.run(headless=True, size=size, auto_pilot=auto_pilot)
    if app.failure is not None:
        raise app.failure
    if not shot:
        raise UserError("the app ended before its screenshot was taken")
    try:
        atomic_write_text(path, shot[0])
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


def main(argv: Sequence[str] | None = None) -> None:
    try:
        settings, start = parse_args(argv)
        app = make_app(start.trace, settings=settings, problem=start.problem, replay_speed=start.replay)
        if start.screenshot is None:
            app.run()
            return
        take_screenshot(app, start.screenshot)
    except UserError as exc:
        print(f"retune-tui: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except OSError as exc:  # a path the system refuses outright (a name too long, say)
        print(f"retune-tui: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)
    print(f"saved {start.screenshot}")
