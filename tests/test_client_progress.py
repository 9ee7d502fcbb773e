"""Download progress events and resuming an interrupted download, against the emulator."""

from __future__ import annotations

import asyncio
import gzip
import itertools
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import httpx
import pytest

from dapframe.api import (
    AsyncDapClient,
    DapClient,
    DownloadProgress,
    ProgressCallback,
    QueryRequest,
    RetryPolicy,
    RetryTransport,
)
from dapframe.emulator import Emulator
from dapframe.wire import Job
from tests.conftest import CLIENT_ID, CLIENT_SECRET

NS = "canvas"
FAST = RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05, retry_after_max=5.0)
STEP = 64 * 1024
#: Big enough for several objects of roughly 90 KB each with the emulator fixture.
TABLE = "submissions"


class Recorder(httpx.AsyncBaseTransport):
    """A real socket transport noting every attempt: (method, path, status)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.calls.append((request.method, request.url.path, response.status_code))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def object_gets(self) -> list[str]:
        """Names of the objects fetched from pre-signed URLs."""
        return [
            p.rsplit("/", 1)[-1]
            for m, p, _ in self.calls
            if m == "GET" and p.startswith("/emulator/objects/")
        ]


def make_client(emu: Emulator, rec: Recorder | None = None, **kw: Any) -> AsyncDapClient:
    transport = RetryTransport(rec, FAST) if rec is not None else None
    return AsyncDapClient(
        rate_limits=None,
        base_url=emu.base_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        transport=transport,
        retry=FAST,
        **kw,
    )


class Events:
    """Collects progress events and the thread each arrived on."""

    def __init__(self) -> None:
        self.events: list[DownloadProgress] = []
        self.threads: set[str] = set()

    def __call__(self, event: DownloadProgress) -> None:
        self.events.append(event)
        self.threads.add(threading.current_thread().name)

    def by_object(self) -> dict[str, list[DownloadProgress]]:
        out: dict[str, list[DownloadProgress]] = defaultdict(list)
        for event in self.events:
            out[event.object_id].append(event)
        return out

    def finished(self) -> list[DownloadProgress]:
        return [e for e in self.events if e.finished]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _complete_job(dap: AsyncDapClient, fmt: str = "jsonl") -> Job:
    return await dap.wait(await dap.start_query(NS, TABLE, QueryRequest(fmt)))


# -- progress -------------------------------------------------------------------------------------


def test_progress_events_every_64k_and_once_per_part(emulator: Emulator, tmp_path: Path) -> None:
    events = Events()
    callback: ProgressCallback = events

    async def go() -> tuple[Job, list[Path], str]:
        async with make_client(emulator) as dap:
            job = await _complete_job(dap)
            files = await dap.download(job, tmp_path, progress=callback)
            return job, files, threading.current_thread().name

    job, files, loop_thread = run(go())
    n = len(job.objects)
    assert n >= 2 and len(files) == n
    assert events.threads == {loop_thread}
    assert {e.job_id for e in events.events} == {job.id}
    assert {e.parts_total for e in events.events} == {n}
    names = {f.name for f in files}
    sizes = {f.name: f.stat().st_size for f in files}
    per_object = events.by_object()
    assert set(per_object) == {o.id for o in job.objects}
    for object_events in per_object.values():
        *running, last = object_events
        assert last.finished and not last.skipped and last.file_name in names
        assert last.bytes_done == last.bytes_total == sizes[last.file_name]
        assert not any(e.finished for e in running)
        assert {e.file_name for e in object_events} == {last.file_name}
        # At most one event per 64 KiB received, and at least one for an object above that.
        done = [0] + [e.bytes_done for e in running]
        assert all(b - a >= STEP for a, b in itertools.pairwise(done))
        assert 1 <= len(running) <= last.bytes_done // STEP
        assert all(e.bytes_total == last.bytes_total for e in running)
    # parts_done counts finished parts across the job, one more at each finished event.
    assert [e.parts_done for e in events.finished()] == list(range(1, n + 1))


def test_progress_counts_bytes_received_when_decompressing(
    emulator: Emulator, tmp_path: Path
) -> None:
    events = Events()

    async def go() -> list[Path]:
        async with make_client(emulator) as dap:
            return await dap.download(
                await _complete_job(dap, "csv"), tmp_path, decompress=True, progress=events
            )

    files = run(go())
    finished = {e.file_name: e for e in events.finished()}
    assert set(finished) == {f.name for f in files}
    for path in files:
        event = finished[path.name]
        assert event.bytes_total == event.bytes_done  # the gzip bytes, as sent
        assert path.stat().st_size > event.bytes_done  # the file holds the inflated text


def test_progress_starts_over_when_a_stream_drops(emulator: Emulator, tmp_path: Path) -> None:
    events = Events()
    rec = Recorder()

    async def go() -> tuple[Job, list[Path]]:
        async with make_client(emulator, rec, max_concurrency=1) as dap:
            job = await _complete_job(dap)
            emulator.faults.drop_downloads(count=1, after_bytes=STEP + 4096)
            return job, await dap.download(job, tmp_path, progress=events)

    job, files = run(go())
    n = len(job.objects)
    assert len(rec.object_gets()) == n + 1
    assert [e.parts_done for e in events.finished()] == list(range(1, n + 1))
    # One event with 0 bytes says the dropped object starts over; only that object has one.
    restarts = [e for e in events.events if not e.finished and e.bytes_done == 0]
    assert len(restarts) == 1 and restarts[0].bytes_total is None
    dropped = events.by_object()[restarts[0].object_id]
    assert any(b.bytes_done < a.bytes_done for a, b in itertools.pairwise(dropped))
    assert dropped[-1].finished and dropped[-1].bytes_done == dropped[-1].bytes_total
    assert sum(len(_lines(f)) for f in files) == emulator.dataset.snapshot(NS, TABLE).num_rows


def test_progress_callback_error_aborts_the_download(emulator: Emulator, tmp_path: Path) -> None:
    class Stop(Exception):
        pass

    def stop(event: DownloadProgress) -> None:
        raise Stop(event.object_id)

    async def go() -> None:
        async with make_client(emulator) as dap:
            await dap.download(await _complete_job(dap), tmp_path, progress=stop)

    with pytest.raises(Stop):
        run(go())
    assert not list(tmp_path.glob("*.part"))


def test_query_progress_async_and_sync(emulator: Emulator, tmp_path: Path) -> None:
    async_events, sync_events = Events(), Events()

    async def go() -> list[Path]:
        async with make_client(emulator) as dap:
            _, files = await dap.query(
                NS, "accounts", QueryRequest("tsv"), tmp_path / "a", progress=async_events
            )
            return files

    async_files = run(go())
    assert [e.finished for e in async_events.events] == [True] * len(async_files)

    with DapClient(
        rate_limits=None,
        base_url=emulator.base_url,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        retry=FAST,
    ) as dap:
        job, files = dap.query(
            NS, TABLE, QueryRequest("jsonl"), tmp_path / "s", progress=sync_events
        )
        files_again = dap.download(job, tmp_path / "s", progress=sync_events)
    n = len(job.objects)
    assert files_again == files
    # Called on the portal's thread, not the caller's.
    assert sync_events.threads == {"dapframe-portal"}
    finished = sync_events.finished()
    assert len(finished) == 2 * n
    assert [e.skipped for e in finished] == [False] * n + [True] * n


# -- resume ---------------------------------------------------------------------------------------


def test_resume_fetches_only_the_missing_object(emulator: Emulator, tmp_path: Path) -> None:
    emu = emulator
    request = QueryRequest("jsonl")

    async def query(
        rec: Recorder, events: Events | None = None, **kw: Any
    ) -> tuple[Job, list[Path]]:
        async with make_client(emu, rec) as dap:
            job, files = await dap.query(NS, TABLE, request, tmp_path, progress=events, **kw)
            return job, files

    first_rec = Recorder()
    job, first = run(query(first_rec))
    n = len(job.objects)
    assert n >= 3 and len(first_rec.object_gets()) == n
    contents = [f.read_bytes() for f in first]

    # As after an interrupted run: one file missing with a stale part, another file whole
    # but with a leftover part, and somebody else's part file that must stay.
    missing, whole = first[1], first[0]
    missing.unlink()
    Path(f"{missing}.part").write_bytes(b"half a file")
    Path(f"{whole}.part").write_bytes(b"stale")
    foreign = tmp_path / "other-job-part-00000.json.gz.part"
    foreign.write_bytes(b"not ours")

    rec, events = Recorder(), Events()
    again_job, again = run(query(rec, events))
    assert again_job.id == job.id  # the API hands back the same job for the same query
    assert again == first
    assert [f.read_bytes() for f in again] == contents
    assert rec.object_gets() == [missing.name]
    assert not Path(f"{missing}.part").exists() and not Path(f"{whole}.part").exists()
    assert foreign.read_bytes() == b"not ours"
    skipped = [e for e in events.finished() if e.skipped]
    assert len(skipped) == n - 1 and missing.name not in {e.file_name for e in skipped}
    sizes = {f.name: len(c) for f, c in zip(first, contents, strict=True)}
    assert all(e.bytes_done == e.bytes_total == sizes[e.file_name] for e in skipped)
    assert events.finished()[-1].parts_done == n

    rec_all = Recorder()
    _, forced = run(query(rec_all, skip_existing=False))
    assert forced == first and len(rec_all.object_gets()) == n
    assert [f.read_bytes() for f in forced] == contents


def test_resume_after_an_interrupted_run(emulator: Emulator, tmp_path: Path) -> None:
    class Interrupt(Exception):
        pass

    def interrupt_after_first_part(event: DownloadProgress) -> None:
        if event.finished:
            raise Interrupt

    async def go() -> tuple[Job, list[str], list[Path]]:
        async with make_client(emulator, max_concurrency=1) as dap:
            job = await _complete_job(dap)
            with pytest.raises(Interrupt):
                await dap.download(job, tmp_path, progress=interrupt_after_first_part)
            kept = sorted(p.name for p in tmp_path.iterdir())
            rec = Recorder()
            async with make_client(emulator, rec) as resumed:
                files = await resumed.download(job, tmp_path)
            assert len(rec.object_gets()) == len(job.objects) - len(kept)
            return job, kept, files

    job, kept, files = run(go())
    assert len(kept) == 1 and not kept[0].endswith(".part")
    assert len(files) == len(job.objects)
    assert not list(tmp_path.glob("*.part"))
    assert sum(len(_lines(f)) for f in files) == emulator.dataset.snapshot(NS, TABLE).num_rows


def _lines(path: Path) -> list[bytes]:
    return [line for line in gzip.decompress(path.read_bytes()).split(b"\n") if line]
