"""The result hub: one query job's downloaded parts, its facts and its table schema.

A :class:`QueryResult` is what :func:`dapframe.snapshot` and :func:`dapframe.incremental`
return. Its verbs are named as Polars and DuckDB name theirs: :meth:`QueryResult.scan` (a
``polars.LazyFrame``, nothing loaded), :meth:`QueryResult.to_polars` (eager),
:meth:`QueryResult.to_arrow` (a streaming record-batch reader), :meth:`QueryResult.to_duckdb`
(a view over the parts) and :meth:`QueryResult.write`. As in Polars, ``read_*`` is the eager
twin of a lazy call: :func:`read_snapshot` and :func:`read_incremental` return a
``polars.DataFrame`` straight away, decoding each parquet part while the others still download.

The verbs import :mod:`dapframe.frames` and :mod:`dapframe.export` when called, so that this
module (and the client below it) never needs Polars or DuckDB installed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dapframe.errors import DapError, UsageError
from dapframe.schema import TableSchema
from dapframe.wire import FORMATS, Job

if TYPE_CHECKING:
    import duckdb
    import polars as pl
    import pyarrow as pa

    from dapframe.api import AsyncDapClient, DapClient, DownloadProgress, ProgressCallback
    from dapframe.config import DapConfig
    from dapframe.sync import SyncReport

__all__ = [
    "NAMINGS",
    "QueryResult",
    "QuerySpec",
    "afetch",
    "cache_dir",
    "incremental",
    "parse_table_name",
    "read_incremental",
    "read_snapshot",
    "snapshot",
]

#: Column naming schemes: bare names, or the official dotted labels (``key.id``, ``value.name``).
NAMINGS: tuple[str, ...] = ("plain", "dotted")

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_table_name(name: str, namespace: str | None = None) -> tuple[str, str]:
    """Split ``"canvas.accounts"`` into ``("canvas", "accounts")``.

    A bare table name needs ``namespace``. Names are checked so that they can never escape a
    directory or a SQL identifier.

    Raises
    ------
    UsageError
        If the name is malformed or the namespace is missing.
    """
    if namespace is not None:
        ns = namespace
        table = name[len(ns) + 1:] if name.startswith(ns + ".") else name
    else:
        ns, _, table = name.partition(".")
        if not table:
            raise UsageError(f"table {name!r} has no namespace: write it as 'canvas.{name}'")
    for part, what in ((ns, "namespace"), (table, "table")):
        if not _NAME_RE.match(part):
            raise UsageError(
                f"invalid {what} name {part!r}: use letters, digits and underscores "
                "(e.g. canvas.accounts)"
            )
    return ns, table


def cache_dir() -> Path:
    """Where downloads go by default: ``$DAPFRAME_CACHE_DIR`` or ``~/.cache/dapframe``."""
    env = os.environ.get("DAPFRAME_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dapframe"


@dataclass(frozen=True)
class QuerySpec:
    """What to fetch: a table, a transfer format, and a window for incremental queries.

    Parameters
    ----------
    namespace, table : str
        E.g. ``canvas`` and ``accounts``.
    format : str
        Transfer format: ``parquet`` (fastest to read), ``jsonl``, ``csv`` or ``tsv``.
    since, until : datetime, optional
        Incremental window (since, until]; ``since`` makes the query incremental. Aware
        datetimes only.
    """

    namespace: str
    table: str
    format: str = "parquet"
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        parse_table_name(f"{self.namespace}.{self.table}")
        if self.format not in FORMATS:
            raise UsageError(
                f"unknown format {self.format!r}: choose one of {', '.join(FORMATS)}"
            )
        for label, value in (("since", self.since), ("until", self.until)):
            if value is not None and value.tzinfo is None:
                raise UsageError(
                    f"{label}={value.isoformat()} has no time zone: pass an aware datetime, "
                    "e.g. datetime(2026, 11, 1, tzinfo=UTC)"
                )
        if self.until is not None and self.since is None:
            raise UsageError("until= needs since=: an incremental window starts at since")
        if self.since and self.until and self.until < self.since:
            raise UsageError(
                f"until={self.until.isoformat()} is before since={self.since.isoformat()}: "
                "swap them"
            )

    @property
    def incremental(self) -> bool:
        """True for an incremental query (``since`` given)."""
        return self.since is not None

    @property
    def name(self) -> str:
        """``namespace.table``."""
        return f"{self.namespace}.{self.table}"


@dataclass
class QueryResult:
    """One completed query job: its downloaded parts, its facts and its table schema.

    Attributes
    ----------
    spec : QuerySpec
        What was asked.
    job : Job
        The complete job (``at``, or ``since``/``until``; ``schema_version``; objects).
    files : list of Path
        The downloaded parts, in object order.
    schema : TableSchema
        The table's schema (types, nullability, enum values) used for every verb.
    naming : str
        Default column naming of the verbs: ``plain`` (``id``, ``name``; meta columns stay
        ``meta.ts``/``meta.action``) or ``dotted`` (``key.id``, ``value.name``).
    """

    spec: QuerySpec
    job: Job
    files: list[Path]
    schema: TableSchema
    naming: str = "plain"
    _duckdb_views: list[str] = field(default_factory=list, repr=False)
    _early: _EarlyFrames | None = field(default=None, repr=False)

    # -- facts ---------------------------------------------------------------------------
    @property
    def incremental(self) -> bool:
        """True when this is the result of an incremental query."""
        return self.spec.incremental

    @property
    def format(self) -> str:
        """The transfer format of the parts."""
        return self.spec.format

    @property
    def at(self) -> datetime | None:
        """Snapshot time (next incremental ``since``); None for an incremental result."""
        return self.job.at

    @property
    def since(self) -> datetime | None:
        """Start of an incremental window (exclusive)."""
        return self.job.since

    @property
    def until(self) -> datetime | None:
        """End of an incremental window (inclusive; next ``since``)."""
        return self.job.until

    @property
    def schema_version(self) -> int | None:
        """Schema version the job was produced with."""
        return self.job.schema_version

    @property
    def watermark(self) -> datetime | None:
        """Where the next incremental query starts: ``at`` or ``until``."""
        return self.job.until if self.incremental else self.job.at

    @property
    def key(self) -> list[str]:
        """Primary-key column names (in the result's naming)."""
        return [c.name if self.naming == "plain" else c.label for c in self.schema.key]

    def _naming(self, naming: str | None) -> str:
        naming = naming or self.naming
        if naming not in NAMINGS:
            raise UsageError(f"unknown naming {naming!r}: choose one of {', '.join(NAMINGS)}")
        return naming

    # -- verbs ---------------------------------------------------------------------------
    def to_arrow(self, *, naming: str | None = None,
                 batch_size: int = 65_536) -> pa.RecordBatchReader:
        """Stream the rows as Arrow record batches of the canonical, schema-derived types."""
        from dapframe.frames import read_batches

        return read_batches(self.files, self.format, self.schema, incremental=self.incremental,
                            naming=self._naming(naming), batch_size=batch_size)

    def scan(self, *, naming: str | None = None) -> pl.LazyFrame:
        """A ``polars.LazyFrame`` over the parts; nothing is read until it is collected."""
        from dapframe.frames import scan

        return scan(self, naming=self._naming(naming))

    def to_polars(self, *, naming: str | None = None) -> pl.DataFrame:
        """Read every part into one eager ``polars.DataFrame``.

        Raises
        ------
        DapError
            A part cannot be decoded (damaged on the way or on disk).
        """
        from polars.exceptions import PolarsError

        early, self._early = self._early, None  # frames decoded during the download: once
        try:
            if early is not None and self._naming(naming) == early.naming:
                return early.frame(self.files)
            return self.scan(naming=naming).collect()
        except PolarsError as exc:
            # Polars reads Parquet parts natively: its errors about them are one typed line.
            where = self.files[0].parent if self.files else "the result"
            raise DapError(f"cannot decode the {self.format} parts in {where}: "
                           f"{' '.join(str(exc).split())[:300]}: a part is damaged; delete "
                           "them (result.cleanup()) and fetch again") from exc

    def to_duckdb(self, con: duckdb.DuckDBPyConnection | None = None, name: str | None = None,
                  *, naming: str | None = None) -> duckdb.DuckDBPyRelation:
        """Create (or replace) a DuckDB view over the parts and return it as a relation.

        Parameters
        ----------
        con : duckdb.DuckDBPyConnection, optional
            Connection to create the view in; DuckDB's default in-memory connection if None.
        name : str, optional
            View name; ``<table>`` by default.
        """
        from dapframe.frames import to_duckdb

        return to_duckdb(self, con=con, name=name or self.spec.table,
                         naming=self._naming(naming))

    def write(self, path: str | os.PathLike[str], *, format: str = "parquet",
              naming: str | None = None) -> Path:
        """Write the typed rows to one file (parquet, csv, tsv or jsonl), atomically."""
        from dapframe.export import write

        return write(self, Path(path), format=format, naming=self._naming(naming))

    def apply_to(self, base: pl.LazyFrame | pl.DataFrame) -> pl.LazyFrame:
        """Apply this incremental result to a base frame: the table as of ``until``.

        See :func:`dapframe.frames.apply_changes`.
        """
        from dapframe.frames import apply_changes

        if not self.incremental:
            raise UsageError("apply_to() needs an incremental result: use incremental(...)")
        return apply_changes(base, self.scan(), key=self.key)

    def sync(self, connection_string: str | None = None) -> SyncReport:
        """Load this result into a database replica (official layout), in one transaction.

        A snapshot initialises the table; an incremental result is applied to a replica
        whose watermark equals its ``since``. See :func:`dapframe.sync.sync_result`.
        """
        from dapframe.sync import sync_result

        return sync_result(self, connection_string)

    def cleanup(self) -> None:
        """Delete the downloaded parts (the job folder)."""
        folders = {f.parent for f in self.files}
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)

    def __repr__(self) -> str:
        window = (f"since={self.since.isoformat() if self.since else None}, "
                  f"until={self.until.isoformat() if self.until else None}"
                  if self.incremental else f"at={self.at.isoformat() if self.at else None}")
        return (f"QueryResult({self.spec.name}, {'incremental' if self.incremental else 'snapshot'}"
                f", {window}, format={self.format!r}, parts={len(self.files)}, "
                f"schema_version={self.schema_version})")


