"""Large objects fetched as byte ranges at once (as S3 allows), against the emulator."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from dapframe.api import AsyncDapClient, QueryRequest, RetryPolicy, RetryTransport
from dapframe.api import _client as client_module
from dapframe.emulator import Emulator
from dapframe.wire import Job
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.test_client import Recorder

FAST = RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05, retry_after_max=5.0)


def _client(emu: Emulator, recorder: Recorder | None = None, **kw: Any) -> AsyncDapClient:
    transport = RetryTransport(recorder, FAST) if recorder is not None else None
    return AsyncDapClient(base_url=emu.base_url, client_id=CLIENT_ID,
                          client_secret=CLIENT_SECRET, rate_limits=None, retry=FAST,
                          transport=transport, **kw)


@pytest.fixture
def small_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    # The emulator's parts are small at test scale: range from 20 kB up, in 8 kB ranges.
    monkeypatch.setattr(client_module, "RANGED_MIN_BYTES", 20_000)
    monkeypatch.setattr(client_module, "RANGE_BYTES", 8_000)


def _download(emu: Emulator, directory: Path, fmt: str, recorder: Recorder | None = None,
              drop_after: int | None = None, **kw: Any) -> tuple[Job, list[Path]]:
    async def go() -> tuple[Job, list[Path]]:
        async with _client(emu, recorder, **kw) as dap:
            job = await dap.wait(await dap.start_query("canvas", "submissions",
                                                       QueryRequest(fmt)))
            if drop_after is not None:
                emu.faults.drop_downloads(count=1, after_bytes=drop_after)
            return job, await dap.download(job, directory)

    return asyncio.run(go())


def test_emulator_serves_byte_ranges_like_s3(emulator: Emulator) -> None:
    async def url() -> str:
        async with _client(emulator) as dap:
            job = await dap.wait(await dap.start_query("canvas", "submissions",
                                                       QueryRequest("jsonl")))
            oid = job.objects[0].id
            return (await dap.object_urls([oid]))[oid]

    link = asyncio.run(url())
    whole = httpx.get(link)
    size = len(whole.content)
    assert whole.status_code == 200 and whole.headers["accept-ranges"] == "bytes"
    cases: list[tuple[str, int, bytes | None]] = [
        ("bytes=0-9", 206, whole.content[:10]),
        (f"bytes=10-{size + 50}", 206, whole.content[10:]),   # clipped to the end
        ("bytes=100-", 206, whole.content[100:]),
        ("bytes=-7", 206, whole.content[-7:]),
        (f"bytes={size}-", 416, None),                        # starts past the end
        ("bytes=0-1,5-6", 200, whole.content),                # several: ignored, as S3 does
        ("items=0-5", 200, whole.content),
    ]
    for header, status, body in cases:
        r = httpx.get(link, headers={"Range": header})
        assert r.status_code == status, header
        if body is not None:
            assert r.content == body, header
        if status == 206:
            first = size - len(body or b"") if header.startswith("bytes=-") else int(
                header.split("=")[1].split("-")[0])
            last = first + len(r.content) - 1
            assert r.headers["content-range"] == f"bytes {first}-{last}/{size}"


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
def test_ranged_download_equals_one_stream(emulator: Emulator, tmp_path: Path, fmt: str,
                                           small_ranges: None) -> None:
    rec = Recorder()
    _, ranged = _download(emulator, tmp_path / "ranged", fmt, rec)
    _, single = _download(emulator, tmp_path / "single", fmt, range_streams=0)
    objects = rec.paths("/emulator/objects/")
    big = [p for p in ranged if p.stat().st_size >= 20_000]
    assert big, "the test needs objects large enough to be ranged"
    # Each large object: one main stream (200) plus range streams (206).
    assert sum(1 for *_, s in objects if s == 206) >= len(big)
    assert [p.name for p in ranged] == [p.name for p in single]
    for a, b in zip(ranged, single, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert not list((tmp_path / "ranged").glob("*.part"))


def test_a_dropped_stream_restarts_the_ranged_object(emulator: Emulator, tmp_path: Path,
                                                     small_ranges: None) -> None:
    rec = Recorder()
    job, files = _download(emulator, tmp_path / "a", "jsonl", rec, drop_after=3_000)
    _, clean = _download(emulator, tmp_path / "b", "jsonl", range_streams=0)
    for a, b in zip(files, clean, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    # The broken object asked for a fresh URL once more than the job has objects.
    ids = sum(len(body.split(b'"id"')) - 1 for _, body, s in rec.paths("/dap/object/url")
              if s == 200)
    assert ids == len(job.objects) + 1
    assert not list((tmp_path / "a").glob("*.part"))


def test_range_streams_must_not_be_negative() -> None:
    from dapframe.errors import UsageError

    with pytest.raises(UsageError, match="range_streams"):
        AsyncDapClient(base_url="http://127.0.0.1:9", client_id="x", client_secret="y",
                       range_streams=-1)
