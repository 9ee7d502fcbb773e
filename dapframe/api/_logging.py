"""Keep pre-signed URLs' signatures out of the HTTP stack's log records.

httpx logs every request at INFO on the ``httpx`` logger (``HTTP Request: GET <url> "HTTP/1.1
200 OK"``, the URL an ``httpx.URL`` in ``record.args``). Object downloads go to pre-signed URLs
whose query string *is* a bearer secret, so a script that only calls
``logging.basicConfig(level=logging.INFO)`` would write working download links to its logs.
The CLI redacts its own output (``dapframe.cli._logging``); this filter covers everyone else:
it keeps scheme, host and path (enough to debug) and replaces the query with ``?<redacted>``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import httpx

REDACTED_QUERY = "?<redacted>"

# A URL's query (and any fragment after it), up to the end of the URL: whitespace, a quote or
# an angle bracket.
_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?\"'<>]*)\?[^\s\"'<>]*")

#: Loggers of the HTTP stack. A logger's filters see only the records logged on that very
#: logger (not its children's, which propagate to handlers only), so httpcore's own loggers
#: are named too.
HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.connection", "httpcore.http11",
                "httpcore.http2", "httpcore.proxy", "httpcore.socks")


def redact_urls(text: str) -> str:
    """``text`` with the query string of every URL in it replaced by ``?<redacted>``."""
    return _QUERY.sub(lambda m: m.group(1) + REDACTED_QUERY, text)


def _redact_arg(arg: Any) -> Any:
    if isinstance(arg, (httpx.URL, httpx.Request)):
        return redact_urls(str(arg) if isinstance(arg, httpx.URL) else repr(arg))
    if isinstance(arg, str):
        return redact_urls(arg)
    return arg  # numbers and the like: left alone so that ``%d`` still formats


class UrlQueryFilter(logging.Filter):
    """Rewrite a record's URLs without their query strings; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            # Both halves: httpx passes the URL in ``args``, others may format it into ``msg``.
            # Only URL and str arguments change, so ``%d`` and friends still format.
            if isinstance(record.msg, str):
                record.msg = redact_urls(record.msg)
            if isinstance(record.args, tuple):
                record.args = tuple(_redact_arg(a) for a in record.args)
            elif isinstance(record.args, dict):
                record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        except Exception:  # a logging filter must never break the caller
            # Last resort: the rendered message, redacted as a whole.
            try:
                record.msg, record.args = redact_urls(record.getMessage()), None
            except Exception:
                record.msg, record.args = "<log record withheld: could not redact it>", None
        return True


_FILTER = UrlQueryFilter()


def install_url_filter() -> None:
    """Attach the filter to the HTTP stack's loggers, once (idempotent, cheap)."""
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
