"""ipywidgets of the notebook face: the login form and the download progress bar."""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from dapframe.config import DEFAULT_BASE_URL, DapConfig, Secret
from dapframe.errors import ConfigError, DapError, NotFoundError, UsageError

from ._display import size_text
from ._session import DapSession, token_expiry

if TYPE_CHECKING:
    from dapframe.api import DownloadProgress

__all__ = ["DownloadBar", "LoginForm", "LoginOutcome"]


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


@dataclass
class LoginOutcome:
    """What the last click of the login form gave.

    Attributes
    ----------
    ok : bool
        Logged in and the tables listed.
    message : str
        The line shown under the form (no secret in it).
    expires_at : datetime or None
        When the access token expires.
    tables : dict
        Namespace -> table names visible with these credentials.
    """

    ok: bool
    message: str
    expires_at: datetime | None = None
    tables: dict[str, list[str]] = field(default_factory=dict)


class LoginForm:
    """A credential form: base URL, client id, secret and a button that logs in.

    A click logs in, lists the tables of ``namespaces`` and shows the token's expiry and the
    tables, or the error. The secret is taken out of the ``Password`` widget before the login
    starts, so it is neither kept in the widget's state nor saved with the notebook; the
    session keeps it as a :class:`~dapframe.Secret`. On success the session uses these
    credentials for every later ``%dap`` command.

    Parameters
    ----------
    session : DapSession
        The session to log in.
    base_url, client_id : str
        Initial values (the secret is never pre-filled).
    namespaces : sequence of str
        Namespaces whose tables are listed after the login.
    rate_limits : str
        ``auto``, ``on`` or ``off`` (see ``%config Dap.rate_limits``).
    note : str
        HTML shown under the button until the first click.
    """

    def __init__(self, session: DapSession, *, base_url: str = "", client_id: str = "",
                 namespaces: Sequence[str] = ("canvas",), rate_limits: str = "auto",
                 note: str = "") -> None:
        import ipywidgets as w

        self.session = session
        self.namespaces = list(namespaces)
        self.rate_limits = rate_limits
        style = {"description_width": "6em"}
        layout = w.Layout(width="34em")
        self.base_url = w.Text(value=base_url, description="Base URL",
                               placeholder=DEFAULT_BASE_URL, style=style, layout=layout)
        self.client_id = w.Text(value=client_id, description="Client ID",
                                placeholder="us-east-1#...", style=style, layout=layout)
        self.secret = w.Password(value="", description="Secret", placeholder="client secret",
                                 style=style, layout=layout)
        self.button = w.Button(description="Log in", button_style="primary", icon="sign-in",
                               tooltip="Log in to the DAP API with these credentials")
        self.message = w.HTML(value=note)
        self.widget = w.VBox(
            [w.HTML("<b>DAP Query API login</b>"), self.base_url, self.client_id, self.secret,
             self.button, self.message],
            layout=w.Layout(border="1px solid var(--jp-border-color2, #ddd)", padding="6px",
                            width="fit-content"),
        )
        self.outcome: LoginOutcome | None = None
        self.button.on_click(lambda _button: self.login())

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def login(self) -> LoginOutcome:
        """Log in with the form's values (what the button does); never raises."""
        secret = self.secret.value
        # Cleared first, whatever happens next: the widget state (synced to the browser and
        # possibly saved in the notebook) must never hold it after this point.
        self.secret.value = ""
        self.button.disabled = True
        self.button.description = "Logging in..."
        self.message.value = "<span>Logging in...</span>"
        try:
            outcome = self._login(secret)
        except Exception as exc:  # shown, not raised: a button callback has nowhere to raise to
            outcome = LoginOutcome(False, f"Login failed: {_one_line(exc)}")
        finally:
            del secret
            self.button.disabled = False
            self.button.description = "Log in"
        self.outcome = outcome
        css, mark = ("dapframe-login-ok", "✓") if outcome.ok else ("dapframe-login-error", "✗")
        color = "var(--jp-success-color1, #2e7d32)" if outcome.ok \
            else "var(--jp-error-color1, #c62828)"
        self.message.value = (f'<div class="{css}" style="color:{color}">{mark} '
                              f"{html.escape(outcome.message)}</div>")
        return outcome

    def _login(self, secret: str) -> LoginOutcome:
        from dapframe.api import DapClient

        base_url = self.base_url.value.strip() or DEFAULT_BASE_URL
        client_id = self.client_id.value.strip()
        if not client_id:
            return LoginOutcome(False, "Login failed: enter the client id")
        if not secret:
            return LoginOutcome(False, "Login failed: enter the client secret")
        try:
            config = DapConfig(base_url=base_url, client_id=client_id,
                               client_secret=Secret(secret))
        except ConfigError as exc:
            return LoginOutcome(False, f"Login failed: {_one_line(exc)}")
        limited = self.session.wants_rate_limits(config, self.rate_limits)
        client = DapClient(config, rate_limits=self.session.rate_limits(limited))
        tables: dict[str, list[str]] = {}
        try:
            for namespace in self.namespaces:
                try:
                    tables[namespace] = client.list_tables(namespace)
                except NotFoundError:
                    continue  # a namespace this account (or API) does not have
        except (DapError, UsageError) as exc:
            client.close()
            return LoginOutcome(False, f"Login failed: {_one_line(exc)}")
        expires = token_expiry(client)
        self.session.use(config, "login form", client, rate_limited=limited)
        return LoginOutcome(True, _success_text(config, expires, tables), expires, tables)


