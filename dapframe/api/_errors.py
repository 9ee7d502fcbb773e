"""Turn HTTP error answers and broken connections into dapframe's typed errors.

Every message is one line that names the problem and the fix. Nothing here ever sees a
credential: only the status, the API's error body and the caller's own names go in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from dapframe.errors import (
    AccountError,
    APIError,
    AuthenticationError,
    DapTimeoutError,
    NotFoundError,
    OutOfRangeError,
    RateLimitError,
    ServerError,
    SnapshotRequiredError,
    TransportError,
    ValidationError,
)

__all__ = [
    "KNOWN_NAMESPACES",
    "Context",
    "api_error",
    "error_object",
    "is_json",
    "one_line",
    "safe_url",
    "transport_error",
    "unexpected_response",
]

#: Namespaces known out of band (the API has no namespace list; reference section 12).
KNOWN_NAMESPACES = ("canvas", "canvas_logs", "catalog", "new_quizzes")

_ACCOUNT_HINTS = {
    "AccountNotOnboarded": "the account is not onboarded to DAP: ask your Canvas admin to "
    "enable Canvas Data 2 for it",
    "AccountDisabled": "the account is disabled for DAP: ask your Canvas admin or "
    "Instructure support",
    "AccountUnderMaintenance": "the account is under maintenance: try again later",
    "RequestTypeForbidden": "this request is forbidden for these credentials: check the "
    "key's permissions in the Instructure Identity Service",
}


@dataclass(frozen=True)
class Context:
    """What the caller was doing, so that messages can name it and suggest a fix."""

    action: str
    namespace: str | None = None
    table: str | None = None


def one_line(text: object, limit: int = 300) -> str:
    """Collapse whitespace (the API's messages may span lines) and cut long text."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def safe_url(url: httpx.URL | str) -> str:
    """The URL without query string or fragment: pre-signed URLs carry signatures there."""
    parts = urlsplit(str(url))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def is_json(response: httpx.Response) -> bool:
    """True when the response declares a JSON media type (parameters allowed)."""
    media = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def error_object(response: httpx.Response) -> dict[str, Any] | None:
    """The ``error`` object of a JSON error body, or ``None`` when there is none."""
    if not is_json(response):
        return None
    try:
        doc = json.loads(response.content)
    except ValueError:
        return None
    err = doc.get("error") if isinstance(doc, dict) else None
    return err if isinstance(err, dict) else None


def unexpected_response(response: httpx.Response, ctx: Context, why: str = "") -> ServerError:
    """The answer does not follow the protocol (non-JSON, malformed JSON, missing keys)."""
    ctype = response.headers.get("content-type", "no content type")
    detail = f"HTTP {response.status_code}, {one_line(ctype, 80)}"
    if why:
        detail += f", {one_line(why, 200)}"
    return ServerError(
        f"unexpected response from server while {ctx.action} ({detail}): "
        "check --base-url / DAP_API_URL points at the DAP API",
        status=response.status_code,
    )


def _detail(status: int, etype: str | None, emsg: str | None) -> str:
    text = f"HTTP {status}"
    if etype:
        text += f" {one_line(etype, 60)}"
    if emsg:
        text += f": {one_line(emsg)}"
    return text


def _support(uuid: str | None) -> str:
    return f"; quote error id {uuid} to Instructure support if it persists" if uuid else ""


def api_error(response: httpx.Response, ctx: Context) -> APIError:
    """Map an error answer (status >= 400) to the typed error of :mod:`dapframe.errors`.

    Parameters
    ----------
    response : httpx.Response
        The answer, body already read.
    ctx : Context
        What was being done, used to word the message.
    """
    status = response.status_code
    err = error_object(response)
    etype = str(err["type"]) if err and err.get("type") is not None else None
    uuid = str(err["uuid"]) if err and err.get("uuid") is not None else None
    emsg = str(err["message"]) if err and err.get("message") is not None else None
    detail = _detail(status, etype, emsg)
    kw: dict[str, Any] = {"status": status, "type": etype, "uuid": uuid, "body": err}

    if status == 401:
        return AuthenticationError(
            f"the API refused the credentials while {ctx.action} ({detail}): check the client "
            "id and secret (DAP_CLIENT_ID / DAP_CLIENT_SECRET)",
            **kw,
        )
    if status == 403:
        hint = _ACCOUNT_HINTS.get(etype or "", "access forbidden: check that these "
                                  "credentials may use DAP for this account")
        return AccountError(f"{hint} ({detail}, while {ctx.action}){_support(uuid)}", **kw)
    if status == 429:
        return RateLimitError(
            f"the API kept rate-limiting the requests while {ctx.action} ({detail}), even "
            "after every retry: wait a minute and run again, or make fewer calls",
            **kw,
        )
    if status >= 500:
        return ServerError(
            f"the DAP API failed while {ctx.action} ({detail}): try again later{_support(uuid)}",
            **kw,
        )
    if err is None:
        return unexpected_response(response, ctx)
    if status == 404:
        return _not_found(err, ctx, detail, kw)
    if status == 400 and "since" in err:
        return _out_of_range(err, etype, emsg, ctx, kw)
    if status == 400:
        loc = err.get("location")
        where = ""
        if isinstance(loc, dict) and loc.get("line") is not None:
            where = f" at line {loc.get('line')}, column {loc.get('column')}"
        return ValidationError(
            f"the API refused the request as malformed while {ctx.action} ({detail}{where}): "
            "check the query parameters (format, mode, since, until)",
            **kw,
        )
    return ServerError(
        f"unexpected error answer while {ctx.action} ({detail}){_support(uuid)}", **kw
    )


def _not_found(err: dict[str, Any], ctx: Context, detail: str, kw: dict[str, Any]) -> NotFoundError:
    kind = str(err["kind"]) if err.get("kind") is not None else None
    ident = str(err["id"]) if err.get("id") is not None else None
    ns = ctx.namespace
    if kind == "namespace" or (kind is None and ns is not None and ctx.table is None):
        name = ident or ns
        msg = (
            f"namespace '{name}' not found: use one of {', '.join(KNOWN_NAMESPACES)} "
            "(--namespace)"
        )
    elif kind == "table" or (kind is None and ctx.table is not None):
        name = ident or ctx.table
        msg = (
            f"table '{name}' not found in namespace '{ns}': run "
            f"`dapframe list --namespace {ns}` to see the tables"
        )
    elif kind == "job":
        msg = (
            f"job '{ident}' not found: jobs and their files expire 24 h after they start; "
            "start a new query"
        )
    elif kind == "object":
        msg = (
            f"object '{ident}' not found (expired or unknown): objects expire 24 h after the "
            "job started; start a new query"
        )
    else:
        msg = f"not found while {ctx.action} ({detail}): check the names you passed"
    return NotFoundError(msg, kind=kind, id=ident, **kw)


def _out_of_range(
    err: dict[str, Any], etype: str | None, emsg: str | None, ctx: Context, kw: dict[str, Any]
) -> OutOfRangeError:
    since = str(err["since"]) if err.get("since") is not None else None
    until = str(err["until"]) if err.get("until") is not None else None
    what = f"{ctx.namespace}.{ctx.table}" if ctx.table else "the table"
    said = f" ({one_line(emsg)})" if emsg else ""
    if etype and "snapshotrequired" in etype.replace("_", "").lower():
        return SnapshotRequiredError(
            f"{what} was reloaded upstream and needs a new snapshot{said}: run the query "
            "again without --since",
            since=since, until=until, **kw,
        )
    held = f"from {since}" + (f" to {until}" if until else "") if since else "a different range"
    return OutOfRangeError(
        f"no data in the requested range for {what}{said}: the API holds data {held}; "
        "choose --since/--until within it or take a snapshot",
        since=since, until=until, **kw,
    )


def transport_error(
    exc: httpx.TransportError, *, where: str, hint: str, service: str = "the DAP API"
) -> TransportError:
    """Map an httpx connection failure to :class:`TransportError` (timeouts to a subclass).

    Parameters
    ----------
    exc : httpx.TransportError
        What httpx raised.
    where : str
        The URL (without query string) or a description of the host.
    hint : str
        The fix to suggest, e.g. ``check --base-url / DAP_API_URL``.
    service : str
        What was being reached, for the message.
    """
    reason = one_line(str(exc) or type(exc).__name__, 200)
    if isinstance(exc, httpx.TimeoutException):
        return DapTimeoutError(
            f"request to {where} timed out ({type(exc).__name__}: {reason}): try again later "
            "or raise the timeout"
        )
    if isinstance(exc, httpx.ConnectError):
        return TransportError(f"cannot reach {service} at {where}: {reason}; {hint}")
    return TransportError(
        f"the connection to {where} broke ({type(exc).__name__}: {reason}): try again"
    )
