"""Outside the CLI, the HTTP stack's log lines carry no signed query strings (nor tokens).

A script that runs ``logging.basicConfig(level=logging.INFO)`` gets httpx's ``HTTP Request:
GET <url> ...`` lines; the api package filters them so that pre-signed download URLs keep their
scheme, host and path but not their query (the signature). Real emulator, real sockets.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import dapframe
from dapframe.api import AsyncDapClient, DapClient, QueryRequest, RetryPolicy, RetryTransport
from dapframe.api._logging import HTTP_LOGGERS, UrlQueryFilter, install_url_filter
from dapframe.emulator import Emulator
from tests.conftest import CLIENT_ID, CLIENT_SECRET

FAST = RetryPolicy(attempts=3, backoff=0.01, backoff_max=0.05)


class UrlRecorder(httpx.AsyncBaseTransport):
    """A real socket transport that remembers every full URL asked for."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.urls: list[httpx.URL] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.urls.append(request.url)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.fixture
def info_logs(caplog: pytest.LogCaptureFixture,
              monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.LogCaptureFixture]:
    """caplog at INFO on the root logger, as after ``logging.basicConfig(level=INFO)``."""
    for name in ("httpx", "httpcore"):
        # The CLI's set-up (run in-process by other tests) mutes these: undo that here.
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "propagate", True)
        monkeypatch.setattr(logger, "level", logging.NOTSET)
    caplog.set_level(logging.INFO)
    yield caplog


def _request_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "httpx" and r.getMessage().startswith("HTTP Request:")]


def _assert_no_secrets(caplog: pytest.LogCaptureFixture, emu: Emulator) -> None:
    text = caplog.text
    assert CLIENT_SECRET not in text
    assert emu.state.issued_tokens, "the client never logged in"
    for token in emu.state.issued_tokens:
        assert token not in text


def test_signed_urls_keep_their_path_but_not_their_query(
        emulator: Emulator, info_logs: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    recorder = UrlRecorder()

    async def go() -> None:
        async with AsyncDapClient(base_url=emulator.base_url, client_id=CLIENT_ID,
                                  client_secret=CLIENT_SECRET, rate_limits=None,
                                  transport=RetryTransport(recorder, FAST)) as dap:
            _job, files = await dap.query("canvas", "accounts", QueryRequest("jsonl"), tmp_path,
                                          deadline=60)
            assert files

    asyncio.run(go())
    signed = [u for u in recorder.urls if u.query]
    assert signed, "no pre-signed URL was fetched"
    lines = _request_lines(info_logs)
    assert len(lines) >= len(recorder.urls), lines  # (a) every request was logged
    for url in signed:
        query = url.query.decode()
        assert "X-Emu-Signature=" in query
        # (b) neither the query nor any part of it; (c) the object path still there.
        assert not any(query in line or f"?{query}" in line for line in lines)
        assert any(f"{url.scheme}://{url.netloc.decode()}{url.path}?<redacted>" in line
                   for line in lines), (url.path, lines)
    assert "X-Emu-Signature" not in info_logs.text
    assert "X-Emu-Expires" not in info_logs.text
    for line in lines:
        for q in re.findall(r"\?(\S*)", line):
            assert q == "<redacted>", line
    _assert_no_secrets(info_logs, emulator)


def test_snapshot_through_the_sync_client_logs_no_signature(
        emulator: Emulator, info_logs: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    with DapClient(base_url=emulator.base_url, client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET, rate_limits=None, retry=FAST) as client:
        result = dapframe.snapshot("canvas.accounts", format="jsonl", directory=tmp_path,
                                   client=client, deadline=60)
    assert result.files
    lines = _request_lines(info_logs)
    objects = [ln for ln in lines if "/emulator/objects/" in ln]
    assert objects, lines
    assert all("?<redacted>" in ln for ln in objects), objects
    assert "Signature" not in info_logs.text
    _assert_no_secrets(info_logs, emulator)


def _record(msg: str, args: Any) -> logging.LogRecord:
    return logging.LogRecord("httpx", logging.INFO, __file__, 1, msg, args, None)


def test_filter_rewrites_msg_and_args_and_keeps_the_record() -> None:
    f = UrlQueryFilter()
    url = "http://127.0.0.1:1/emulator/objects/j/part-0.jsonl.gz?X-Emu-Expires=1&X-Emu-Signature=ab"
    cases = [
        _record('HTTP Request: %s %s "%s %d %s"',
                ("GET", httpx.URL(url), "HTTP/1.1", 200, "OK")),
        _record(f"HTTP Request: GET {url} 'done'", ()),
        _record("fetching %(url)s (%(n)d)", {"url": url, "n": 3}),
        _record("sending %r", (httpx.Request("GET", url),)),
    ]
    for rec in cases:
        assert f.filter(rec) is True
        out = rec.getMessage()
        assert "Signature" not in out and "Expires" not in out
        assert "http://127.0.0.1:1/emulator/objects/j/part-0.jsonl.gz?<redacted>" in out
    assert cases[0].getMessage().endswith('"HTTP/1.1 200 OK"')
    assert cases[1].getMessage().endswith(" 'done'")
    plain = _record("no URL here: %s", ("x?y",))
    assert f.filter(plain) and plain.getMessage() == "no URL here: x?y"


def test_filter_is_installed_once(emulator: Emulator) -> None:
    install_url_filter()
    install_url_filter()
    DapClient(base_url=emulator.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
              rate_limits=None).close()
    for name in HTTP_LOGGERS:
        filters = logging.getLogger(name).filters
        assert sum(isinstance(f, UrlQueryFilter) for f in filters) == 1, name
