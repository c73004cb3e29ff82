"""The `retune-tui` app: type a problem, watch the call tree grow, debug saved traces.

The app wires widgets together and turns keys into commands; the engine runs in the
``RunView`` worker, labels and panes are drawn by ``formatting``, and everything a run
depends on is one ``Settings`` value.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Input, Tree
from textual.worker import Worker, WorkerState

from retune_tui.app.export import export_text, write_text, write_trace
from retune_tui.app.jobs import Job, Settings, backend_name, compare_job, replay_job, solve_job
from retune_tui.app.screens.help import HelpScreen
from retune_tui.app.screens.prompts import PathScreen, SettingsScreen
from retune_tui.app.widgets.call_tree import CallTree
from retune_tui.app.widgets.panes import WELCOME, DetailPane, RunSummary
from retune_tui.app.widgets.problem_bar import ProblemBar
from retune_tui.app.widgets.run_view import RunView, one_line
from retune_tui.errors import InputError, UserError
from retune_tui.tasks import ProblemParseError
from retune_tui.trace import Event, read_trace_file

SEARCH_DELAY = 0.15  # seconds of quiet typing before the tree is filtered
DETAIL_DELAY = 0.2  # seconds between refreshes of the detail pane while text streams


class RetuneApp(App[None]):
    """Watch a model recurse, live — and debug its traces."""

    CSS_PATH = "app.tcss"
    TITLE = "retune-tui"
    AUTO_FOCUS = None  # closing a dialog leaves focus where it was (each dialog focuses its own field)
    # The footer shows the keys of a first visit and fits 80 columns; ? lists every key.
    BINDINGS = [
        Binding("i", "focus_input", "Problem", show=False),
        Binding("p", "pause", "Pause/resume"),
        Binding("n", "step", "Step", show=False),
        Binding("s", "stop", "Stop"),
        Binding("r", "again", "Again", show=False),
        Binding("c", "compare", "Compare"),
        Binding("o", "open", "Open"),
        Binding("w", "save", "Save"),
        Binding("e", "export(False)", "Export", show=False),
        Binding("E", "export(True)", "Export node", show=False),
        Binding("y", "replay", "Replay", show=False),
        Binding("slash,ctrl+f", "search", "Search"),  # Ctrl+F works in the problem input too
        Binding("t", "settings", "Model", show=False),
        Binding("escape", "escape", "Back / clear search", show=False),
        Binding("f1,question_mark", "help", "Help", key_display="F1"),  # the footer shows a key that works in the input
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, settings: Settings, trace: Path | None = None, problem: str | None = None,
                 replay_speed: float | None = None) -> None:
        super().__init__()
        self.settings = settings
        """What runs depend on: backend, task, method, speeds; the model picker edits it."""
        self.initial_trace = trace
        self.initial_problem = problem
        self.replay_speed = replay_speed
        """Replays follow the recorded times this many times faster (None: at once)."""
        self.last_job: Job | None = None
        self.failure: UserError | None = None
        """Why the trace or problem given at start could not be shown, or the first run failed
        (``--screenshot`` exits with it)."""
        self._lane: CallTree | None = None  # the lane focused last: what every action follows
        self._loader: Worker | None = None  # reading a trace file, before it replaces the lanes
        self._loading: Path | None = None  # the file it reads
        self._note = ""
        self._hint = ""
        self._search_timer = None
        self._detail_timer = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield ProblemBar(self.settings.task, self.settings.method, id="problem-bar")
        with Horizontal(id="main"):
            yield RunView(self.settings.clock, id="run")
            yield DetailPane(id="detail")
        yield Input(placeholder="search nodes by text (Enter: back to the tree, Esc: clear)", id="search")
        yield RunSummary(id="summary")
        yield Footer(show_command_palette=False)

    async def on_mount(self) -> None:
        self.sub_title = backend_name(self.settings.backend)
        self.watch(self.run_view, "state", lambda _: self.refresh_summary())
        if self.initial_trace is not None:
            self.open_trace(self.initial_trace)
        elif self.initial_problem:
            self.problem_bar.set_text(self.initial_problem)
            if not await self.solve(compare=False):
                self.failure = InputError(self.problem_bar.error or "not a problem")
                self.query_one("#problem", Input).focus()
        else:
            self.query_one("#problem", Input).focus()
        self.refresh_summary()

    # --- parts ----------------------------------------------------------------------------

    @property
    def run_view(self) -> RunView:
        return self.query_one(RunView)

    @property
    def problem_bar(self) -> ProblemBar:
        return self.query_one(ProblemBar)

    @property
    def lane(self) -> CallTree | None:
        """The lane every action follows (keys, detail pane, status line, save, export): the
        focused one, else the one focused last, else the first."""
        if isinstance(self.focused, CallTree):
            return self.focused
        if self._lane is not None and self._lane.is_mounted:
            return self._lane
        lanes = self.query(CallTree)
        return lanes.first() if lanes else None

    @property
    def loading(self) -> bool:
        """A trace file is being read (its tree replaces the lanes once it is checked)."""
        return self._loader is not None

    @property
    def busy(self) -> bool:
        """A trace file is being read, or a run is going (or paused)."""
        return self.loading or self.run_view.active

    # --- running --------------------------------------------------------------------------

    def _drop_loading(self) -> None:
        """Forget a trace file still being read: what the user did since comes first."""
        if self._loader is not None:
            self._loader.cancel()
            self._loader = self._loading = None
            self.refresh_summary()

    async def start(self, job: Job, *, read: bool = False) -> None:
        """Show ``job``'s lanes and run it; ``read``: it replays the trace file just read (any
        other start supersedes a file still being read)."""
        if not read:
            self._drop_loading()
        self.last_job = job
        self._lane = None
        self._note = self._hint = ""
        self._close_search(refilter=False)  # a new tree: a search of the old one would hide it unasked
        self.query_one(DetailPane).show_text(WELCOME)
        timed = job.kind != "replay" or job.lanes[0].replay_speed is not None
        await self.run_view.start(job, follow=timed)
        self.screen.set_class(len(job.lanes) > 1, "-compare")
        self.refresh_summary()

    async def solve(self, compare: bool, paused: bool = False) -> bool:
        """Solve (or compare on) the typed problem; False when the text does not parse."""
        bar = self.problem_bar
        if bar.check() is None:
            return False
        build = compare_job if compare else solve_job
        try:
            job = build(self.settings, bar.text, bar.task, bar.method)
        except ProblemParseError as exc:
            bar.show(str(exc), error=True)
            return False
        await self.start(job.again(paused=paused))
        return True

    async def on_problem_bar_problem_submitted(self, message: ProblemBar.ProblemSubmitted) -> None:
        await self.solve(compare=False)

    def on_run_view_events_arrived(self, message: RunView.EventsArrived) -> None:
        # The detail pane re-lays itself out when its text grows: a few times a second is
        # enough to watch text stream, and keeps each frame cheap while a model writes.
        if self._detail_timer is None:
            self._detail_timer = self.set_timer(DETAIL_DELAY, self._detail_due)
        self.refresh_summary()

    def _detail_due(self) -> None:
        self._detail_timer = None
        self.refresh_detail()

    def on_run_view_run_ended(self, message: RunView.RunEnded) -> None:
        if message.run != self.run_view.run:
            return
        if message.error:
            self._note = message.error
            self.notify(message.error, title="run failed", severity="error", timeout=8)
            if message.run == 1 and self.failure is None:
                self.failure = UserError(message.error)
        for lane in self.run_view.lanes:
            if lane.skipped:
                self.notify(f"{lane.skipped} events did not fit the tree and were skipped", severity="warning")
            if lane.cursor_key is None and lane.traces:
                lane.go_to((min(lane.traces), 0))
        self.refresh_detail()
        self.refresh_summary()

    def on_tree_node_highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.control is self.lane:  # other lanes' cursors move too while they run
            self.refresh_detail()
            self.refresh_summary()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Tabbing to another lane makes it the one the detail pane and the keys follow."""
        if isinstance(event.widget, CallTree) and event.widget is not self._lane:
            self._lane = event.widget
            self.refresh_detail()
            self.refresh_summary()

    def refresh_detail(self) -> None:
        panes = self.query(DetailPane)  # empty while the app shuts down and a timer fires late
        lane = self.lane if panes else None
        if lane is not None and lane.cursor_key is not None:
            panes.first().show_node(lane, lane.cursor_key)

    def refresh_summary(self) -> None:
        summaries, views = self.query(RunSummary), self.query(RunView)
        if not summaries or not views:
            return
        lane = self.lane
        key = lane.cursor_key if lane is not None else None
        hint = f"opening {self._loading}…" if self._loading is not None else self._hint
        summaries.first().show(views.first().state, lane, key, self._note, hint)

    # --- run control keys -----------------------------------------------------------------

    def action_focus_input(self) -> None:
        self.query_one("#problem", Input).focus()

    def action_pause(self) -> None:
        view = self.run_view
        if view.state == "running":
            view.pause()
        elif view.state == "paused":
            view.resume()
        else:
            self.notify("nothing is running: Enter solves, n starts one segment at a time", timeout=3)

    async def action_step(self) -> None:
        if self.run_view.active:
            self.run_view.step()
        elif await self.solve(compare=False, paused=True):
            self.run_view.step()

    def action_stop(self) -> None:
        self._drop_loading()
        self.run_view.stop()

    async def action_again(self) -> None:
        if self.last_job is None:
            self.notify("nothing to run again yet", timeout=3)
            return
        await self.start(self.last_job.again())

    async def action_compare(self) -> None:
        await self.solve(compare=True)

    # --- files ----------------------------------------------------------------------------

    def action_open(self) -> None:
        def opened(path: Path | None) -> None:
            if path is not None:
                self.open_trace(path)

        self.push_screen(PathScreen("open a trace (JSON Lines, from `retune solve --save` or w)",
                                    "trace.jsonl", "Enter opens, Esc cancels", purpose="open"), opened)

    def open_trace(self, path: Path) -> None:
        """Read and check ``path`` in a worker; only a good trace replaces the lanes (a bad
        one is one line, and what was on screen stays, unsaved run and all)."""
        self._loading = path
        self._loader = self._read_trace(path)
        self.refresh_summary()

    @work(thread=True, exclusive=True, exit_on_error=False, group="files")
    def _read_trace(self, path: Path) -> list[Event]:
        return read_trace_file(path)[0]

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A trace file read (the engine's worker reports to ``RunView``)."""
        if event.worker is not self._loader or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR,
                                                                   WorkerState.CANCELLED):
            return
        path = self._loading
        if event.state == WorkerState.SUCCESS and path is not None:
            await self.start(replay_job(event.worker.result, replay_speed=self.replay_speed, title=path.name),
                             read=True)
        elif event.state == WorkerState.ERROR:
            error = event.worker.error
            self._note = one_line(error)
            self.notify(self._note, title="cannot open", severity="error", timeout=8)
            if self.last_job is None and self.failure is None:  # the trace given at start
                self.failure = error if isinstance(error, UserError) else UserError(self._note)
                self.query_one("#problem", Input).focus()
        self._loader = self._loading = None
        self.refresh_summary()

    async def action_replay(self) -> None:
        lane = self.lane
        if lane is None or not lane.events:
            self.notify("no trace to replay: solve or open one first", timeout=3)
            return
        await self.start(replay_job(list(lane.events), replay_speed=self.replay_speed or 1.0,
                                    title=f"replay: {str(lane.border_title or '').removeprefix('replay: ')}"))

    def action_save(self) -> None:
        lane = self.lane
        if lane is None or not lane.events:
            self.notify("no trace to save yet", timeout=3)
            return
        trace_events = list(lane.events)

        def save(path: Path | None) -> None:
            if path is not None:
                self.guarded(lambda: write_trace(path, trace_events),
                             f"saved {len(trace_events)} events of {lane.border_title} to {path}")

        self.push_screen(PathScreen(f"save the trace of {lane.border_title} (all its events, JSON Lines)",
                                    "trace.jsonl", "open it again with o, or `retune-tui FILE`"), save)

    def action_export(self, node: bool) -> None:
        """Export the whole tree (e), or the selected node's subtree (E)."""
        lane = self.lane
        key = lane.cursor_key if lane is not None else None
        if lane is None or key is None:
            self.notify("select a node first", timeout=3)
            return
        trace = lane.traces[key[0]]
        default = (f"node-{key[1]}.md" if len(lane.traces) == 1 else f"node-{key[0]}-{key[1]}.md") if node \
            else f"trace-{key[0]}.json"

        def export(path: Path | None) -> None:
            if path is not None:
                text = export_text(trace, path, key[1] if node else None)
                what = f"node {key[1]}" if node else "the tree"
                self.guarded(lambda: write_text(path, text), f"exported {what} to {path}")

        what = f"node {key[1]} and its sub-calls" if node else "the whole tree"
        self.push_screen(PathScreen(f"export {what} of {lane.border_title}", default,
                                    ".md writes Markdown, anything else JSON"), export)

    def guarded(self, do, done: str) -> None:
        """Run a file operation; a failure is one line, never a traceback."""
        try:
            do()
        except (UserError, OSError) as exc:
            self.notify(str(exc), severity="error", timeout=8)
            return
        self.notify(done, timeout=4)

    # --- search, views, dialogs -----------------------------------------------------------

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("-visible")
        search.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "search":
            if self._search_timer is not None:
                self._search_timer.stop()
            self._search_timer = self.set_timer(SEARCH_DELAY, lambda: self.filter_lanes(event.value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "search":
            self.filter_lanes(event.value)
            if self.lane is not None:
                self.lane.focus()

    def filter_lanes(self, term: str) -> None:
        term = term.strip()
        lanes = list(self.query(CallTree))
        for lane in lanes:
            if lane.term != term:
                lane.term = term
                lane.rebuild()
        nothing = term and any(lane.traces for lane in lanes) and not any(lane.root.children for lane in lanes)
        self._hint = f"no node matches {term!r} (Esc clears the search)" if nothing else ""
        self.refresh_summary()

    def _close_search(self, refilter: bool = True) -> None:
        """Empty and hide the search; ``refilter``: show the lanes on screen whole again (not
        for lanes about to be replaced, which a rebuild would only slow down)."""
        search = self.query_one("#search", Input)
        if search.has_class("-visible") or search.value:
            if self._search_timer is not None:
                self._search_timer.stop()
            with search.prevent(Input.Changed):
                search.value = ""
            search.remove_class("-visible")
            if refilter:
                self.filter_lanes("")

    def action_escape(self) -> None:
        self._close_search()
        if self.lane is not None:
            self.lane.focus()
        else:
            self.set_focus(None)  # out of the input, so the run keys work

    async def action_quit(self) -> None:
        self.run_view.stop()  # the worker wakes (even when paused), closes its generators, ends
        self.exit()

    def action_settings(self) -> None:
        def chosen(settings: Settings | None) -> None:
            if settings is None:
                return
            model = settings.backend.model
            if model is not None and model.adapter and model != self.settings.backend.model:
                # A new adapter brings its task and method, as on the command line.
                try:
                    task, method = settings.backend.defaults(None, None)
                except UserError as exc:
                    self.notify(str(exc), severity="error", timeout=8)
                    return
                if task is not None:
                    settings = replace(settings, task=task, method=method)
                    self.problem_bar.choose(task, method)
            self.settings = settings
            self.sub_title = backend_name(settings.backend)
            self.notify(f"model: {self.sub_title} (from the next problem solved; r repeats the last run as it was)",
                        timeout=4)

        self.push_screen(SettingsScreen(self.settings), chosen)

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.BINDINGS))
