"""The login form and the download progress bar (ipywidgets models, no browser)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ipywidgets as w
import pytest
from IPython.core.interactiveshell import InteractiveShell

from dapframe.api import DapClient, DownloadProgress
from dapframe.emulator import Emulator
from dapframe.jupyter import Dap, DapSession, DownloadBar, LoginForm

from .conftest import CLIENT_ID, CLIENT_SECRET


def _all_states(widget: w.Widget) -> str:
    """Every synced value of a widget tree, as text (what a notebook could save)."""
    states = [repr(widget.get_state())]
    for child in getattr(widget, "children", ()):
        states.append(_all_states(child))
    return "\n".join(states)


def _form(session: DapSession, emulator: Emulator, secret: str = CLIENT_SECRET) -> LoginForm:
    form = LoginForm(session, base_url=emulator.base_url, namespaces=["canvas", "canvas_logs",
                                                                       "nope"])
    form.client_id.value = CLIENT_ID
    form.secret.value = secret
    return form


def test_login_shows_expiry_and_tables_and_clears_the_secret(module_emulator: Emulator) -> None:
    session = DapSession(environ={})
    form = _form(session, module_emulator)
    outcome = form.login()
    assert outcome.ok, outcome.message
    assert outcome.tables["canvas"][0] == "accounts" and "nope" not in outcome.tables
    assert outcome.expires_at is not None
    # The emulator's tokens live an hour (exp rounded up to the second).
    left = outcome.expires_at - datetime.now(UTC)
    assert timedelta(minutes=50) < left <= timedelta(hours=1, seconds=2)
    html = form.message.value
    assert "dapframe-login-ok" in html and "Logged in to" in html and "Token valid until" in html
    assert "canvas (9): accounts" in html and "canvas_logs (1): web_logs" in html
    assert form.secret.value == ""
    assert CLIENT_SECRET not in _all_states(form.widget)
    # The session now uses these credentials and the client that logged in.
    creds = session.credentials(None)
    assert creds.source == "login form" and creds.config.client_id == CLIENT_ID
    client = session.client()
    assert client.auth.logins == 1 and client.rate_limits is None  # loopback: an emulator
    assert "accounts" in client.list_tables("canvas")
    assert client.auth.logins == 1
    session.close()


@pytest.mark.parametrize(("base_url", "client_id", "secret", "expected"), [
    (None, CLIENT_ID, "wrong-Secret-987", "login refused"),
    (None, "", CLIENT_SECRET, "enter the client id"),
    (None, CLIENT_ID, "", "enter the client secret"),
    ("ftp://example", CLIENT_ID, CLIENT_SECRET, "invalid base URL"),
    ("http://127.0.0.1:9", CLIENT_ID, CLIENT_SECRET, "Login failed"),
])
def test_login_errors_are_shown_not_raised(module_emulator: Emulator, base_url: str | None,
                                           client_id: str, secret: str, expected: str) -> None:
    session = DapSession(environ={})
    form = _form(session, module_emulator, secret)
    form.client_id.value = client_id
    if base_url is not None:
        form.base_url.value = base_url
    outcome = form.login()
    assert not outcome.ok and expected in outcome.message
    assert "dapframe-login-error" in form.message.value
    assert form.secret.value == "" and not form.button.disabled
    if secret:
        assert secret not in form.message.value and secret not in _all_states(form.widget)
    assert not session.has_credentials(None)


def test_button_click_logs_in(module_emulator: Emulator) -> None:
    session = DapSession(environ={})
    form = _form(session, module_emulator)
    form.button.click()
    assert form.outcome is not None and form.outcome.ok
    assert session.has_credentials(None)
    session.close()


def test_percent_dap_login_shows_a_prefilled_form(module_emulator: Emulator) -> None:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "dapframe")
    magics: Dap = shell._dapframe_magics  # type: ignore[attr-defined]
    saved = magics.session
    try:
        magics.session = DapSession(environ={"DAP_API_URL": module_emulator.base_url,
                                             "DAP_CLIENT_ID": CLIENT_ID,
                                             "DAP_CLIENT_SECRET": CLIENT_SECRET})
        shell.run_line_magic("dap", "form << login")
        form = shell.user_ns["form"]
        assert isinstance(form, LoginForm)
        assert form.base_url.value == module_emulator.base_url
        assert form.client_id.value == CLIENT_ID and form.secret.value == ""
        assert "already has credentials (from the environment)" in form.message.value
        form.secret.value = CLIENT_SECRET
        assert form.login().ok
        assert shell.run_line_magic("dap", "status").text.endswith("(from the login form).")
        shell.run_line_magic("dap", "logout")
        assert "(from the environment)" in shell.run_line_magic("dap", "status").text
    finally:
        magics.session.close()
        magics.session = saved


def _event(job: str, obj: str, done: int, parts_done: int, total: int = 4,
           finished: bool = False) -> DownloadProgress:
    return DownloadProgress(job_id=job, object_id=obj, file_name=f"{obj}.gz", bytes_done=done,
                            bytes_total=None, parts_done=parts_done, parts_total=total,
                            finished=finished)


def test_download_bar_counts_parts_and_bytes_from_many_threads() -> None:
    bar = DownloadBar("canvas.x", min_interval=0)
    objects = [f"o{i}" for i in range(8)]

    def worker(obj: str, index: int) -> None:
        for done in range(1000, 10_001, 1000):
            bar(_event("j", obj, done, 0, total=8))
        bar(_event("j", obj, 10_000, index + 1, total=8, finished=True))

    threads = [threading.Thread(target=worker, args=(o, i)) for i, o in enumerate(objects)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    bar.finish()
    assert bar.bytes_done == 80_000 and bar.parts_total == 8 and bar.parts_done == 8
    assert bar.bar.value == bar.bar.max == 8 and bar.bar.bar_style == "success"
    assert bar.text.value.startswith("8/8 parts, 80.0 kB in ")


def test_download_bar_restarts_failures_and_tables() -> None:
    bar = DownloadBar("sync", tables_total=3, min_interval=3600)
    bar(_event("j1", "a", 5000, 0, total=2))
    first = bar.text.value
    assert first.startswith("0/3 tables, 0/2 parts, 5.0 kB")
    bar(_event("j1", "a", 0, 0, total=2))  # the object starts over with a fresh URL
    bar(_event("j1", "a", 3000, 1, total=2, finished=True))
    assert bar.bytes_done == 3000
    assert bar.text.value == first  # throttled: not redrawn yet
    bar.table_done()
    bar(_event("j2", "b", 100, 1, total=1, finished=True))
    bar.table_done()
    assert (bar.parts_done, bar.parts_total) == (2, 3)
    assert bar.bar.value == 2 and bar.bar.max == 3
    bar.finish(failed=True)
    assert bar.bar.bar_style == "danger" and bar.text.value.startswith("failed after 2/3 tables")


def test_download_bar_with_the_client(module_emulator: Emulator, tmp_path: Path) -> None:
    bar = DownloadBar("canvas.submissions")
    with DapClient(base_url=module_emulator.base_url, client_id=CLIENT_ID,
                   client_secret=CLIENT_SECRET, rate_limits=None) as client:
        result = client.snapshot("canvas.submissions", format="csv", directory=tmp_path,
                                 progress=bar)
    bar.finish()
    assert bar.parts_done == bar.parts_total == len(result.files) > 1
    assert bar.bytes_done == sum(f.stat().st_size for f in result.files)
