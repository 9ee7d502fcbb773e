"""The secret-leak scan (tests/matrix_secrets.py): nothing found, and the scan can find things."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from tests._servers import PgServer
from tests.matrix_secrets import (
    CLIENT_SECRET,
    DB_PASSWORD,
    _emulator_binds_loopback,
    _scan_bytes,
    _tls_verified_by_default,
    run_scan,
)


def test_every_command_and_notebook_leaks_nothing(tmp_path: Path, pg_server: PgServer) -> None:
    name = pg_server.create_database()
    try:
        result = run_scan(tmp_path / "scan", pg_server.url(name))
    finally:
        pg_server.drop_database(name)
    assert result.findings == []
    assert result.places_scanned >= 60
    logs = "".join(p.read_text() for p in (tmp_path / "scan" / "logs").glob("*.log"))
    # The logs did carry what would leak: request lines of pre-signed URLs, redacted.
    assert "X-Emu-Signature=**********" in logs
    assert "logged in as" in logs and '"level": "debug"' in logs
    saved = list((tmp_path / "scan" / "notebooks").rglob("*.ipynb"))
    assert len(saved) >= 2 and all("dapframe-result" in p.read_text() for p in saved)


def test_the_scanner_finds_planted_secrets() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    planted = (f"x {CLIENT_SECRET} y {DB_PASSWORD} z Bearer {token} "
               "GET /o/p?X-Emu-Expires=1&X-Emu-Signature=0123456789abcdef").encode()
    found = _scan_bytes("planted", planted, [CLIENT_SECRET, DB_PASSWORD, token])
    assert len(found) == 5, found
    assert _scan_bytes("clean", b"X-Emu-Signature=********** Bearer **********",
                       [CLIENT_SECRET]) == []


def test_log_redaction_of_secret_shapes() -> None:
    from dapframe.cli._logging import redact

    text = redact("GET https://s3/x?X-Amz-Credential=AKIA%2F1&X-Amz-Signature=ab12cd34 "
                  "Authorization: Bearer eyJabc.def.ghi123 client_secret=hunter2hunter2 "
                  f"and {CLIENT_SECRET}", [CLIENT_SECRET])
    for leaked in ("AKIA", "ab12cd34", "eyJabc", "hunter2", CLIENT_SECRET):
        assert leaked not in text, text


def test_tls_verification_is_on_by_default() -> None:
    assert _tls_verified_by_default() == ""
    from dapframe.api import AsyncDapClient
    from dapframe.config import DapConfig, Secret

    client = AsyncDapClient(DapConfig(base_url="https://dap.example", client_id="x",
                                      client_secret=Secret("y-secret")))
    inner: Any = client._transport._transport  # type: ignore[attr-defined]
    assert inner._pool._ssl_context.verify_mode == ssl.CERT_REQUIRED


def test_the_emulator_binds_to_loopback_by_default() -> None:
    assert _emulator_binds_loopback() == ""
