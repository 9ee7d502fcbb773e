"""Download progress in a terminal (rich), one bar per table: bytes and parts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dapframe.api import DownloadProgress


class TableProgress:
    """A rich progress display, or nothing at all when not wanted.

    Parameters
    ----------
    enabled : bool
        False for ``--non-interactive`` or when stderr is not a terminal: then every method
        is a no-op and nothing is printed.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}
        self._bytes: dict[str, dict[str, int]] = {}

    def __enter__(self) -> TableProgress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TransferSpeedColumn,
            )

            self._progress = Progress(
                TextColumn("{task.description:<32}"), BarColumn(), DownloadColumn(),
                TransferSpeedColumn(), TextColumn("{task.fields[parts]}"), TimeElapsedColumn(),
                console=Console(stderr=True), transient=False)
            self._progress.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._progress is not None:
            self._progress.stop()

    def table(self, name: str) -> Callable[[DownloadProgress], None] | None:
        """A progress callback for one table (None when disabled)."""
        if self._progress is None:
            return None
        task = self._progress.add_task(name, total=None, parts="")
        self._tasks[name] = task
        per_object: dict[str, int] = {}
        totals: dict[str, int] = {}

        def update(event: DownloadProgress) -> None:
            per_object[event.object_id] = event.bytes_done
            if event.bytes_total is not None:
                totals[event.object_id] = event.bytes_total
            total = sum(totals.values()) if len(totals) >= event.parts_total else None
            self._progress.update(task, completed=sum(per_object.values()), total=total,
                                  parts=f"{event.parts_done}/{event.parts_total} parts")

        return update

    def done(self, name: str, message: str) -> None:
        """Mark a table finished with a short message."""
        if self._progress is not None and name in self._tasks:
            self._progress.update(self._tasks[name], description=f"{name} {message}")
