"""Client-side rate limits: the limiter on its own, then against the emulator over real sockets."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from dapframe.api import (
    AsyncDapClient,
    DapClient,
    QueryRequest,
    RateLimits,
    RetryPolicy,
    RetryTransport,
)
from dapframe.api._ratelimit import RateLimiter
from dapframe.emulator import Emulator
from dapframe.errors import RateLimitError
from tests.conftest import CLIENT_ID, CLIENT_SECRET

NS = "canvas"
FAST = RetryPolicy(attempts=4, backoff=0.01, backoff_max=0.05, retry_after_max=5.0)


class TimedRecorder(httpx.AsyncBaseTransport):
    """A real socket transport noting every attempt: (method, path, status, sent, answered)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: list[tuple[str, str, int, float, float]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = time.monotonic()
        response = await self.inner.handle_async_request(request)
        self.calls.append((request.method, request.url.path, response.status_code, sent,
                           time.monotonic()))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()

    def statuses(self) -> list[int]:
        return [c[2] for c in self.calls]

    def to(self, method: str, suffix: str) -> list[tuple[str, str, int, float, float]]:
        return [c for c in self.calls if c[0] == method and c[1].endswith(suffix)]


def make_client(emu: Emulator, rec: TimedRecorder | None = None, **kw: Any) -> AsyncDapClient:
    retry = kw.pop("retry", FAST)
    transport = RetryTransport(rec, retry) if rec is not None else None
    return AsyncDapClient(base_url=emu.base_url, client_id=CLIENT_ID,
                          client_secret=CLIENT_SECRET, transport=transport, retry=retry, **kw)


# -- the limiter on its own ---------------------------------------------------------------------

def test_rate_limits_defaults_and_validation() -> None:
    limits = RateLimits()
    assert limits.query == (5, 60.0) and limits.tables == (5, 60.0)
    assert limits.job == (500, 60.0) and limits.schema == (500, 60.0)
    assert limits.object_url == (200, 60.0)
    assert limits.get("query") == (5, 60.0)
    with pytest.raises(KeyError):
        limits.get("login")
    for bad in [(0, 60.0), (1, 0.0), (1.5, 60.0), "x", (1,)]:
        with pytest.raises(ValueError, match=r"RateLimits\.query"):
            RateLimits(query=bad)  # type: ignore[arg-type]


def test_fourth_call_waits_for_the_window(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dapframe.api")
    limiter = RateLimiter(RateLimits(schema=(3, 0.5)))
    gate = limiter.gate("schema")
    assert gate is not None and limiter.gate("login") is None

    async def call(entered: list[float]) -> None:
        async with gate:
            entered.append(time.monotonic())

    async def go() -> tuple[float, list[float]]:
        entered: list[float] = []
        start = time.monotonic()
        await asyncio.gather(*(call(entered) for _ in range(4)))
        return start, entered

    start, entered = asyncio.run(go())
    assert [t - start < 0.1 for t in entered] == [True, True, True, False]
    assert entered[3] - start >= 0.49
    assert any("rate limit of 3 schema call(s) per 0.5 s reached" in r.getMessage()
               for r in caplog.records if r.levelno == logging.DEBUG)


def test_calls_in_flight_hold_their_slot_until_answered() -> None:
    limiter = RateLimiter(RateLimits(job=(2, 0.2)))
    gate = limiter.gate("job")
    assert gate is not None

    async def slow() -> None:
        async with gate:
            await asyncio.sleep(0.4)

    async def go() -> float:
        start = time.monotonic()
        holders = [asyncio.create_task(slow()) for _ in range(2)]
        await asyncio.sleep(0.05)
        assert limiter.in_use("job") == 2
        async with gate:  # free only 0.2 s after the slow calls were answered
            waited = time.monotonic() - start
        await asyncio.gather(*holders)
        return waited

    assert asyncio.run(go()) >= 0.59


def test_cancelled_waiter_gives_up_its_place() -> None:
    limiter = RateLimiter(RateLimits(query=(1, 0.3)))
    gate = limiter.gate("query")
    assert gate is not None

    async def go() -> float:
        async with gate:
            pass
        start = time.monotonic()
        first = asyncio.create_task(gate.__aenter__())
        await asyncio.sleep(0.05)
        first.cancel()  # waiting at the head of the queue, then gone
        with pytest.raises(asyncio.CancelledError):
            await first
        async with gate:
            waited = time.monotonic() - start
        assert limiter.in_use("query") == 1  # the last answer only: the cancelled call took none
        return waited

    waited = asyncio.run(go())
    assert 0.2 <= waited < 1.0


# -- against the emulator -----------------------------------------------------------------------

def _limit_emulator(emu: Emulator) -> None:
    """Small per-minute server limits (reference 8.3 mechanics, test-sized numbers)."""
    emu.faults.rate_limits = True
    emu.faults.limits.update(query=3, tables=2, schema=3, job=40, object_url=6)


#: The client's limits equal the emulator's per-minute ones.
MATCHING = RateLimits(query=(3, 60.0), tables=(2, 60.0), schema=(3, 60.0), job=(40, 60.0),
                      object_url=(6, 60.0))


def test_limits_equal_to_the_server_s_never_meet_429(emulator: Emulator,
                                                     tmp_path: Path) -> None:
    emu = emulator
    _limit_emulator(emu)
    rec = TimedRecorder()
    tables = ["accounts", "users", "courses"]

    async def table(dap: AsyncDapClient, name: str) -> list[Path]:
        await dap.get_schema(NS, name)
        _, files = await dap.query(NS, name, QueryRequest("jsonl"), tmp_path / name,
                                   deadline=30)
        return files

    async def go() -> list[list[Path]]:
        async with make_client(emu, rec, rate_limits=MATCHING) as dap:
            assert dap.rate_limits == MATCHING
            listed = asyncio.gather(*(dap.list_tables(NS) for _ in range(2)))
            _, results = await asyncio.gather(
                listed, asyncio.gather(*(table(dap, t) for t in tables))
            )
            # Over the limit now: these wait (for a minute) instead of being sent.
            fourth = asyncio.create_task(dap.start_query(NS, "pseudonyms", QueryRequest("csv")))
            third_list = asyncio.create_task(dap.list_tables(NS))
            await asyncio.sleep(1.5)
            assert not fourth.done() and not third_list.done()
            fourth.cancel()
            third_list.cancel()
            await asyncio.gather(fourth, third_list, return_exceptions=True)
            return list(results)

    file_lists = run(go())
    assert 429 not in rec.statuses()
    assert getattr(emu.faults, "rate_limited_answers", 0) == 0
    assert len(rec.to("POST", "/data")) == 3  # the fourth query never left the client
    assert len(rec.to("GET", "/table")) == 2
    for name, files in zip(tables, file_lists, strict=True):
        assert files and all(f.exists() for f in files)
        assert sum(len(_lines(f)) for f in files) == emu.dataset.snapshot(NS, name).num_rows


def test_without_client_limits_the_server_answers_429(emulator: Emulator) -> None:
    _limit_emulator(emulator)
    rec = TimedRecorder()

    async def go() -> None:
        async with make_client(emulator, rec, retry=RetryPolicy(attempts=1)) as dap:
            await asyncio.gather(*(dap.start_query(NS, t, QueryRequest("jsonl"))
                                   for t in ("accounts", "users", "courses", "pseudonyms")))

    with pytest.raises(RateLimitError):
        run(go())
    assert rec.statuses().count(429) == 1


def test_short_window_spaces_calls_over_real_sockets(emulator: Emulator,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="dapframe.api")
    rec = TimedRecorder()
    limits = RateLimits(query=None, job=None, tables=None, schema=(3, 1.0), object_url=None)

    async def go() -> None:
        async with make_client(emulator, rec, rate_limits=limits) as dap:
            await asyncio.gather(*(dap.get_schema(NS, "accounts") for _ in range(4)))

    run(go())
    calls = sorted(rec.to("GET", "/schema"), key=lambda c: c[3])
    assert [c[2] for c in calls] == [200] * 4
    first_answered = min(c[4] for c in calls[:3])
    assert calls[3][3] >= first_answered + 1.0 - 0.01  # sent a full window after an answer
    assert any("per 1 s reached" in r.getMessage() for r in caplog.records)


def test_every_retry_takes_a_slot_and_login_takes_none(emulator: Emulator) -> None:
    emulator.faults.burst("schema", status=503, count=1)
    rec = TimedRecorder()
    limits = RateLimits(query=None, job=None, tables=None, schema=(2, 1.0), object_url=None)

    async def go() -> float:
        async with make_client(emulator, rec, rate_limits=limits) as dap:
            start = time.monotonic()
            await dap.get_schema(NS, "accounts")  # login, then 503 and a retry: 2 slots
            assert time.monotonic() - start < 0.5  # the login did not wait at the gate
            await dap.get_schema(NS, "accounts")
            return time.monotonic() - start

    assert run(go()) >= 0.95
    assert [c[2] for c in rec.to("GET", "/schema")] == [503, 200, 200]
    assert len(rec.to("POST", "/ids/auth/login")) == 1


def test_sync_client_passes_rate_limits(emulator: Emulator) -> None:
    limits = RateLimits(query=None, job=None, tables=(1, 0.5), schema=None, object_url=None)
    with DapClient(base_url=emulator.base_url, client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET, retry=FAST, rate_limits=limits) as dap:
        assert dap.rate_limits == limits
        dap.list_tables(NS)
        start = time.monotonic()
        dap.list_tables(NS)
        assert time.monotonic() - start >= 0.45
    with DapClient(base_url=emulator.base_url, client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET, retry=FAST) as dap:
        assert dap.rate_limits == RateLimits()  # the API's documented limits by default
        assert dap.rate_limits.query == (5, 60.0)


# -- helpers --------------------------------------------------------------------------------------

def run(coro: Any) -> Any:
    return asyncio.run(coro)


def _lines(path: Path) -> list[bytes]:
    return [line for line in gzip.decompress(path.read_bytes()).split(b"\n") if line]