async def afetch(
    client: AsyncDapClient,
    spec: QuerySpec,
    *,
    directory: str | os.PathLike[str] | None = None,
    naming: str = "plain",
    deadline: float | None = None,
    progress: ProgressCallback | None = None,
    decompress: bool = False,
    eager: bool = False,
) -> QueryResult:
    """Run one query job to completion and download its parts (async).

    Parts go to ``<directory>/job_<id>/`` (the official client's layout); ``directory``
    defaults to ``<cache_dir()>/<namespace>.<table>``. Parts already downloaded by an
    interrupted run of the same job are reused. With ``eager``, parquet parts are decoded
    into Polars frames as they land, for the next :meth:`QueryResult.to_polars`.
    """
    from dapframe.wire import QueryRequest

    if naming not in NAMINGS:
        raise UsageError(f"unknown naming {naming!r}: choose one of {', '.join(NAMINGS)}")
    # Condensed: a JSON object stays one column in csv/tsv, whatever its keys. The mode means
    # nothing to the other formats; leaving it out there matches the official client's query.
    mode = "condensed" if spec.format in ("csv", "tsv") else None
    request = QueryRequest(format=spec.format, mode=mode, since=spec.since, until=spec.until)
    # The schema and the job are independent: ask for both at once (one round trip less).
    schema, job = await asyncio.gather(client.get_schema(spec.namespace, spec.table),
                                       client.start_query(spec.namespace, spec.table, request))
    job = await client.wait(job, deadline=deadline)
    table_schema = TableSchema.from_json(spec.namespace, spec.table, schema.schema,
                                         schema.version)
    root = Path(directory) if directory is not None else cache_dir() / spec.name
    early = None
    if eager:
        _warm_polars()
    if eager and spec.format == "parquet" and not decompress:
        early = _EarlyFrames(root / f"job_{job.id}", table_schema, spec.incremental, naming,
                             progress)
        progress = early.on_progress
    try:
        files = await client.download(job, root / f"job_{job.id}", decompress=decompress,
                                      progress=progress)
    except BaseException:
        if early is not None:
            early.close()
        raise
    return QueryResult(spec=spec, job=job, files=list(files), schema=table_schema,
                       naming=naming, _early=early)