def _success_text(config: DapConfig, expires: datetime | None,
                  tables: dict[str, list[str]]) -> str:
    text = f"Logged in to {config.base_url} as {config.client_id}."
    if expires is not None:
        minutes = max(0, round((expires - datetime.now(UTC)).total_seconds() / 60))
        text += f" Token valid until {expires:%Y-%m-%d %H:%M:%S} UTC (in {minutes} min)."
    if tables:
        listed = "; ".join(f"{ns} ({len(names)}): {', '.join(names)}"
                           for ns, names in tables.items())
        text += f" Tables: {listed}."
    else:
        text += " No tables visible in the namespaces asked for."
    return text


class DownloadBar:
    """A progress bar for query downloads: parts and bytes, and tables when there are several.

    Call it with :class:`~dapframe.api.DownloadProgress` events (it is a ``progress=``
    callback). The client calls it from its background thread: every update of the state and
    of the widgets happens under one lock, and the widgets are redrawn at most every
    ``min_interval`` seconds so that a fast download does not flood the browser.

    Parameters
    ----------
    label : str
        Shown left of the bar (e.g. the table name).
    tables_total : int
        Tables this bar covers; the bar counts tables when more than one.
    min_interval : float
        Least seconds between two redraws (the last state is always drawn by :meth:`finish`).
    """

    def __init__(self, label: str, *, tables_total: int = 1, min_interval: float = 0.1) -> None:
        import ipywidgets as w

        self.tables_total = tables_total
        self.tables_done = 0
        self.parts_done = 0
        self.parts_total = 0
        self.bytes_done = 0
        self.min_interval = min_interval
        self._objects: dict[tuple[str, str], int] = {}
        self._jobs: dict[str, tuple[int, int]] = {}  # job id -> (parts done, parts total)
        self._lock = threading.Lock()
        self._drawn_at = 0.0
        self._started = time.monotonic()
        self.bar = w.IntProgress(value=0, min=0, max=max(1, tables_total), description=label,
                                 bar_style="info", style={"description_width": "initial"})
        self.text = w.HTML(value="running the query job...")
        self.widget = w.HBox([self.bar, self.text])

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    def __call__(self, event: DownloadProgress) -> None:
        """Take one download event (from any thread)."""
        with self._lock:
            key = (event.job_id, event.object_id)
            self.bytes_done += event.bytes_done - self._objects.get(key, 0)
            self._objects[key] = event.bytes_done
            done, _ = self._jobs.get(event.job_id, (0, event.parts_total))
            self._jobs[event.job_id] = (max(done, event.parts_done), event.parts_total)
            self.parts_done = sum(d for d, _ in self._jobs.values())
            self.parts_total = sum(t for _, t in self._jobs.values())
            now = time.monotonic()
            if now - self._drawn_at >= self.min_interval:
                self._draw()
                self._drawn_at = now

    def table_done(self) -> None:
        """Count one more table as finished (several-table operations such as sync)."""
        with self._lock:
            self.tables_done += 1
            self._draw()

    def finish(self, text: str | None = None, *, failed: bool = False) -> None:
        """Draw the final state: full and green, or red with ``failed``."""
        with self._lock:
            if not failed and self.tables_total <= 1:
                self.tables_done = 1
            self._draw(final=True, failed=failed)
            if text is not None:
                self.text.value = html.escape(text)

    def summary(self) -> str:
        """``3/3 parts, 1.2 MB in 0.4 s`` (tables first when several)."""
        parts = [f"{self.tables_done}/{self.tables_total} tables"] if self.tables_total > 1 \
            else []
        parts.append(f"{self.parts_done}/{self.parts_total} parts")
        parts.append(size_text(self.bytes_done))
        return ", ".join(parts) + f" in {time.monotonic() - self._started:.1f} s"

    def _draw(self, *, final: bool = False, failed: bool = False) -> None:
        if self.tables_total > 1:
            self.bar.max = self.tables_total
            self.bar.value = min(self.tables_done, self.tables_total)
        else:
            self.bar.max = max(1, self.parts_total)
            self.bar.value = self.parts_total if final and not failed else self.parts_done
        if final:
            self.bar.bar_style = "danger" if failed else "success"
        self.text.value = html.escape(("failed after " if failed else "") + self.summary())
