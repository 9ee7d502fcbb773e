"""The emulator's HTTP server: every endpoint of the DAP Query API, on real sockets.

Built on the standard library's threading HTTP server so that it starts in milliseconds,
needs nothing beyond pyarrow/numpy, and can misbehave on purpose at the socket level
(dropped streams). Answers follow reference sections 2-9 to the key: the official client
rejects any extra key, so every JSON body is rendered from ``dapframe.wire`` models.
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import logging
import math
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa

from dapframe.emulator._data import Dataset
from dapframe.emulator._encode import SUFFIX, encode_part
from dapframe.emulator._faults import Faults
from dapframe.emulator._tables import TableSpec, json_schema
from dapframe.wire import (
    FORMATS,
    MODES,
    ErrorBody,
    Job,
    ObjectRef,
    SchemaResponse,
    TableList,
    TokenResponse,
    WireError,
    format_timestamp,
    parse_timestamp,
)

log = logging.getLogger("dapframe.emulator")

JOB_LIFETIME = timedelta(hours=24)
URL_LIFETIME = 15 * 60  # pre-signed URLs stay valid about 15 minutes (reference 3.5)
LOG_RETENTION = timedelta(days=30)  # canvas_logs keeps 30 days (reference 4)
QUERY_KEYS = {"format", "mode", "since", "until"}
JSON_KINDS = {"struct", "enum_array"}


class HttpError(Exception):
    """An error answer: status, error ``type``, message and extra fields (reference 8.1)."""

    def __init__(self, status: int, type_: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.extra = extra
        self.headers: dict[str, str] = {}

    def body(self) -> dict[str, Any]:
        err = ErrorBody(type=self.type, uuid=str(uuid.uuid4()), message=self.message,
                        extra=self.extra)
        return {"error": err.to_json()}


def _not_found(kind: str, id_: str, message: str) -> HttpError:
    return HttpError(404, "ObjectNotFound", message, id=id_, kind=kind)


@dataclass
class _JobState:
    job_id: str
    namespace: str
    table: str
    fmt: str
    mode: str
    since: datetime | None
    until: datetime | None
    at: datetime | None
    schema_version: int
    created: float
    fail: bool
    job_seconds: float
    objects: list[tuple[str, str]] = field(default_factory=list)  # (object id, file name)
    ready: threading.Event = field(default_factory=threading.Event)
    error: str | None = None

    def status(self, now: float) -> str:
        elapsed = now - self.created
        if elapsed < self.job_seconds / 3:
            return "waiting"
        if elapsed < self.job_seconds or not self.ready.is_set():
            return "running"
        return "failed" if (self.fail or self.error) else "complete"

    def render(self, now: float) -> Job:
        status = self.status(now)
        expires = (datetime.fromtimestamp(self.created, UTC) + JOB_LIFETIME).replace(microsecond=0)
        if status == "complete":
            return Job(id=self.job_id, status=status, expires_at=expires,
                       objects=tuple(ObjectRef(oid) for oid, _ in self.objects),
                       schema_version=self.schema_version, at=self.at, since=self.since,
                       until=self.until)
        if status == "failed":
            message = self.error or "the query job failed while processing (emulated fault)"
            return Job(id=self.job_id, status=status, expires_at=expires,
                       error=ErrorBody("ProcessingError", str(uuid.uuid4()), message))
        return Job(id=self.job_id, status=status, expires_at=expires)


class EmulatorState:
    """Everything one emulator holds: data, jobs, objects, tokens and faults.

    Parameters
    ----------
    dataset : Dataset
        The synthetic Canvas data and its change history.
    client_id, client_secret : str
        The only credentials the login endpoint accepts.
    rows_per_part : int
        Rows per result object (parts), so that parallel download matters.
    faults : Faults
        The fault switchboard.
    """

    def __init__(self, dataset: Dataset, *, client_id: str, client_secret: str,
                 rows_per_part: int = 100_000, faults: Faults | None = None,
                 max_blob_bytes: int = 2 << 30) -> None:
        self.dataset = dataset
        self.client_id = client_id
        self.client_secret = client_secret
        self.rows_per_part = rows_per_part
        self.faults = faults or Faults()
        self.lock = threading.RLock()  # guards the dataset, jobs and objects
        self.jobs: dict[str, _JobState] = {}
        self.dedup: dict[tuple[Any, ...], str] = {}
        self.blobs: dict[str, bytes] = {}  # file name -> bytes
        self.max_blob_bytes = max_blob_bytes
        self.signing_key = uuid.uuid4().bytes
        # Every bearer token issued, so that tests can look for leaks of them.
        self.issued_tokens: list[str] = []
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="emulator-job")
        # A separate pool for parts: job tasks wait on part tasks, so sharing one would deadlock.
        self.part_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="emulator-part")

    # -- tokens ------------------------------------------------------------------------------
    def issue_token(self) -> TokenResponse:
        now = time.time()
        ttl = self.faults.token_ttl
        header = {"alg": "HS256", "typ": "JWT"}
        payload = {"exp": math.ceil(now + ttl), "iat": now, "sub": self.client_id,
                   "jti": uuid.uuid4().hex}

        def seg(obj: dict[str, Any]) -> bytes:
            raw = json.dumps(obj, separators=(",", ":")).encode()
            return base64.urlsafe_b64encode(raw).rstrip(b"=")

        signing_input = seg(header) + b"." + seg(payload)
        sig = hmac.new(self.signing_key, signing_input, hashlib.sha256).digest()
        token = (signing_input + b"." + base64.urlsafe_b64encode(sig).rstrip(b"=")).decode()
        with self.lock:
            self.issued_tokens.append(token)
        return TokenResponse(access_token=token, expires_in=ttl, scope="dap:query",
                             token_type="Bearer")

    def check_token(self, authorization: str | None) -> None:
        if not authorization or not authorization.startswith("Bearer "):
            raise HttpError(401, "AuthenticationError", "missing bearer token")
        token = authorization[len("Bearer "):].strip()
        parts = token.split(".")
        if len(parts) != 3:
            raise HttpError(401, "AuthenticationError", "malformed bearer token")
        signing_input = (parts[0] + "." + parts[1]).encode()
        expected = base64.urlsafe_b64encode(
            hmac.new(self.signing_key, signing_input, hashlib.sha256).digest()).rstrip(b"=")
        if not hmac.compare_digest(expected, parts[2].encode()):
            raise HttpError(401, "AuthenticationError", "invalid bearer token")
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
        now = time.time()
        if payload["exp"] <= now or payload["iat"] < self.faults.revoked_before:
            raise HttpError(401, "AuthenticationError", "the access token has expired")

    # -- object URLs -------------------------------------------------------------------------
    def sign(self, name: str, expires: int) -> str:
        msg = f"{name}:{expires}".encode()
        return hmac.new(self.signing_key, msg, hashlib.sha256).hexdigest()[:32]

    # -- queries -----------------------------------------------------------------------------
    def spec_or_404(self, namespace: str, table: str | None = None) -> Any:
        if namespace not in self.dataset.namespaces():
            raise _not_found("namespace", namespace, f"namespace '{namespace}' does not exist")
        if table is None:
            return None
        if table not in self.dataset.tables(namespace):
            raise _not_found("table", table,
                             f"table '{table}' does not exist in namespace '{namespace}'")
        return self.dataset.spec(namespace, table)

    def start_query(self, namespace: str, table: str, body: Any) -> Job:
        spec = self.spec_or_404(namespace, table)
        if not isinstance(body, dict):
            raise HttpError(400, "ValidationError", "the request body must be a JSON object",
                            location={"line": 1, "column": 1, "character": 1})
        unknown = set(body) - QUERY_KEYS
        if unknown:
            raise HttpError(400, "ValidationError",
                            f"unknown query field(s): {', '.join(sorted(unknown))}",
                            location={"line": 1, "column": 1, "character": 1})
        fmt = body.get("format")
        if fmt not in FORMATS:
            raise HttpError(400, "ValidationError",
                            f"format must be one of {', '.join(FORMATS)}; got {fmt!r}",
                            location={"line": 1, "column": 1, "character": 1})
        mode = body.get("mode", "expanded")
        if mode not in MODES:
            raise HttpError(400, "ValidationError",
                            f"mode must be one of {', '.join(MODES)}; got {mode!r}",
                            location={"line": 1, "column": 1, "character": 1})
        since = self._ts(body, "since")
        until = self._ts(body, "until")
        if until is not None and since is None:
            raise HttpError(400, "ValidationError", "'until' requires 'since'",
                            location={"line": 1, "column": 1, "character": 1})
        if since is not None and until is not None and until < since:
            raise HttpError(400, "ValidationError", "'until' must not be before 'since'",
                            location={"line": 1, "column": 1, "character": 1})
        with self.lock:
            clock = self.dataset.clock
            step = self.dataset.step
            if since is not None:
                earliest = clock - LOG_RETENTION if namespace == "canvas_logs" else None
                if (earliest is not None and since < earliest) or since > clock:
                    raise HttpError(
                        400, "OutOfRangeError",
                        f"'since' must lie between {_iso(earliest)} and {_iso(clock)}",
                        since=_iso(earliest or self.dataset.commit_time(0) - timedelta(days=3650)),
                        until=_iso(clock))
                until = min(until, clock) if until is not None else clock
            key = (namespace, table, json.dumps(body, sort_keys=True), step, spec.version)
            existing = self.dedup.get(key)
            if existing is not None:
                job = self.jobs[existing]
                if job.status(time.time()) != "failed":
                    return job.render(time.time())
            job = _JobState(
                job_id=str(uuid.uuid4()), namespace=namespace, table=table, fmt=fmt, mode=mode,
                since=since, until=until, at=None if since is not None else clock,
                schema_version=spec.version, created=time.time(),
                fail=self.faults.take_job_failure(), job_seconds=self.faults.job_seconds)
            if since is None:
                records = self.dataset.snapshot(namespace, table)
            else:
                assert until is not None
                records = self.dataset.changes(namespace, table, since, until)
            patches = self.faults.data_patches.get(f"{namespace}.{table}")
            if patches:
                records = _patch_records(records, patches)
            self._evict(time.time())
            self.jobs[job.job_id] = job
            self.dedup[key] = job.job_id
        if job.job_seconds <= 0:
            # Instant jobs: answer the POST with the complete job (HTTP 200), as the API may.
            self._encode_job(job, records, spec)
        else:
            self.pool.submit(self._encode_job, job, records, spec)
        return job.render(time.time())

    def _evict(self, now: float) -> None:
        """Forget jobs past their 24 h lifetime, then the oldest while objects exceed the cap.

        A long-running emulator (Binder, demos) would otherwise keep every result in memory.
        The API answers 404 for an expired job or object, and so does the emulator then.
        """
        lifetime = JOB_LIFETIME.total_seconds()
        held = sum(len(b) for b in self.blobs.values())
        for job_id, js in list(self.jobs.items()):  # dicts keep creation order: oldest first
            if now - js.created < lifetime and held <= self.max_blob_bytes:
                break
            if not js.ready.is_set():
                continue  # still encoding: its parts are not stored yet
            for _, name in js.objects:
                held -= len(self.blobs.pop(f"{job_id}/{name}", b""))
            del self.jobs[job_id]
        self.dedup = {k: v for k, v in self.dedup.items() if v in self.jobs}

    @staticmethod
    def _ts(body: dict[str, Any], key: str) -> datetime | None:
        value = body.get(key)
        if value is None:
            return None
        try:
            return parse_timestamp(value)
        except WireError:
            raise HttpError(400, "ValidationError",
                            f"'{key}' must be an RFC 3339 date-time with a zone, got {value!r}",
                            location={"line": 1, "column": 1, "character": 1}) from None

    def _encode_job(self, job: _JobState, records: pa.Table, spec: TableSpec) -> None:
        json_cols = frozenset(f"value.{c.name}" for c in spec.columns if c.kind in JSON_KINDS)
        # Declared struct fields give every part of a table the same expanded header.
        fields = {f"value.{c.name}": c.struct_fields for c in spec.columns if c.kind == "struct"}

        def encode(part: pa.Table) -> bytes:
            return encode_part(part, job.fmt, json_columns=json_cols, mode=job.mode,
                               struct_fields=fields)

        try:
            n = records.num_rows
            step = max(1, self.rows_per_part)
            slices = [records.slice(i, step) for i in range(0, n, step)]
            suffix = SUFFIX[job.fmt]
            # Parts are encoded in parallel: zlib and pyarrow release the GIL.
            datas = (list(self.part_pool.map(encode, slices)) if len(slices) > 1
                     else [encode(s) for s in slices])
            objects = []
            with self.lock:
                for i, data in enumerate(datas):
                    name = f"part-{i:05d}-{job.job_id[:8]}{suffix}"
                    self.blobs[f"{job.job_id}/{name}"] = data
                    objects.append((f"{job.job_id}/part-{i:05d}", name))
                job.objects = objects
        except Exception as exc:  # a bug must surface as a failed job, not a hung one
            log.exception("encoding job %s failed", job.job_id)
            job.error = f"ProcessingError: {type(exc).__name__}"
        finally:
            job.ready.set()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.part_pool.shutdown(wait=False, cancel_futures=True)


def _patch_records(records: pa.Table, patches: dict[str, Any]) -> pa.Table:
    """The records with each patched ``value`` column's first value replaced (bad-input tests).

    ``bytes`` go into a string column unchecked, so invalid UTF-8 reaches the encoders.
    """
    if records.num_rows == 0:
        return records
    for column, value in patches.items():
        i = records.schema.get_field_index(f"value.{column}")
        if i < 0:
            continue
        field_ = records.schema.field(i)
        values = records.column(i).to_pylist()
        if isinstance(value, bytes):
            raw = [v.encode() if isinstance(v, str) else v for v in values]
            raw[0] = value
            arr = pa.array(raw, pa.binary()).view(field_.type)
        else:
            values[0] = value
            arr = pa.array(values, field_.type)
        records = records.set_column(i, field_, arr)
    return records


def _iso(dt: datetime | None) -> str | None:
    return None if dt is None else format_timestamp(dt)


_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(r"^/ids/auth/login$"), "login"),
    ("GET", re.compile(r"^/dap/query/(?P<ns>[^/]+)/table$"), "tables"),
    ("GET", re.compile(r"^/dap/query/(?P<ns>[^/]+)/table/(?P<table>[^/]+)/schema$"), "schema"),
    ("POST", re.compile(r"^/dap/query/(?P<ns>[^/]+)/table/(?P<table>[^/]+)/data$"), "query"),
    ("GET", re.compile(r"^/dap/job/(?P<job>[^/]+)$"), "job"),
    ("POST", re.compile(r"^/dap/object/url$"), "object_url"),
    ("GET", re.compile(r"^/emulator/objects/(?P<job>[^/]+)/(?P<name>[^/]+)$"), "object"),
    ("POST", re.compile(r"^/emulator/tick$"), "tick"),
    ("POST", re.compile(r"^/emulator/schema-bump$"), "bump"),
    ("POST", re.compile(r"^/emulator/faults$"), "faults"),
    ("POST", re.compile(r"^/emulator/faults/reset$"), "faults_reset"),
    ("GET", re.compile(r"^/emulator/state$"), "state"),
]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dapframe-emulator"
    sys_version = ""
    server: _Server

    # Quiet by default; the server's logger says what happened at DEBUG.
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    # -- plumbing ----------------------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _json_body(self) -> Any:
        raw = self._body()
        try:
            return json.loads(raw or b"null")
        except json.JSONDecodeError as exc:
            raise HttpError(400, "ValidationError", f"malformed JSON: {exc.msg}",
                            location={"line": exc.lineno, "column": exc.colno,
                                      "character": exc.pos + 1}) from None

    def _send_json(self, status: int, doc: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        for m, pattern, name in _ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if m != method:
                self._send_json(405, HttpError(405, "MethodNotAllowed",
                                               f"{method} is not allowed on {path}").body())
                return
            try:
                if state.faults.latency and name not in ("object", "tick", "bump", "faults",
                                                         "faults_reset", "state"):
                    time.sleep(state.faults.latency)
                self._gate(name)
                getattr(self, f"_h_{name}")(state, query, **match.groupdict())
            except HttpError as err:
                self._send_json(err.status, err.body(), err.headers)
            except (BrokenPipeError, ConnectionResetError):
                pass
            except Exception:
                log.exception("emulator error on %s %s", method, path)
                self._send_json(500, HttpError(500, "ProcessingError", "internal error").body())
            return
        self._body()
        self._send_json(404, _not_found("path", path, f"no such endpoint: {method} {path}").body())

    def _gate(self, name: str) -> None:
        """Apply injected bursts and rate limits before the real handler runs."""
        faults = self.server.state.faults
        if name in ("tick", "bump", "faults", "faults_reset", "state"):
            return
        burst = faults.take_burst(name)
        if burst is not None:
            self._body()
            if burst.status == 429:
                err = HttpError(429, "TooManyRequests", "rate limit exceeded (emulated burst)")
                err.headers["Retry-After"] = _retry_after(burst.retry_after or "1")
            else:
                err = HttpError(burst.status, "ProcessingError",
                                f"emulated server error {burst.status}")
            raise err
        if name in ("login", "object"):
            return
        wait = faults.rate_limited(name)
        if wait is not None:
            self._body()
            err = HttpError(429, "TooManyRequests",
                            f"rate limit of {faults.limits[name]} calls per minute exceeded")
            err.headers["Retry-After"] = str(max(1, int(wait + 0.999)))
            raise err

    # -- DAP endpoints -----------------------------------------------------------------------
    def _h_login(self, state: EmulatorState, query: dict[str, str]) -> None:
        form = parse_qs(self._body().decode("utf-8", "replace"))
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            raise HttpError(401, "AuthenticationError", "missing Basic credentials")
        try:
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        except Exception:
            raise HttpError(401, "AuthenticationError", "malformed Basic credentials") from None
        if form.get("grant_type") != ["client_credentials"]:
            raise HttpError(400, "ValidationError", "grant_type must be client_credentials",
                            location={"line": 1, "column": 1, "character": 1})
        ok = hmac.compare_digest(cid.encode(), state.client_id.encode()) and hmac.compare_digest(
            secret.encode(), state.client_secret.encode())
        if not ok:
            raise HttpError(401, "AuthenticationError", "invalid client credentials")
        self._send_json(200, state.issue_token().to_json())

    def _auth(self, state: EmulatorState) -> None:
        state.check_token(self.headers.get("Authorization"))

    def _h_tables(self, state: EmulatorState, query: dict[str, str], ns: str) -> None:
        self._auth(state)
        with state.lock:
            state.spec_or_404(ns)
            doc = TableList(tables=state.dataset.tables(ns)).to_json()
        self._send_json(200, doc)

    def _h_schema(self, state: EmulatorState, query: dict[str, str], ns: str, table: str) -> None:
        self._auth(state)
        with state.lock:
            spec = state.spec_or_404(ns, table)
            doc = SchemaResponse(schema=json_schema(spec), version=spec.version).to_json()
            patches = state.faults.schema_patches.get(f"{ns}.{table}", {})
            for column, prop in patches.items():
                doc["schema"]["properties"]["value"]["properties"][column] = prop
        self._send_json(200, doc)

    def _h_query(self, state: EmulatorState, query: dict[str, str], ns: str, table: str) -> None:
        body = self._json_body()
        self._auth(state)
        job = state.start_query(ns, table, body)
        self._send_json(200 if job.terminal else 202, job.to_json())

    def _h_job(self, state: EmulatorState, query: dict[str, str], job: str) -> None:
        self._auth(state)
        with state.lock:
            js = state.jobs.get(job)
        if js is None:
            raise _not_found("job", job, f"no such job '{job}' (expired or unknown)")
        rendered = js.render(time.time())
        self._send_json(200 if rendered.terminal else 202, rendered.to_json())

    def _h_object_url(self, state: EmulatorState, query: dict[str, str]) -> None:
        body = self._json_body()
        self._auth(state)
        if not isinstance(body, list) or not all(
                isinstance(o, dict) and isinstance(o.get("id"), str) for o in body):
            raise HttpError(400, "ValidationError",
                            'the body must be a JSON array of {"id": "<object id>"}',
                            location={"line": 1, "column": 1, "character": 1})
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        expires = int(time.time()) + URL_LIFETIME
        urls: dict[str, dict[str, str]] = {}
        with state.lock:
            for entry in body:
                oid = entry["id"]
                job_id, _, _part = oid.partition("/")
                js = state.jobs.get(job_id)
                names = dict(js.objects) if js is not None else {}
                if oid not in names:
                    raise _not_found("object", oid, f"no such object '{oid}' (expired or unknown)")
                name = names[oid]
                sig = state.sign(f"{job_id}/{name}", expires)
                urls[oid] = {"url": f"http://{host}/emulator/objects/{job_id}/{name}"
                                    f"?X-Emu-Expires={expires}&X-Emu-Signature={sig}"}
        self._send_json(200, {"urls": urls})

    def _h_object(self, state: EmulatorState, query: dict[str, str], job: str, name: str) -> None:
        key = f"{job}/{name}"
        expires = query.get("X-Emu-Expires", "")
        sig = query.get("X-Emu-Signature", "")
        expired = state.faults.take_expired_url()
        valid = expires.isdigit() and hmac.compare_digest(sig, state.sign(key, int(expires)))
        if not valid or expired or int(expires or 0) < time.time():
            # S3 answers an expired or forged pre-signed URL with 403 and an XML body.
            data = (b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code>'
                    b"<Message>Request has expired</Message></Error>")
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        with state.lock:
            blob = state.blobs.get(key)
        if blob is None:
            data = b"<Error><Code>NoSuchKey</Code></Error>"
            self.send_response(404)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        corruption = state.faults.take_corruption()
        if corruption is not None:
            blob = _corrupt(blob, corruption)
        size = len(blob)
        span = _byte_range(self.headers.get("Range"), size)
        if span == "unsatisfiable":
            data = b"<Error><Code>InvalidRange</Code></Error>"
            self.send_response(416)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        drop = state.faults.take_drop()
        # No Content-Encoding: the bytes are a gzip *file* the client stores as is (ref 3.6).
        # Like S3, one byte range is served as 206 with Content-Range.
        if isinstance(span, tuple):
            first, last = span
            blob = blob[first: last + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(blob)))
        self.end_headers()
        if drop is not None:
            self.wfile.write(blob[: min(drop, max(0, len(blob) - 1))])
            self.wfile.flush()
            self.close_connection = True
            # Tear the connection down mid-body so the client sees an incomplete read.
            self.connection.shutdown(2)
            return
        view = memoryview(blob)
        rate = state.faults.object_bandwidth
        # Paced: about 20 writes a second (at most 64 KiB each), so that objects smaller than
        # one chunk are paced too instead of going out at once.
        chunk = 1 << 20 if not rate else max(1024, min(1 << 16, int(rate / 20)))
        start = time.monotonic()
        for i in range(0, len(blob), chunk):
            self.wfile.write(view[i: i + chunk])
            if rate:
                # Pace the stream: never ahead of rate bytes per second since the start.
                ahead = (i + chunk) / rate - (time.monotonic() - start)
                if ahead > 0:
                    time.sleep(ahead)

    # -- emulator control --------------------------------------------------------------------
    def _h_tick(self, state: EmulatorState, query: dict[str, str]) -> None:
        self._body()
        steps = int(query.get("steps", "1"))
        with state.lock:
            step = state.dataset.tick(steps)
            clock = state.dataset.clock
        self._send_json(200, {"step": step, "clock": _iso(clock)})

    def _h_bump(self, state: EmulatorState, query: dict[str, str]) -> None:
        self._body()
        ns, table = query.get("namespace", ""), query.get("table", "")
        with state.lock:
            state.spec_or_404(ns, table)
            spec = state.dataset.schema_bump(ns, table)
        self._send_json(200, {"namespace": ns, "table": table, "version": spec.version})

    def _h_faults(self, state: EmulatorState, query: dict[str, str]) -> None:
        doc = self._json_body()
        if not isinstance(doc, dict):
            raise HttpError(400, "ValidationError", "the body must be a JSON object")
        try:
            state.faults.apply(doc)
        except (ValueError, KeyError, TypeError) as exc:
            raise HttpError(400, "ValidationError", str(exc)) from None
        self._send_json(200, state.faults.state())

    def _h_faults_reset(self, state: EmulatorState, query: dict[str, str]) -> None:
        self._body()
        state.faults.reset()
        self._send_json(200, state.faults.state())

    def _h_state(self, state: EmulatorState, query: dict[str, str]) -> None:
        with state.lock:
            doc = {"step": state.dataset.step, "clock": _iso(state.dataset.clock),
                   "jobs": len(state.jobs), "faults": state.faults.state()}
        self._send_json(200, doc)


def _corrupt(blob: bytes, mode: str) -> bytes:
    """Damaged object bytes for :meth:`Faults.corrupt_objects` (length consistent)."""
    if mode == "truncate":
        return blob[: max(1, len(blob) // 2)]
    # Garble: overwrite a run in the middle, past any header, so the data inside breaks.
    middle, run = len(blob) // 2, max(1, min(64, len(blob) // 4))
    return blob[:middle] + bytes(b ^ 0x5A for b in blob[middle:middle + run]) + \
        blob[middle + run:]


def _retry_after(spec: str) -> str:
    if spec == "date":
        # HTTP-date has whole seconds: two seconds ahead so the wait stays positive.
        return email.utils.formatdate(time.time() + 2, usegmt=True)
    return spec


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], state: EmulatorState) -> None:
        super().__init__(address, _Handler)
        self.state = state

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up mid-request is routine here (dropped downloads, killed runs):
        # socketserver would print a traceback to stderr; log it instead.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


def make_server(state: EmulatorState, host: str = "127.0.0.1", port: int = 0) -> _Server:
    """Bind the emulator's HTTP server (``port=0`` picks a free port)."""
    return _Server((host, port), state)



def _byte_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """One ``bytes=first-last`` range (or ``first-`` or ``-suffix``) as S3 reads it.

    Returns (first, last) inclusive, ``None`` for the whole object (no header, or one this
    server ignores, as S3 ignores several ranges), or ``"unsatisfiable"`` (416).
    """
    if not header:
        return None
    unit, _, spec = header.strip().partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = (part.strip() for part in spec.partition("-"))
    if (not dash or (first_text and not first_text.isdigit())
            or (last_text and not last_text.isdigit()) or not (first_text or last_text)):
        return None
    if not first_text:  # the last N bytes
        n = int(last_text)
        return (max(0, size - n), size - 1) if n > 0 and size > 0 else "unsatisfiable"
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size:
        return "unsatisfiable"
    if last < first:
        return None
    return first, min(last, size - 1)
