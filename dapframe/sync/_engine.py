"""The sync engine: query jobs, parts streamed as they arrive, one dialect session per table.

For each table the engine reads the schema, asks the database where the table stands
(``table_sync``), migrates it in place if the schema moved on, starts the query job (a snapshot
for ``initdb``, an incremental one from the watermark for ``syncdb``), and then downloads the
job's parts while the previous ones are being decoded and loaded: a part is handed to the
loader as soon as it is on disk (in object order), decoded into Arrow batches, and deleted
once loaded. At most ``lookahead`` parts wait on disk, compressed, so memory and disk stay
bounded whatever the table size.

Tables run concurrently (``concurrency`` at a time); the client's rate limiter keeps job
creation within the API's limits. A failing table never stops the others: each gets a
:class:`SyncReport`, with ``error`` set when it failed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pyarrow as pa

from dapframe.errors import (
    AuthenticationError,
    DapError,
    DatabaseError,
    OutOfRangeError,
    SnapshotRequiredError,
    TransportError,
    UsageError,
)
from dapframe.result import parse_table_name
from dapframe.sync._dialect import Dialect, LoadCounts, Session, SyncRow
from dapframe.sync._layout import TableLayout, checked_lengths, table_layout
from dapframe.wire import Job, QueryRequest

if TYPE_CHECKING:
    from dapframe.api import AsyncDapClient

__all__ = ["COMMANDS", "SyncReport", "run_tables"]

log = logging.getLogger("dapframe.sync")

#: What a table run may do: ``auto`` is initdb for a new table and syncdb otherwise.
COMMANDS: Final = ("initdb", "syncdb", "auto")
#: Transfer format of the parts: Parquet decodes fastest and keeps JSON objects as text.
SYNC_FORMAT: Final = "parquet"
#: Rows per decoded batch, and batches decoded ahead of the database: the working set (small
#: batches measured both faster and leaner than 64k-row ones on the 1M-row benchmark).
BATCH_ROWS = 8_192
PREFETCH = 2

_T = TypeVar("_T")


@dataclass
class SyncReport:
    """What one table's initdb or syncdb did.

    Attributes
    ----------
    table : str
        ``namespace.table``.
    command : str
        ``initdb``, ``syncdb``, or ``reinit`` (syncdb re-initialised the table because the
        API asked for a new snapshot).
    inserted, updated, deleted : int
        Rows inserted, updated and deleted in the replica.
    watermark : datetime or None
        The new ``table_sync`` timestamp (next incremental query's ``since``).
    schema_version : int or None
        Schema version now recorded.
    duration : float
        Seconds, from the schema request to the commit.
    database : str
        Where (the connection string with the password hidden).
    migrations : list of str
        In-place schema changes made first (new columns, enum values, types).
    error : str or None
        Why the table failed (then nothing changed for it).
    """

    table: str
    command: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    watermark: datetime | None = None
    schema_version: int | None = None
    duration: float = 0.0
    database: str = ""
    migrations: list[str] = field(default_factory=list)
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """True when the table succeeded."""
        return self.error is None

    @property
    def changed(self) -> int:
        """Rows inserted, updated or deleted."""
        return self.inserted + self.updated + self.deleted

    def summary(self) -> str:
        """One line for humans."""
        if self.error is not None:
            return f"{self.table}: failed: {self.error}"
        mark = self.watermark.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z") \
            if self.watermark else "-"
        return (f"{self.table}: {self.command} {self.inserted} inserted, {self.updated} updated, "
                f"{self.deleted} deleted; watermark {mark}; schema v{self.schema_version}; "
                f"{self.duration:.1f} s")


@dataclass
class _Options:
    command: str
    recover: bool
    format: str
    lookahead: int
    work_dir: Path | None
    deadline: float | None


async def run_tables(client: AsyncDapClient, dialect: Dialect, namespace: str,
                     tables: list[str], *, command: str = "auto", recover: bool = True,
                     concurrency: int = 4, format: str = SYNC_FORMAT, lookahead: int = 4,
                     work_dir: Path | None = None, deadline: float | None = None,
                     on_done: Callable[[SyncReport], None] | None = None) -> list[SyncReport]:
    """Run initdb/syncdb for several tables of a namespace, ``concurrency`` at a time.

    Parameters
    ----------
    client : AsyncDapClient
        The API client (its rate limiter paces job creation).
    dialect : Dialect
        The replica database.
    namespace : str
        E.g. ``canvas``.
    tables : list of str
        Table names, or ``["all"]`` for every table the API lists.
    command : {"initdb", "syncdb", "auto"}
        ``auto`` initialises new tables and synchronises initialised ones.
    recover : bool
        When the API answers snapshot-required or out-of-range to syncdb, re-initialise the
        table (built beside the old one and swapped in atomically). False: fail instead.
    concurrency : int
        Tables at once.
    format : str
        Transfer format of the parts (``parquet``, ``tsv``, ``csv``).
    lookahead : int
        Parts downloaded ahead of the loader, per table.
    work_dir : Path, optional
        Where parts wait to be loaded (a temporary folder by default; emptied afterwards).
    deadline : float, optional
        Most seconds to wait for each query job.
    on_done : callable, optional
        Called with each table's report as it finishes (on the event loop).

    Returns
    -------
    list of SyncReport
        One per table, in the order given; failed tables have ``error`` set. Authentication
        and transport errors (the same for every table) are raised instead.
    """
    if command not in COMMANDS:
        raise UsageError(f"unknown command {command!r}: choose one of {', '.join(COMMANDS)}")
    if concurrency < 1 or lookahead < 1:
        raise UsageError("concurrency and lookahead must be at least 1")
    if format not in ("parquet", "tsv", "csv"):
        raise UsageError(f"format {format!r} cannot be synchronised: use parquet, tsv or csv")
    parse_table_name(namespace + ".x")  # the namespace must be a plain identifier
    # One connection first: an unreachable or refused database is one error, not one per table.
    probe: Session = await _in_thread(dialect.session)
    await _in_thread(probe.close)
    if tables == ["all"]:
        tables = await client.list_tables(namespace)
    options = _Options(command, recover, format, lookahead, work_dir, deadline)
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> SyncReport:
        async with gate:
            start = time.monotonic()
            report = SyncReport(table=f"{namespace}.{name}", command=command,
                                database=dialect.info.display)
            try:
                parse_table_name(name, namespace)
                await _run_table(client, dialect, namespace, name, options, report)
            except (AuthenticationError, TransportError):
                raise
            except DapError as exc:
                report.error, report.exception = str(exc), exc
            except Exception as exc:  # one table's bug must not hide the others' results
                log.debug("%s.%s failed", namespace, name, exc_info=exc)
                report.error = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
                report.exception = exc
            report.duration = time.monotonic() - start
            if on_done is not None:
                on_done(report)
            return report

    results = await asyncio.gather(*(one(t) for t in tables), return_exceptions=True)
    for outcome in results:
        if isinstance(outcome, BaseException):
            raise outcome
    return [r for r in results if isinstance(r, SyncReport)]


async def _in_thread(func: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    return await asyncio.to_thread(func, *args, **kwargs)


async def _run_table(client: AsyncDapClient, dialect: Dialect, namespace: str, table: str,
                     options: _Options, report: SyncReport) -> None:
    resp = await client.get_schema(namespace, table)
    layout = table_layout(namespace, table, resp.schema, resp.version)
    session: Session = await _in_thread(dialect.session)
    try:
        # Decide before creating anything: a refused command leaves the database untouched.
        row = await _in_thread(session.sync_row, namespace, table)
        command = options.command
        if command == "auto":
            command = "syncdb" if row is not None else "initdb"
        report.command = command
        if command == "initdb" and row is not None:
            raise DatabaseError(f"{layout.name} is already initialised in {dialect.where}: run "
                                "syncdb to update it")
        if command == "syncdb" and row is None:
            raise DatabaseError(f"{layout.name} is not initialised in {dialect.where}: run "
                                "initdb first")
        await _in_thread(session.ensure_bookkeeping, namespace)
        exists = await _in_thread(session.table_exists, namespace, table)
        if exists:
            report.migrations += await _in_thread(session.migrate, layout)
        if command == "initdb":
            job = await _start(client, layout, None, options)
            layout = await _match_job_schema(client, session, layout, job, report)
            at = _required(job.at)
            counts = await _load(client, session, layout, job, options, incremental=False,
                                 apply=lambda b: session.initdb(layout, b, at))
            report.watermark = at
        else:
            assert row is not None
            try:
                if not exists:  # recorded but dropped by hand: rebuild it, like a recovery
                    raise _TableMissing(f"{layout.name} is recorded in table_sync but the "
                                        "table is missing")
                job = await _start(client, layout, row.timestamp, options)
            except (SnapshotRequiredError, OutOfRangeError, _TableMissing) as exc:
                if isinstance(exc, _TableMissing) and not options.recover:
                    raise DatabaseError(f"{exc}: run syncdb with recovery on (the default) "
                                        "or dropdb + initdb") from None
                if not options.recover:
                    kind = "a new snapshot" if isinstance(exc, SnapshotRequiredError) \
                        else "data from before the retention limit"
                    raise DatabaseError(
                        f"{layout.name}: the API cannot continue from "
                        f"{row.timestamp.isoformat()} (it needs {kind}): run syncdb with "
                        "recovery on (the default) or dropdb + initdb") from exc
                log.info("%s: %s; re-initialising into a shadow table", layout.name, exc)
                report.command = "reinit"
                job = await _start(client, layout, None, options)
                layout = await _match_job_schema(client, session, layout, job, report)
                at = _required(job.at)
                replace: SyncRow = row
                counts = await _load(client, session, layout, job, options, incremental=False,
                                     apply=lambda b: session.initdb(layout, b, at,
                                                                    replace=replace))
                report.watermark = at
            else:
                layout = await _match_job_schema(client, session, layout, job, report)
                until = _required(job.until)
                counts = await _load(client, session, layout, job, options, incremental=True,
                                     apply=lambda b: session.syncdb(layout, b, until, row))
                report.watermark = until
        report.inserted, report.updated, report.deleted = (counts.inserted, counts.updated,
                                                           counts.deleted)
        report.migrations += counts.changes
        report.schema_version = layout.version
    finally:
        await _in_thread(session.close)


class _TableMissing(Exception):
    """A table ``table_sync`` records is gone: syncdb re-initialises it."""


def _required(ts: datetime | None) -> datetime:
    if ts is None:  # pragma: no cover - the client checks complete jobs' key sets
        raise DatabaseError("the complete job carries no timestamp")
    return ts


async def _start(client: AsyncDapClient, layout: TableLayout, since: datetime | None,
                 options: _Options) -> Job:
    # Condensed keeps a JSON object in one csv/tsv column; it means nothing to parquet.
    mode = "condensed" if options.format in ("csv", "tsv") else None
    request = QueryRequest(format=options.format, mode=mode, since=since)
    job = await client.start_query(layout.namespace, layout.table, request)
    return await client.wait(job, deadline=options.deadline)


async def _match_job_schema(client: AsyncDapClient, session: Session, layout: TableLayout,
                            job: Job, report: SyncReport) -> TableLayout:
    """Use the schema version the job was produced with (it may have moved on meanwhile)."""
    if job.schema_version is None or job.schema_version == layout.version:
        return layout
    resp = await client.get_schema(layout.namespace, layout.table)
    if resp.version != job.schema_version:
        log.warning("%s: job has schema version %s, the API serves %s; loading with %s",
                    layout.name, job.schema_version, resp.version, resp.version)
    new = table_layout(layout.namespace, layout.table, resp.schema, resp.version)
    if await _in_thread(session.table_exists, layout.namespace, layout.table):
        report.migrations += await _in_thread(session.migrate, new)
    return new


async def _load(client: AsyncDapClient, session: Session, layout: TableLayout, job: Job,
                options: _Options, *, incremental: bool,
                apply: Callable[[Iterator[pa.RecordBatch]], LoadCounts]) -> LoadCounts:
    """Download the job's parts and load them as they arrive, in one database transaction."""
    root = Path(tempfile.mkdtemp(prefix="dapframe-sync-", dir=options.work_dir))
    feed = _PartFeed(client, job, root, options.lookahead)
    feeding = asyncio.create_task(feed.run())
    batches = feed.batches(layout, options.format, incremental)
    if session.bounded_text:
        batches = checked_lengths(batches, layout)
    stream = _Prefetch(batches)
    try:
        try:
            counts = await _in_thread(apply, iter(stream))
        except Exception as exc:
            # A database reading the batches through its own stream (DuckDB) reports a failed
            # download or decode as its own error ("transaction aborted"): say the real cause.
            if isinstance(stream.error, DapError) and stream.error is not exc:
                raise stream.error from exc
            raise
        await feeding
        return counts
    finally:
        feed.stop()
        stream.close()
        if not feeding.done():
            feeding.cancel()
        await asyncio.gather(feeding, return_exceptions=True)
        shutil.rmtree(root, ignore_errors=True)


class _PartFeed:
    """Downloads a job's parts ahead of the loader; hands them over in object order."""

    def __init__(self, client: AsyncDapClient, job: Job, root: Path, lookahead: int) -> None:
        self.client = client
        self.job = job
        self.root = root
        self.lookahead = lookahead
        self.parts: list[concurrent.futures.Future[Path]] = [
            concurrent.futures.Future() for _ in job.objects]
        self.loop = asyncio.get_running_loop()
        self.slots = asyncio.Semaphore(lookahead)
        self.stopped = threading.Event()

    async def run(self) -> None:
        tasks = []
        try:
            for index, obj in enumerate(self.job.objects):
                await self.slots.acquire()
                if self.stopped.is_set():
                    break
                tasks.append(asyncio.create_task(self._one(index, obj)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for fut in self.parts:  # nothing left waiting forever
                if not fut.done():
                    fut.set_exception(DatabaseError("download cancelled"))

    async def _one(self, index: int, obj: Any) -> None:
        fut = self.parts[index]
        try:
            single = dataclasses.replace(self.job, objects=(obj,))
            files = await self.client.download(single, self.root / f"{index:05d}")
            if not fut.done():
                fut.set_result(files[0])
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
            raise

    def _release(self) -> None:
        if not self.loop.is_closed():  # a run that failed may be torn down already
            self.loop.call_soon_threadsafe(self.slots.release)

    def stop(self) -> None:
        """Stop starting downloads (the loader is done or failed)."""
        self.stopped.set()
        for _ in range(len(self.parts)):
            self._release()

    def batches(self, layout: TableLayout, fmt: str, incremental: bool
                ) -> Iterator[pa.RecordBatch]:
        """Canonical batches, part after part, as they arrive (runs in the loader's thread)."""
        from dapframe.export._utf8 import checked_batches
        from dapframe.frames import read_batches

        for fut in self.parts:
            while True:
                try:
                    path = fut.result(timeout=0.2)
                    break
                except concurrent.futures.TimeoutError:
                    if self.stopped.is_set():
                        return
            try:
                # Invalid UTF-8 is refused here with its table and column, before any load.
                yield from checked_batches(read_batches(
                    [path], fmt, layout.read_schema, incremental=incremental,
                    batch_size=BATCH_ROWS), layout.name)
            finally:
                shutil.rmtree(path.parent, ignore_errors=True)
                self._release()


_DONE: Final = object()


class _Prefetch:
    """Decode ahead in a helper thread while the database ingests (a bounded queue)."""

    def __init__(self, batches: Iterator[pa.RecordBatch], depth: int | None = None) -> None:
        depth = PREFETCH if depth is None else depth
        self.batches = batches
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.worker = threading.Thread(target=self._produce, name="dapframe-decode",
                                       daemon=True)
        self.started = False
        self.error: BaseException | None = None  # what the decoding side raised, if anything

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        try:
            for batch in self.batches:
                if not self._put(batch):
                    return
            self._put(_DONE)
        except BaseException as exc:
            self._put(exc)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if not self.started:
            self.started = True
            self.worker.start()
        while True:
            item = self.queue.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                self.error = item
                raise item
            yield item

    def close(self) -> None:
        """Stop the helper thread (it notices within 0.2 s) and wait for it."""
        self.stop.set()
        if self.started:
            self.worker.join(timeout=10)
