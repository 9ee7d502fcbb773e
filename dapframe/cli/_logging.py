"""Logging set-up of the CLI: plain or JSON lines, to stderr and/or a file, secrets redacted."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

_REDACTED = "**********"


class RedactingFilter(logging.Filter):
    """Replace every known secret in a record's rendered message (defence in depth)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for s in self.secrets:
                message = message.replace(s, _REDACTED)
            record.msg, record.args = message, None
            if record.exc_info:
                # Render the traceback now so it can be redacted too.
                text = logging.Formatter().formatException(record.exc_info)
                for s in self.secrets:
                    text = text.replace(s, _REDACTED)
                record.exc_text, record.exc_info = text, None
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


def setup_logging(*, level: str, logfile: str | None, logformat: str, to_console: bool,
                  secrets: list[str]) -> None:
    """Configure the ``dapframe`` logger for one CLI run."""
    logger = logging.getLogger("dapframe")
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    logger.setLevel(getattr(logging, level.upper()))
    logger.propagate = False
    formatter: logging.Formatter = (
        JsonFormatter() if logformat == "json"
        else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    redact = RedactingFilter(secrets)
    handlers: list[logging.Handler] = []
    if logfile:
        handlers.append(logging.FileHandler(logfile, encoding="utf-8"))
    if to_console:
        handlers.append(logging.StreamHandler(sys.stderr))
    for h in handlers:
        h.setFormatter(formatter)
        h.addFilter(redact)
        logger.addHandler(h)
    if not handlers:
        logger.addHandler(logging.NullHandler())
