"""Progress display for a running sweep: a rich live bar, a notebook display, or throttled
plain text lines."""

from __future__ import annotations

import html
import importlib.util
import sys
import threading
import time
from typing import Any, TextIO

from .errors import ValidationError


class Progress:
    """How `metalab.run(..., progress=...)` shows a sweep: title, metrics, output stream.

    `display_metrics` entries are metric names with an optional format, e.g. `"loss:.4f"`.
    In Jupyter (no `stream` or `use_rich` given) one output shows a bar and the counts, as
    HTML and as text, updated in place and left on the final counts. Rich is used when
    installed and the stream is a terminal; otherwise one plain line is printed at most every
    `interval` seconds. The final counts end with how many runs failed and their first errors.
    """

    def __init__(
        self,
        title: str | None = None,
        display_metrics: list[str] | None = None,
        *,
        stream: TextIO | None = None,
        interval: float = 2.0,
        use_rich: bool | None = None,
    ):
        if title is not None and not isinstance(title, str):
            raise ValidationError(f"Progress title must be a string or None, got {title!r}")
        self.title = title
        if isinstance(display_metrics, str):
            raise ValidationError(
                f"display_metrics must be a list of metric names (with an optional format, "
                f"'loss:.3f'), got the string {display_metrics!r}: write [{display_metrics!r}]"
            )
        self.metrics = [_parse_metric(spec) for spec in (display_metrics or [])]
        if stream is not None and not callable(getattr(stream, "write", None)):
            raise ValidationError(
                f"Progress stream must be a text stream (with a write method: sys.stdout, a "
                f"file opened for writing, io.StringIO()) or None, got {stream!r}"
            )
        self.stream = stream
        if (
            isinstance(interval, bool)
            or not isinstance(interval, (int, float))
            or not 0 < interval < float("inf")
        ):
            raise ValidationError(
                f"Progress interval must be a number of seconds above 0, got {interval!r}"
            )
        self.interval = interval
        if use_rich is not None and not isinstance(use_rich, bool):
            raise ValidationError(
                f"Progress use_rich must be True, False or None, got {use_rich!r}"
            )
        if use_rich and importlib.util.find_spec("rich") is None:
            raise ValidationError("Progress(use_rich=True) needs rich: install metalab[rich]")
        self.use_rich = use_rich
        self._title = title or ""
        """What the display calls the sweep now: `title`, else the experiment id."""
        self._lock = threading.Lock()
        self._last = 0.0
        self._started = 0.0
        self._done_before = 0
        """Runs already done when the display started (a reconnected handle's): not part of
        the rate."""
        self._values: dict[str, _Running] = {name: _Running() for name, _ in self.metrics}
        self._rich: Any = None
        self._notebook: Any = None
        self._link: str | None = None
        self._summary: str | None = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    # ---------------------------------------------------------------- lifecycle
    def start(self, handle: Any) -> None:
        """Begin showing `handle`'s progress."""
        self._started = time.monotonic()
        first = handle.status
        self._done_before = first.completed + first.failed + first.cancelled
        self._title = self.title if self.title is not None else handle.experiment.experiment_id
        stream = self.stream or sys.stderr
        self._link = handle.dashboard_link
        if self.stream is None and self.use_rich is None and _in_notebook():
            from IPython.display import display

            self._notebook = display(self._frame(handle.status, final=False), display_id=True)
        elif self._want_rich(stream):
            self._start_rich(handle, stream)
        else:
            self._write(
                stream,
                f"{self._title}: {handle.status.total} runs"
                + (f", dashboard {handle.dashboard_link}" if handle.dashboard_link else "")
                + _jobs_note(handle.scheduler_queue),
            )
        if self.metrics:
            handle._sink.listeners.append(self._collect)
        self._ticker = threading.Thread(target=self._tick, args=(handle,), daemon=True)
        self._ticker.start()

    def _want_rich(self, stream: TextIO) -> bool:
        if self.use_rich is False:
            return False
        try:
            import rich  # noqa: F401
        except ImportError:
            if self.use_rich:
                raise ValidationError(
                    "Progress(use_rich=True) needs rich: install metalab[rich]"
                ) from None
            return False
        return bool(self.use_rich) or _is_terminal(stream)

    def _start_rich(self, handle: Any, stream: TextIO) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
        from rich.progress import Progress as RichProgress
        from rich.table import Column

        self._rich = RichProgress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            # the counts may be cut to fit the terminal, never the bar and the totals
            TextColumn(
                "{task.fields[detail]}",
                table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
            ),
            console=Console(file=stream),
            transient=False,
            expand=True,
        )
        if handle.dashboard_link:
            self._rich.console.print(f"{self._title}: dashboard {handle.dashboard_link}")
        if handle.scheduler_queue is not None:
            self._rich.console.print(f"{self._title}{_jobs_note(handle.scheduler_queue)}")
        self._rich.start()
        self._task = self._rich.add_task(self._title, total=handle.status.total, detail="")

    def update(self, handle: Any) -> None:
        """Refresh the display (throttled; cheap to call after every task)."""
        now = time.monotonic()
        if now - self._last < (0.1 if self._rich else self.interval):
            return
        with self._lock:
            self._last = now
            self._render(handle.status, final=False, queue=handle.scheduler_queue)

    def finish(self, handle: Any) -> None:
        """Show the final counts, and the failures when runs failed, and stop."""
        self._stop.set()
        self._summary = handle.failure_summary()
        with self._lock:
            self._render(handle.status, final=True, queue=handle.scheduler_queue)
            if self._rich is not None:
                self._rich.stop()
                if self._summary:
                    self._rich.console.print(f"{self._title}: {self._summary}")
                self._rich = None
            elif self._summary and self._notebook is None:
                self._write(self.stream or sys.stderr, f"{self._title}: {self._summary}")

    def redraw(self, handle: Any) -> None:
        """Show the final state again from the calling thread (a notebook cell keeps what its
        own thread displays, not what the sweep's thread displayed after the cell began)."""
        if self._notebook is not None:
            with self._lock:
                self._render(handle.status, final=True, queue=handle.scheduler_queue)

    def _tick(self, handle: Any) -> None:
        while not self._stop.wait(self.interval if self._rich is None else 0.5):
            self.update(handle)

    # ---------------------------------------------------------------- rendering
    @property
    def metric_names(self) -> tuple[str, ...]:
        """The names of the metrics this display shows."""
        return tuple(name for name, _ in self.metrics)

    def _collect(self, outcomes: list[Any]) -> None:
        if not self.metrics:
            return
        for outcome in outcomes:
            metrics = outcome.metrics
            for name, _ in self.metrics:
                if name in metrics:
                    self._values[name].add(metrics[name])

    def _detail(self, status: Any, queue: Any = None) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        done = status.completed + status.failed + status.cancelled
        parts = [f"ok {status.completed}", f"failed {status.failed}", f"running {status.running}"]
        if queue is not None and (queue.queued or queue.started) and done < status.total:
            parts.append(f"queued {queue.queued} | started {queue.started}")
        if status.skipped:
            parts.append(f"skipped {status.skipped}")
        if status.cancelled:
            parts.append(f"cancelled {status.cancelled}")
        parts.append(f"{max(done - self._done_before, 0) / elapsed:.1f} runs/s")
        for name, fmt in self.metrics:
            values = self._values[name]
            if values.count:
                mean = values.total / values.count
                parts.append(f"{name} {format(values.last, fmt)} (mean {format(mean, fmt)})")
        return " | ".join(parts)

    def _render(self, status: Any, final: bool, queue: Any = None) -> None:
        if self._notebook is not None:
            self._notebook.update(self._frame(status, final, queue))
            return
        if self._rich is not None:
            self._rich.update(self._task, completed=status.done, detail=self._detail(status, queue))
            return
        stream = self.stream or sys.stderr
        left = status.total - status.done
        elapsed = time.monotonic() - self._started
        done = status.completed + status.failed + status.cancelled - self._done_before
        eta = f", eta {left * elapsed / done:.0f}s" if done > 0 and left and not final else ""
        self._write(
            stream,
            f"{self._title}: {status.done}/{status.total} | {self._detail(status, queue)}{eta}",
        )

    def _frame(self, status: Any, final: bool, queue: Any = None) -> _Frame:
        """What a notebook shows: a bar and the counts, as HTML and as text."""
        detail = self._detail(status, queue)
        text = f"{self._title}: {status.done}/{status.total} | {detail}"
        lines = [text]
        if self._link:
            lines.append(f"dashboard: {self._link}")
        if final and self._summary:
            lines.append(self._summary)
        link = (
            f" <a href='{html.escape(self._link)}' target='_blank'>dashboard</a>"
            if self._link
            else ""
        )
        summary = (
            f"<div style='color:#b00'>{html.escape(self._summary)}</div>"
            if final and self._summary
            else ""
        )
        markup = (
            f"<div><progress value='{status.done}' max='{max(status.total, 1)}' "
            f"style='width:12em'></progress> <b>{html.escape(str(self._title))}</b>: "
            f"{status.done}/{status.total} | {html.escape(detail)}{link}"
            f"{summary}</div>"
        )
        return _Frame("\n".join(lines), markup)

    def _write(self, stream: TextIO, line: str) -> None:
        stream.write(line + "\n")
        stream.flush()


