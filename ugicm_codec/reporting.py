"""Per-file report lines of a batch command: plain lines (or a rich progress bar on a terminal),
JSON lines, and a final summary. Shared by the codec commands and ``ugicm eval``; imports no
torch (rich only when a progress bar is shown).
"""

from __future__ import annotations

import contextlib
import json
import sys

from .errors import EXIT_FAILED, ReaderGoneError


class Reporter:
    """Per-file lines (or a rich progress bar on a terminal), JSON lines, and a final summary.

    With ``--json`` the records are all that is printed (an error is a record too), so that a
    reader can parse every line. The summary counts the outputs actually written."""

    # A single file shows a bar of its tiles when it has at least this many (about 4 MP).
    TILE_BAR_MIN = 8

    def __init__(self, total: int, quiet: bool, as_json: bool, json_to_stderr: bool, verb: str):
        self.total, self.quiet, self.as_json, self.verb = total, quiet, as_json, verb
        self.json_stream = sys.stderr if json_to_stderr else sys.stdout
        self.done = self.failed = self.skips = 0
        self.closed = False
        self.progress = None
        self.human = not quiet and not as_json
        if total > 1 and self.human and sys.stderr.isatty():
            self._start_bar(verb, total)

    def _start_bar(self, description: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
            console=_console(),
        )
        self.task = self.progress.add_task(description, total=total)
        self.progress.start()

    def tile_progress(self):
        """For a single file on a terminal: a ``progress(done, total)`` callback that shows a
        bar of its tiles once the image is large enough to take a while; else None."""
        if self.total != 1 or not self.human or not sys.stderr.isatty():
            return None

        def tiles(done: int, total: int) -> None:
            if self.progress is None and total >= self.TILE_BAR_MIN:
                self._start_bar(f"{self.verb} (tiles)", total)
            if self.progress is not None:
                self.progress.update(self.task, completed=done, total=total)

        return tiles

    def ok(self, record: dict, line: str) -> None:
        self.done += 1
        if self.as_json:
            self._json(record)
        if self.human:
            self._print(line)
        self._advance()

    def skipped(self, name: str, target) -> None:
        if self.as_json:
            self._json({"input": name, "output": str(target), "skipped": True})
        if self.human:
            self._print(f"{name}: skipped, {target} exists")
        self.skips += 1
        self._advance()

    def error(self, name: str, message: str) -> None:
        self.failed += 1
        if self.as_json:
            self._json({"input": name, "error": message})
        else:
            self._print(f"ugicm: error: {name}: {message}", style="red")
        self._advance()

    def _json(self, record: dict) -> None:
        with _pipe_guard():
            print(json.dumps(record), file=self.json_stream, flush=True)

    def _print(self, line: str, style: str | None = None) -> None:
        with _pipe_guard():
            if self.progress is not None:
                self.progress.console.print(line, style=style, highlight=False)
            else:
                print(line, file=sys.stderr, flush=True)

    def _advance(self) -> None:
        if self.progress is not None and self.total > 1:
            self.progress.advance(self.task)

    def close(self, interrupted: bool = False) -> int:
        if self.closed:
            return EXIT_FAILED if self.failed else 0
        self.closed = True
        if self.progress is not None:
            self.progress.stop()
        if (self.total > 1 or interrupted) and self.human:
            skipped = f", {self.skips} skipped" if self.skips else ""
            left = self.total - self.done - self.failed - self.skips
            stopped = f", {left} not done (interrupted)" if interrupted and left else ""
            with _pipe_guard():
                print(
                    f"{self.verb}: {self.done} of {self.total} done{skipped}, {self.failed} failed{stopped}",
                    file=sys.stderr,
                )
        return EXIT_FAILED if self.failed else 0


def _console():
    from rich.console import Console

    return Console(stderr=True)


@contextlib.contextmanager
def _pipe_guard():
    try:
        yield
    except BrokenPipeError:
        raise ReaderGoneError("the reader of our output closed the pipe") from None
