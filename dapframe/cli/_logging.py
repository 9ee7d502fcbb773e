"""Logging set-up of the CLI: plain or JSON lines, to stderr and/or a file, secrets redacted."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_REDACTED = "**********"

# Secrets with a known shape, whoever logs them: bearer tokens, Basic credentials, and the
# signature, credential and token parameters of pre-signed object URLs (S3's X-Amz-*, the
# emulator's X-Emu-*), which grant access to the data for minutes.
_SHAPES = (
    re.compile(r"(?i)(\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)([?&][\w-]*(?:signature|credential|token|key-pair-id|policy)[\w-]*=)"
               r"[^&\s'\"<>]+"),
    re.compile(r"(?i)(\b(?:access_token|id_token|refresh_token|client_secret)[\"']?\s*[:=]\s*"
               r"[\"']?)[A-Za-z0-9._~+/-]{8,}"),
)


def redact(text: str, secrets: list[str] | tuple[str, ...] = ()) -> str:
    """``text`` with every known secret and every secret-shaped value replaced."""
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, _REDACTED)
    for shape in _SHAPES:
        text = shape.sub(lambda m: m.group(1) + _REDACTED, text)
    return text


class RedactingFilter(logging.Filter):
    """Replace every known secret and secret-shaped value in a record (defence in depth)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = redact(record.getMessage(), self.secrets), None
        if record.exc_info:
            # Render the traceback now so it can be redacted too.
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text, record.exc_info = redact(text, self.secrets), None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields the official client writes."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "level": record.levelname.lower(),
            "message": record.getMessage(),
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "logger_name": record.name,
            "filename": record.filename,
            "module": record.module,
            "lineno": record.lineno,
            "funcName": record.funcName,
        }
        for key in ("dap_namespace", "dap_table"):
            if hasattr(record, key):
                doc[key] = getattr(record, key)
        if record.exc_text:
            doc["exc_text"] = record.exc_text
        elif record.exc_info:
            doc["exc_text"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


#: Loggers of the HTTP stack: they log request URLs (pre-signed ones carry signatures) at
#: INFO/DEBUG. The CLI routes their warnings only, through the same redaction.
THIRD_PARTY = ("httpx", "httpcore")


def setup_logging(*, level: str, logfile: str | None, logformat: str, to_console: bool,
                  secrets: list[str], console_level: str | None = None) -> None:
    """Configure the ``dapframe`` logger for one CLI run.

    ``console_level`` (default: ``level``) is the least level shown on stderr; the log file
    gets ``level``. Raises ``OSError`` when the log file cannot be opened.
    """
    logger = logging.getLogger("dapframe")
    for name in ("dapframe", *THIRD_PARTY):
        for h in list(logging.getLogger(name).handlers):
            logging.getLogger(name).removeHandler(h)
            h.close()
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False
    formatter: logging.Formatter = (
        JsonFormatter() if logformat == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    redacting = RedactingFilter(secrets)
    handlers: list[logging.Handler] = []
    if logfile:
        handlers.append(logging.FileHandler(logfile, encoding="utf-8"))
    if to_console:
        console = logging.StreamHandler(sys.stderr)
        console.setLevel(getattr(logging, (console_level or level).upper()))
        handlers.append(console)
    for h in handlers:
        h.setFormatter(formatter)
        h.addFilter(redacting)
        logger.addHandler(h)
        for name in THIRD_PARTY:
            logging.getLogger(name).addHandler(h)
    for name in THIRD_PARTY:
        third = logging.getLogger(name)
        third.setLevel(logging.WARNING)
        third.propagate = False
    if not handlers:
        logger.addHandler(logging.NullHandler())