def _warm_polars() -> None:
    """Import Polars on a side thread while the job and the first bytes are on their way.

    A fresh process spends ~0.2 s importing Polars; an eager read needs it only when the first
    part lands, so the import overlaps with the network round trips instead of adding to them.
    """
    import sys

    if "polars" not in sys.modules:
        threading.Thread(target=_import_polars, name="dapframe-import", daemon=True).start()


def _import_polars() -> None:
    try:
        import polars  # noqa: F401
    except ImportError:  # the decoder says which extra to install
        pass


class _EarlyFrames:
    """Decodes parquet parts into typed Polars frames while the rest of the job downloads.

    The download's progress events name each part as it completes; its decoding starts then,
    on a small thread pool (Polars decodes in parallel too), so that the eager frame is ready
    about when the last part lands instead of a full read after it.
    """

    def __init__(self, folder: Path, schema: TableSchema, incremental: bool, naming: str,
                 progress: ProgressCallback | None) -> None:
        self.folder = folder
        self.schema = schema
        self.incremental = incremental
        self.naming = naming
        self._progress = progress
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="dapframe-decode")
        self._futures: dict[str, Future[pl.DataFrame]] = {}
        self._lock = threading.Lock()

    def on_progress(self, event: DownloadProgress) -> None:
        # Runs on the event loop's thread: only hand the part to the pool.
        if event.finished and event.file_name.endswith(".parquet"):
            with self._lock:
                if event.file_name not in self._futures:
                    self._futures[event.file_name] = self._pool.submit(
                        self._read, self.folder / event.file_name)
        if self._progress is not None:
            self._progress(event)

    def _read(self, path: Path) -> pl.DataFrame:
        from dapframe.frames import read_parquet_part

        return read_parquet_part(path, self.schema, incremental=self.incremental,
                                 naming=self.naming)

    def frame(self, files: Sequence[Path]) -> pl.DataFrame:
        """The parts' frames in object order, as one DataFrame (parts not seen read now)."""
        from dapframe.frames import polars_schema
        from dapframe.frames._polars import import_polars

        pl = import_polars()
        try:
            frames = []
            for path in files:
                with self._lock:
                    future = self._futures.pop(path.name, None)
                frames.append(future.result() if future is not None else self._read(path))
        finally:
            self.close()
        if not frames:
            return pl.DataFrame(schema=polars_schema(self.schema, incremental=self.incremental,
                                                     naming=self.naming))
        return pl.concat(frames, how="vertical", rechunk=False)

    def close(self) -> None:
        """Stop the pool (pending decodes are dropped)."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._futures.clear()


def _fetch_sync(spec: QuerySpec, *, client: DapClient | None, config: DapConfig | None,
                directory: str | os.PathLike[str] | None, naming: str, deadline: float | None,
                progress: ProgressCallback | None, eager: bool = False) -> QueryResult:
    from dapframe.api import DapClient

    # A client made here is closed here; a caller's client is left open for reuse.
    with nullcontext(client) if client is not None else DapClient(config) as c:
        return c.fetch(spec, directory=directory, naming=naming, deadline=deadline,
                       progress=progress, eager=eager)


def snapshot(
    table: str,
    *,
    namespace: str | None = None,
    format: str = "parquet",
    directory: str | os.PathLike[str] | None = None,
    naming: str = "plain",
    client: DapClient | None = None,
    config: DapConfig | None = None,
    deadline: float | None = None,
    progress: ProgressCallback | None = None,
) -> QueryResult:
    """Fetch a snapshot of a table: its current state, as a :class:`QueryResult`.

    Parameters
    ----------
    table : str
        ``"canvas.accounts"`` (or ``"accounts"`` with ``namespace="canvas"``).
    format : str
        Transfer format; ``parquet`` (default) is the fastest to read.
    directory : path, optional
        Where the parts go (``<directory>/job_<id>/``); default ``<cache_dir()>/<table>``.
    naming : str
        ``plain`` (``id``, ``name``) or ``dotted`` (``key.id``, ``value.name``).
    client : DapClient, optional
        A client to reuse; by default one is made from ``config`` or the ``DAP_*`` variables.
    deadline : float, optional
        Seconds to wait for the job before :class:`~dapframe.errors.JobTimeoutError`.
    progress : callable, optional
        Called with :class:`~dapframe.api.DownloadProgress` events.

    Examples
    --------
    >>> accounts = dapframe.snapshot("canvas.accounts")          # doctest: +SKIP
    >>> accounts.scan().filter(pl.col("workflow_state") == "active").collect()  # doctest: +SKIP
    """
    ns, name = parse_table_name(table, namespace)
    spec = QuerySpec(ns, name, format=format)
    return _fetch_sync(spec, client=client, config=config, directory=directory, naming=naming,
                       deadline=deadline, progress=progress)


def incremental(
    table: str,
    *,
    since: datetime,
    until: datetime | None = None,
    namespace: str | None = None,
    format: str = "parquet",
    directory: str | os.PathLike[str] | None = None,
    naming: str = "plain",
    client: DapClient | None = None,
    config: DapConfig | None = None,
    deadline: float | None = None,
    progress: ProgressCallback | None = None,
) -> QueryResult:
    """Fetch the changes of a table in (since, until] as a :class:`QueryResult`.

    Each changed key appears once, in its last version; hard deletes have
    ``meta.action == "D"``. Chain windows with ``result.until`` as the next ``since``. Other
    parameters as for :func:`snapshot`.
    """
    ns, name = parse_table_name(table, namespace)
    spec = QuerySpec(ns, name, format=format, since=since, until=until)
    return _fetch_sync(spec, client=client, config=config, directory=directory, naming=naming,
                       deadline=deadline, progress=progress)


def read_snapshot(
    table: str,
    *,
    namespace: str | None = None,
    format: str = "parquet",
    directory: str | os.PathLike[str] | None = None,
    naming: str = "plain",
    client: DapClient | None = None,
    config: DapConfig | None = None,
    deadline: float | None = None,
    progress: ProgressCallback | None = None,
) -> pl.DataFrame:
    """Fetch a snapshot straight into an eager ``polars.DataFrame``.

    The eager twin of :func:`snapshot` (as ``pl.read_parquet`` is of ``pl.scan_parquet``):
    ``snapshot(...).to_polars()`` in one call, faster because each parquet part is decoded
    while the others still download. Same dtypes as :meth:`QueryResult.scan`; parameters as
    for :func:`snapshot`. The parts stay in ``directory`` (the cache by default).

    Examples
    --------
    >>> df = dapframe.read_snapshot("canvas.submissions")           # doctest: +SKIP
    """
    ns, name = parse_table_name(table, namespace)
    spec = QuerySpec(ns, name, format=format)
    _warm_polars()  # before the client's login, the first round trip
    return _fetch_sync(spec, client=client, config=config, directory=directory, naming=naming,
                       deadline=deadline, progress=progress, eager=True).to_polars()


def read_incremental(
    table: str,
    *,
    since: datetime,
    until: datetime | None = None,
    namespace: str | None = None,
    format: str = "parquet",
    directory: str | os.PathLike[str] | None = None,
    naming: str = "plain",
    client: DapClient | None = None,
    config: DapConfig | None = None,
    deadline: float | None = None,
    progress: ProgressCallback | None = None,
) -> pl.DataFrame:
    """Fetch the changes in (since, until] straight into an eager ``polars.DataFrame``.

    The eager twin of :func:`incremental` (see :func:`read_snapshot`).
    """
    ns, name = parse_table_name(table, namespace)
    spec = QuerySpec(ns, name, format=format, since=since, until=until)
    _warm_polars()
    return _fetch_sync(spec, client=client, config=config, directory=directory, naming=naming,
                       deadline=deadline, progress=progress, eager=True).to_polars()