class _Running:
    """A displayed metric: its latest value, and the sum and count of its values (for the
    mean), not every value."""

    __slots__ = ("count", "last", "total")

    def __init__(self) -> None:
        self.last: Any = None
        self.total: Any = 0
        self.count = 0

    def add(self, value: Any) -> None:
        self.last = value
        self.total += value
        self.count += 1


class _Frame:
    """One state of a notebook's progress output: HTML for Jupyter, text for any viewer."""

    def __init__(self, text: str, markup: str):
        self._text, self._markup = text, markup

    def __repr__(self) -> str:
        return self._text

    def _repr_html_(self) -> str:
        return self._markup


def _in_notebook() -> bool:
    """Whether this process is a Jupyter kernel running the caller's code."""
    if "ipykernel" not in sys.modules:
        return False
    from IPython import get_ipython

    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def _is_terminal(stream: TextIO) -> bool:
    if _in_notebook():
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _parse_metric(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or not spec:
        raise ValidationError(
            f"display_metrics entries look like 'loss' or 'loss:.4f', got {spec!r}"
        )
    name, _, fmt = spec.partition(":")
    try:
        format(0.5, fmt)
    except ValueError:
        raise ValidationError(f"display metric {spec!r}: {fmt!r} is not a number format") from None
    return name, fmt


def make_progress(progress: Any, experiment: Any) -> Progress | None:
    """Turn `run(progress=...)` into a `Progress` (or None)."""
    if progress is False or progress is None:
        return None
    if progress is True:
        return Progress()
    if isinstance(progress, Progress):
        return progress
    raise ValidationError(f"progress must be True, False or a metalab.Progress, got {progress!r}")


def _jobs_note(queue: Any) -> str:
    """`, SLURM jobs 12, 13` for a sweep a batch scheduler runs; empty otherwise."""
    if queue is None or not queue.jobs:
        return ""
    return f", SLURM jobs {', '.join(queue.jobs)}"
