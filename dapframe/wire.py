"""Wire models of the DAP Query API, shared by the client (``dapframe.api``) and the emulator.

Each model knows its exact JSON key set (``to_json``) because the official client rejects
any extra key (reference section 9). Parsing (``from_json``) is lenient about extra keys,
so dapframe keeps working when the live API adds fields, but strict about required ones.

This module depends on the standard library only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "FORMATS",
    "JOB_STATUSES",
    "ErrorBody",
    "Job",
    "ObjectRef",
    "QueryRequest",
    "SchemaResponse",
    "TableList",
    "TokenResponse",
    "format_timestamp",
    "parse_timestamp",
]

Format = Literal["jsonl", "csv", "tsv", "parquet"]
FORMATS: tuple[str, ...] = ("jsonl", "csv", "tsv", "parquet")
MODES: tuple[str, ...] = ("expanded", "condensed")
JOB_STATUSES: tuple[str, ...] = ("waiting", "running", "complete", "failed")

_TS_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:?\d{2})$",
    re.IGNORECASE,
)


class WireError(ValueError):
    """A document does not follow the protocol (missing key, wrong type, bad timestamp)."""


def parse_timestamp(text: str) -> datetime:
    """Parse an RFC 3339 timestamp that carries a zone (``Z`` or an offset).

    Parameters
    ----------
    text : str
        E.g. ``2024-05-01T00:00:00Z`` or ``2024-05-01 00:00:00.123456789+02:00``.

    Returns
    -------
    datetime
        An aware datetime converted to UTC (fractions beyond microseconds are cut).

    Raises
    ------
    WireError
        If the text is not a zoned RFC 3339 timestamp.
    """
    m = _TS_RE.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise WireError(f"not an RFC 3339 timestamp with a zone: {text!r}")
    year, month, day, hh, mm, ss, frac, zone = m.groups()
    micro = int((frac or "0")[:6].ljust(6, "0"))
    iso_zone = "+00:00" if zone.upper() == "Z" else zone
    if len(iso_zone) == 5:  # +0200 -> +02:00
        iso_zone = iso_zone[:3] + ":" + iso_zone[3:]
    try:
        dt = datetime.fromisoformat(f"{year}-{month}-{day}T{hh}:{mm}:{ss}{iso_zone}")
    except ValueError as exc:
        raise WireError(f"not a valid timestamp: {text!r}") from exc
    return dt.replace(microsecond=micro).astimezone(UTC)


def format_timestamp(dt: datetime) -> str:
    """Render an aware datetime as the API does: UTC with ``Z``, 6 fractional digits if any.

    Raises
    ------
    ValueError
        For a naive datetime (its zone would be a guess).
    """
    if dt.tzinfo is None:
        raise ValueError("naive datetime: give a timezone, e.g. datetime(..., tzinfo=UTC)")
    dt = dt.astimezone(UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{dt.microsecond:06d}Z" if dt.microsecond else f"{base}Z"


def _require(doc: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    if not isinstance(doc, dict):
        raise WireError(f"{what}: expected a JSON object, got {type(doc).__name__}")
    if key not in doc:
        raise WireError(f"{what}: missing key {key!r}")
    value = doc[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise WireError(f"{what}: key {key!r} has the wrong type")
    return value


@dataclass(frozen=True)
class TokenResponse:
    """Answer of ``POST /ids/auth/login`` (exactly these four keys)."""

    access_token: str
    expires_in: int
    scope: str
    token_type: str = "Bearer"

    def to_json(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "expires_in": self.expires_in,
            "scope": self.scope,
            "token_type": self.token_type,
        }

    @classmethod
    def from_json(cls, doc: Any) -> TokenResponse:
        w = "login response"
        return cls(
            access_token=_require(doc, "access_token", str, w),
            expires_in=int(_require(doc, "expires_in", (int, float), w)),
            scope=str(doc.get("scope", "")),
            token_type=str(doc.get("token_type", "Bearer")),
        )


@dataclass(frozen=True)
class TableList:
    """Answer of ``GET /dap/query/{namespace}/table``."""

    tables: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"tables": list(self.tables)}

    @classmethod
    def from_json(cls, doc: Any) -> TableList:
        tables = _require(doc, "tables", list, "table list")
        if not all(isinstance(t, str) for t in tables):
            raise WireError("table list: every table name must be a string")
        return cls(tables=list(tables))


@dataclass(frozen=True)
class SchemaResponse:
    """Answer of ``GET /dap/query/{namespace}/table/{table}/schema``."""

    schema: dict[str, Any]
    version: int

    def to_json(self) -> dict[str, Any]:
        return {"schema": self.schema, "version": self.version}

    @classmethod
    def from_json(cls, doc: Any) -> SchemaResponse:
        w = "schema response"
        return cls(
            schema=_require(doc, "schema", dict, w), version=_require(doc, "version", int, w)
        )


@dataclass(frozen=True)
class QueryRequest:
    """Body of ``POST /dap/query/{namespace}/table/{table}/data``.

    The query is incremental exactly when ``since`` is set.
    """

    format: str
    mode: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    @property
    def incremental(self) -> bool:
        return self.since is not None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": self.format}
        if self.mode is not None:
            doc["mode"] = self.mode
        if self.since is not None:
            doc["since"] = format_timestamp(self.since)
        if self.until is not None:
            doc["until"] = format_timestamp(self.until)
        return doc


@dataclass(frozen=True)
class ObjectRef:
    """One result object of a complete job (``{"id": ...}``)."""

    id: str


@dataclass(frozen=True)
class ErrorBody:
    """The ``error`` object of an error response or of a failed job."""

    type: str
    uuid: str
    message: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "uuid": self.uuid, "message": self.message, **self.extra}


@dataclass(frozen=True)
class Job:
    """A query job, in any of its four statuses.

    Only the keys of the status's shape are rendered by ``to_json`` (reference section 5):
    ``waiting`` has ``id``/``status``; ``running`` adds ``expires_at``; ``complete`` adds
    ``objects``, ``schema_version`` and ``at`` (snapshot) or ``since``/``until``
    (incremental); ``failed`` adds ``error``.
    """

    id: str
    status: str
    expires_at: datetime | None = None
    objects: tuple[ObjectRef, ...] = ()
    schema_version: int | None = None
    at: datetime | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: ErrorBody | None = None

    @property
    def terminal(self) -> bool:
        return self.status in ("complete", "failed")

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"id": self.id, "status": self.status}
        if self.status != "waiting" and self.expires_at is not None:
            doc["expires_at"] = format_timestamp(self.expires_at)
        if self.status == "complete":
            doc["objects"] = [{"id": o.id} for o in self.objects]
            doc["schema_version"] = self.schema_version
            if self.since is not None:
                doc["since"] = format_timestamp(self.since)
                doc["until"] = format_timestamp(self.until or self.since)
            else:
                doc["at"] = format_timestamp(self.at or datetime.now(UTC))
        elif self.status == "failed":
            err = self.error or ErrorBody("ProcessingError", "", "job failed")
            doc["error"] = {"type": err.type, "uuid": err.uuid, "message": err.message}
        return doc

    @classmethod
    def from_json(cls, doc: Any) -> Job:
        w = "job"
        status = _require(doc, "status", str, w)
        if status not in JOB_STATUSES:
            raise WireError(f"job: unknown status {status!r}")

        def ts(key: str) -> datetime | None:
            value = doc.get(key)
            return parse_timestamp(value) if value is not None else None

        objects: tuple[ObjectRef, ...] = ()
        error = None
        if status == "complete":
            raw = _require(doc, "objects", list, w)
            objects = tuple(ObjectRef(id=_require(o, "id", str, "job object")) for o in raw)
            _require(doc, "schema_version", int, w)
            if "at" not in doc and "since" not in doc:
                raise WireError("job: a complete job needs 'at' or 'since'/'until'")
        elif status == "failed":
            e = _require(doc, "error", dict, w)
            error = ErrorBody(
                type=str(e.get("type", "")), uuid=str(e.get("uuid", "")),
                message=str(e.get("message", "")),
            )
        return cls(
            id=_require(doc, "id", str, w),
            status=status,
            expires_at=ts("expires_at"),
            objects=objects,
            schema_version=doc.get("schema_version"),
            at=ts("at"),
            since=ts("since"),
            until=ts("until"),
            error=error,
        )


def object_urls_from_json(doc: Any) -> dict[str, str]:
    """Parse the answer of ``POST /dap/object/url`` into ``{object id: url}``."""
    urls = _require(doc, "urls", dict, "object URLs")
    return {oid: _require(entry, "url", str, "object URL") for oid, entry in urls.items()}
