"""Deterministic synthetic Canvas data with a change history.

:class:`Dataset` holds, for every emulated table, an append-only *version log*:
one Arrow chunk per committed step, each row one version of one key
(``meta.ts``, ``meta.action``, ``key.*``, ``value.*``; see
``docs/emulator-internals.md``). Step 0 is the initial state; every
:meth:`Dataset.tick` appends one chunk per table with inserts, updates and
(leaf tables only) hard deletes. Snapshots and incremental results are both
computed from that log, so applying ``changes(commit_time(0), commit_time(k))``
to ``snapshot(step=0)`` reproduces ``snapshot(step=k)`` by construction.

All generation is vectorised (numpy + pyarrow compute); per-row Python loops
are avoided so that ``Dataset(scale=500)`` (about a million submissions) builds
in seconds. Randomness comes from a :class:`numpy.random.Generator` seeded per
(seed, table, step) with ``zlib.crc32`` of the table name, so the same seed,
scale and sequence of ticks and schema bumps always give identical tables.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Final, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from dapframe.emulator._tables import (
    OVERSIZED,
    TABLES,
    TIMESTAMP_TYPE,
    UNSPECIFIED,
    Column,
    TableSpec,
    arrow_schema,
    arrow_type,
    bump,
)

__all__ = ["BASE_ROW_COUNTS", "DEFAULT_START", "HOSTILE_STRINGS", "Dataset"]

I64 = npt.NDArray[np.int64]
BoolArr = npt.NDArray[np.bool_]

#: Default commit time of step 0.
DEFAULT_START: Final = datetime(2026, 11, 1, tzinfo=UTC)

#: Initial row counts at ``scale=1``; counts scale linearly (minimum 1).
BASE_ROW_COUNTS: Final[dict[str, int]] = {
    "accounts": 5,
    "enrollment_terms": 4,
    "users": 200,
    "pseudonyms": 200,
    "courses": 20,
    "course_sections": 30,
    "enrollments": 600,
    "assignments": 100,
    "submissions": 2000,
    "web_logs": 2000,
}

# Generation order: parents before children, so references always resolve.
_ORDER: Final[tuple[tuple[str, str], ...]] = (
    ("canvas", "accounts"),
    ("canvas", "enrollment_terms"),
    ("canvas", "users"),
    ("canvas", "courses"),
    ("canvas", "course_sections"),
    ("canvas", "assignments"),
    ("canvas", "pseudonyms"),
    ("canvas", "enrollments"),
    ("canvas", "submissions"),
    ("canvas_logs", "web_logs"),
)

# Only leaf tables are hard-deleted; parents soft-delete via workflow_state so
# every foreign key in every snapshot still resolves.
_LEAVES: Final = frozenset({"pseudonyms", "enrollments", "submissions"})

# Per-step change rates, relative to the table's initial (scale-derived) size so
# that step volume stays constant instead of compounding.
_RATE_INSERT: Final = 0.006
_RATE_UPDATE: Final = 0.012
_RATE_DELETE: Final = 0.003
_RATE_APPEND: Final = 0.015  # web_logs
_RATE_REPEAT: Final = 0.02  # web_logs rows repeated verbatim within a step
_RATE_COLUMN_CHANGE: Final = 0.3  # chance that an update touches a given mutable column
_RATE_SOFT_DELETE: Final = 0.1  # share of parent-table updates that soft-delete

_RATE_HOSTILE: Final = 0.03
_RATE_UNSPECIFIED: Final = 0.01
_RATE_OVERSIZED: Final = 0.03
_RATE_BUMPED_ENUM: Final = 0.1

_US: Final = 1_000_000
_MS_US: Final = 1_000
_DAY_US: Final = 86_400 * _US
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)

# Columns an update never changes (besides the key): identity and links.
_FROZEN_COMMON: Final = frozenset({"created_at", "uuid", "lti_context_id"})
_FROZEN: Final[dict[str, frozenset[str]]] = {
    "accounts": frozenset({"parent_account_id"}),
    "pseudonyms": frozenset({"user_id", "account_id", "unique_id"}),
    "courses": frozenset({"account_id", "enrollment_term_id"}),
    "course_sections": frozenset({"course_id", "enrollment_term_id", "default_section"}),
    "enrollments": frozenset({"user_id", "course_id", "course_section_id", "type", "role_id"}),
    "assignments": frozenset({"context_id", "context_type"}),
    "submissions": frozenset({"assignment_id", "course_id", "user_id"}),
}

# Columns that an update changes together (one coin flip per row and group), so
# e.g. a re-graded submission changes score and grade consistently.
_GROUPS: Final[dict[str, tuple[tuple[str, ...], ...]]] = {
    "users": (("name", "sortable_name", "short_name"),),
    "courses": (("name", "course_code"), ("start_at", "conclude_at")),
    "enrollment_terms": (("start_at", "end_at"),),
    "enrollments": (("start_at", "end_at"),),
    "assignments": (("due_at", "unlock_at", "lock_at", "all_day", "all_day_date",
                     "peer_reviews_due_at"),),
    "submissions": ((
        "workflow_state", "score", "grade", "published_score", "published_grade", "graded_at",
        "grader_id", "posted_at", "submitted_at", "submission_type", "attempt", "body", "url",
        "attachment_ids", "media_comment_id", "media_comment_type", "media_object_id",
        "late_policy_status", "points_deducted",
    ),),
}

# Columns where hostile strings (quotes, tabs, NULL, \N, emoji, ...) appear now and then.
_HOSTILE_COLUMNS: Final[dict[str, tuple[str, ...]]] = {
    "accounts": ("name",),
    "users": ("name", "sortable_name", "short_name", "pronouns"),
    "courses": ("name", "course_code", "syllabus_body", "public_description"),
    "course_sections": ("name",),
    "enrollment_terms": ("name",),
    "assignments": ("title", "description"),
    "submissions": ("body",),
    "web_logs": ("user_agent",),
}

# --------------------------------------------------------------------------------------
# Value pools
# --------------------------------------------------------------------------------------

HOSTILE_STRINGS: Final[tuple[str, ...]] = (
    "O'Brien \"the Great\"",
    "Smith, John",
    "tab\tseparated",
    "line one\nline two",
    "carriage\rreturn",
    "windows\r\nline end",
    "back\\slash \\t not a tab",
    "NULL",
    "\\N",
    "",
    "Émilie Dupré-Lefèvre",
    "中文名字",
    "emoji 🎓📚✨",
    "naïve café — déjà vu",
    "'; DROP TABLE users; --",
    "<b>bold</b> & \"quoted\", 'single'",
    "  padded  ",
    "Zoë\tO'Neil,\n\"Jr.\"\\",
)

_FIRST_NAMES: Final = (
    "Ada", "Alan", "Amara", "Ben", "Chloé", "Chen", "Daniel", "Dmitri", "Elena", "Emma",
    "Fatima", "François", "Grace", "Hiro", "Ines", "Isaac", "Jamal", "José", "Kai", "Katarzyna",
    "Leila", "Liam", "Łukasz", "Maria", "Mateo", "Mei", "Noah", "Nia", "Olivia", "Omar",
    "Priya", "Quinn", "Rafael", "Ravi", "Sara", "Søren", "Tomás", "Uma", "Victor", "Wei",
    "Xavier", "Yara", "Yusuf", "Zoë", "Ana", "Björn", "Chiara", "Dara", "明", "Siobhán",
)
_LAST_NAMES: Final = (
    "Adams", "Ahmed", "Brown", "Castro", "Chen", "Da Silva", "Dubois", "Evans", "Fischer",
    "García", "Gupta", "Hansen", "Ibrahim", "Ivanova", "Jones", "Kim", "Kowalski", "Lee",
    "López", "Martin", "Müller", "Nakamura", "Nguyễn", "O'Connor", "Okafor", "Patel",
    "Petrov", "Quispe", "Rossi", "Santos", "Schmidt", "Singh", "Smith", "Tanaka", "Taylor",
    "Van der Berg", "Wang", "王", "Williams", "Yilmaz", "Zhang", "Ó Súilleabháin",
)
_SUBJECTS: Final = (
    ("Biology", "BIO"), ("Chemistry", "CHEM"), ("Physics", "PHYS"), ("Mathematics", "MATH"),
    ("Statistics", "STAT"), ("Computer Science", "CS"), ("History", "HIST"),
    ("Philosophy", "PHIL"), ("Economics", "ECON"), ("Psychology", "PSY"),
    ("English Literature", "ENGL"), ("French", "FREN"), ("Art & Design", "ART"),
    ("Music Theory", "MUS"), ("Sociology", "SOC"), ("Engineering", "ENGR"),
)
_ACCOUNT_NAMES: Final = (
    "Example University", "Faculty of Science", "Faculty of Arts", "School of Law",
    "School of Medicine", "Business School", "Continuing Education", "Sandbox",
    "Department of Mathematics", "Département de Français",
)
_ASSIGNMENT_KINDS: Final = (
    "Homework", "Quiz", "Essay", "Lab Report", "Project", "Reading Response", "Midterm",
    "Final Exam", "Discussion", "Problem Set",
)
_SENTENCES: Final = (
    "Read chapter three and summarise the main argument.",
    "Submit your answers as a single PDF file.",
    "Late submissions lose ten percent per day, up to 50%.",
    "Use at least three peer-reviewed sources; cite them in APA style.",
    "Work in pairs, but each student submits their own report.",
    "The rubric is attached below; see \"Grading criteria\".",
    "Office hours: Tuesdays 14:00–15:30, room B-204.",
    "Show all steps of your derivation; partial credit is given.",
    "Discuss the results in no more than 500 words.",
    "Bring your laptop; the lab uses Python 3.12 and NumPy.",
    "Résumé the lecture notes in your own words.",
    "Deadline extended to Friday, 23:59 local time.",
)
_TIME_ZONES: Final = (
    "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
    "Europe/London", "Europe/Amsterdam", "Australia/Sydney", "Asia/Tokyo", "Etc/UTC",
)
_LOCALES: Final = ("en", "en-GB", "en-AU", "es", "fr", "de", "nl", "pt-BR", "zh-Hans", "ar", "ja")
_USER_AGENTS: Final = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "candroid/7.9.0 (Android 14; Pixel 8)",
    "iCanvas/7.12 (com.instructure.icanvas; build:3; iOS 18.1.0) Alamofire/5.9.1",
    "python-requests/2.32.3",
    "curl/8.5.0",
)
_CONTROLLERS: Final = (
    "courses", "assignments", "submissions", "users", "discussion_topics", "files",
    "quizzes/quizzes", "login/canvas", "context_modules", "gradebooks", "wiki_pages",
    "api/v1/courses", "conversations",
)
_ACTIONS: Final = ("show", "index", "create", "update", "destroy", "api_index", "speed_grader")
_ALNUM: Final = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEX: Final = b"0123456789abcdef"


def _json(obj: object) -> str:
    """Compact JSON text as carried by struct/array columns."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def _long_texts() -> tuple[str, ...]:
    """A few long documents (2 KB to 40 KB) for text columns."""
    para = " ".join(_SENTENCES)
    return tuple(
        "".join(f"<p>{i}. {para}</p>\n" for i in range(reps)) for reps in (3, 10, 30, 60)
    )


_LONG_TEXTS: Final = _long_texts()


@lru_cache(maxsize=256)
def _pool(values: tuple[str, ...]) -> pa.Array:
    """Arrow array of pool values (cached: pools are reused for every batch)."""
    return pa.array(values, type=pa.string())


@lru_cache(maxsize=64)
def _lut(weights: tuple[float, ...]) -> npt.NDArray[np.int32]:
    """Lookup table turning a uniform integer into a weighted category index.

    Gathering from a 4096-entry table is several times faster than
    ``Generator.choice(p=...)`` or a ``searchsorted`` over a CDF.
    """
    w = np.asarray(weights, dtype=np.float64)
    counts = np.maximum(np.round(w / w.sum() * 4096).astype(np.int64), 0)
    counts[np.argmax(counts)] += 4096 - counts.sum()
    return np.repeat(np.arange(len(w), dtype=np.int32), counts)


@lru_cache(maxsize=64)
def _enum_array_pool(members: tuple[str, ...]) -> tuple[str, ...]:
    """JSON array texts combining one to three enum members (incl. the sentinel once)."""
    real = [m for m in members if m != UNSPECIFIED]
    out = [_json([m]) for m in real]
    out += [_json([a, b]) for i, a in enumerate(real) for b in real[i + 1 : i + 3]]
    out += [_json(real[i : i + 3]) for i in range(0, max(len(real) - 2, 0), 3)]
    out.append(_json([real[0], UNSPECIFIED]) if real else _json([UNSPECIFIED]))
    return tuple(out)


@lru_cache(maxsize=64)
def _struct_pool(table: str, column: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    """JSON object texts for a struct column: random non-empty subsets of its fields."""
    rng = np.random.default_rng(zlib.crc32(f"{table}.{column}".encode()))
    choices: dict[str, tuple[str, ...]] = {
        "course_format": ("on_campus", "online", "blended"),
        "originality_report_visibility": ("immediate", "after_grading", "after_due_date", "never"),
        "exclude_small_matches_type": ("words", "percent"),
        "exclude_small_matches_value": ("0", "5", "10", "20"),
        "submit_papers_to": ("0", "1"),
        "s_paper_check": ("0", "1"),
        "internet_check": ("0", "1"),
        "journal_check": ("0", "1"),
        "exclude_biblio": ("0", "1"),
        "exclude_quoted": ("0", "1"),
    }
    out = []
    for _ in range(64):
        keep = rng.random(len(fields)) < 0.6
        keep[rng.integers(len(fields))] = True  # never "{}": all-null structs are null
        obj = {}
        for f, k in zip(fields, keep, strict=True):
            if k:
                opts = choices.get(f, ("true", "false"))
                obj[f] = opts[int(rng.integers(len(opts)))]
        out.append(_json(obj))
    return tuple(out)


_N_IPV4: Final = 4096
_N_IPV6: Final = 1024
_QUERIES: Final = ("", "?page=2&per_page=50", '?q=caf%C3%A9,"x"', "?include[]=user")
_SCORES: Final = tuple(f"{i / 10:.1f}" for i in range(1001))


@lru_cache(maxsize=1)
def _ip_pool() -> pa.Array:
    """IPv4 addresses followed by IPv6 addresses (users reuse addresses, so a pool is realistic)."""
    rng = np.random.default_rng(4242)
    octets = rng.integers([1, 0, 0, 1], [224, 256, 256, 255], (_N_IPV4, 4))
    v4 = [".".join(map(str, row)) for row in octets]
    groups = rng.integers(0, 65536, (_N_IPV6, 6))
    v6 = ["2001:db8:" + ":".join(f"{x:x}" for x in row) for row in groups]
    return pa.array(v4 + v6, pa.string())


@lru_cache(maxsize=2)
def _text_pool(html: bool) -> tuple[str, ...]:
    """Two-sentence texts (optionally as HTML paragraphs), then the long documents."""
    texts = [f"{a} {b}" for a in _SENTENCES for b in _SENTENCES]
    if html:
        texts = [f"<p>{t}</p>" for t in texts]
    return (*texts, *_LONG_TEXTS)


@lru_cache(maxsize=1)
def _name_pools() -> tuple[pa.Array, pa.Array, pa.Array]:
    """Every first/last name combination as (name, sortable_name, first name)."""
    pairs = [(f, last) for f in _FIRST_NAMES for last in _LAST_NAMES]
    return (
        pa.array([f"{f} {last}" for f, last in pairs], pa.string()),
        pa.array([f"{last}, {f}" for f, last in pairs], pa.string()),
        pa.array([f for f, _ in pairs], pa.string()),
    )


@lru_cache(maxsize=1)
def _url_pool() -> tuple[pa.Array, npt.NDArray[np.int32]]:
    """Request URLs and the index of their controller in ``_CONTROLLERS``."""
    rng = np.random.default_rng(777)
    size = 8192
    ctrl = rng.integers(0, len(_CONTROLLERS), size).astype(np.int32)
    num = rng.integers(1, 10**6, size)
    query = _lut((0.78, 0.1, 0.02, 0.1))[rng.integers(0, 4096, size)]
    urls = [
        f"https://canvas.example.edu/{_CONTROLLERS[c]}/{k}{_QUERIES[q]}"
        for c, k, q in zip(ctrl, num, query, strict=True)
    ]
    return pa.array(urls, pa.string()), ctrl


# --------------------------------------------------------------------------------------
# Low-level Arrow builders
# --------------------------------------------------------------------------------------


def _buf(data: np.ndarray) -> pa.Buffer:
    """Zero-copy Arrow buffer over a contiguous numpy array."""
    return pa.py_buffer(cast(Any, np.ascontiguousarray(data)))


def _join(*parts: pa.Array | str, sep: str = "") -> pa.Array:
    """Element-wise string concatenation; a null part makes the row null."""
    fn: Callable[..., pa.Array] = pc.binary_join_element_wise
    return fn(*parts, sep)


def _nulls(n: int, typ: pa.DataType) -> pa.Array:
    fn: Callable[..., pa.Array] = pa.nulls
    return fn(n, typ)


def _validity(null: BoolArr | None) -> tuple[pa.Buffer | None, int]:
    """Arrow validity bitmap for a null mask (``pa.array(mask=...)`` is ~10x slower)."""
    if null is None:
        return None, 0
    count = int(null.sum())
    if count == 0:
        return None, 0
    return _buf(np.packbits(~null, bitorder="little")), count


def _prim(values: np.ndarray, typ: pa.DataType, null: BoolArr | None = None) -> pa.Array:
    """Fixed-width Arrow array over a numpy buffer of matching width."""
    values = np.ascontiguousarray(values)
    bitmap, count = _validity(null)
    return pa.Array.from_buffers(typ, len(values), [bitmap, _buf(values)], null_count=count)


def _bools(values: BoolArr, null: BoolArr | None = None) -> pa.Array:
    bitmap, count = _validity(null)
    data = _buf(np.packbits(values, bitorder="little"))
    return pa.Array.from_buffers(pa.bool_(), len(values), [bitmap, data], null_count=count)


def _fixed_strings(chars: npt.NDArray[np.uint8], null: BoolArr | None = None) -> pa.Array:
    """String array from rows of ASCII bytes of one width.

    Without ``null``, row ``i`` is ``chars[i]``. With ``null`` (length n),
    ``chars`` holds only the ``n - null.sum()`` valid rows, in order; null
    rows take no bytes (sparse columns stay small).
    """
    k, width = chars.shape
    if null is None:
        offsets = np.arange(0, (k + 1) * width, width, dtype=np.int32)
        n = k
    else:
        n = len(null)
        offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.where(null, 0, width).astype(np.int32), out=offsets[1:])
    bitmap, count = _validity(null)
    return pa.Array.from_buffers(
        pa.string(),
        n,
        [bitmap, _buf(offsets), _buf(np.ascontiguousarray(chars))],
        null_count=count,
    )


def _scatter(values: pa.Array, null: BoolArr) -> pa.Array:
    """Spread ``values`` (one per non-null row, in order) over ``len(null)`` rows."""
    idx = (np.cumsum(~null) - 1).astype(np.int32)
    return values.take(_prim(np.maximum(idx, 0), pa.int32(), null))


def _decimals(unscaled: I64, typ: pa.Decimal128Type, null: BoolArr | None = None) -> pa.Array:
    """decimal128 array from unscaled int64 values (two's-complement little-endian)."""
    words = np.empty((len(unscaled), 2), dtype=np.int64)
    words[:, 0] = unscaled
    words[:, 1] = unscaled >> 63  # sign extension into the high word
    return _prim(words, typ, null)


def _ts(us: I64, null: BoolArr | None = None) -> pa.Array:
    return _prim(us.astype(np.int64, copy=False), TIMESTAMP_TYPE, null)


def _i64(values: I64, null: BoolArr | None = None) -> pa.Array:
    return _prim(values.astype(np.int64, copy=False), pa.int64(), null)


def _to_us(dt: datetime) -> int:
    """Microseconds since the epoch; naive datetimes are taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(microseconds=1)


def _from_us(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _last_per_key(slots: I64) -> I64:
    """Indices of the last occurrence of each slot, ordered by slot."""
    if len(slots) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(slots, kind="stable")
    s = slots[order]
    last = np.empty(len(s), dtype=bool)
    last[:-1] = s[1:] != s[:-1]
    last[-1] = True
    return order[last].astype(np.int64)


# Byte -> two lowercase hex digits, as one little-endian uint16 (one gather per byte).
_HEX_PAIRS: Final = (
    np.frombuffer(_HEX, dtype=np.uint8)[np.arange(256) >> 4].astype(np.uint16)
    | (np.frombuffer(_HEX, dtype=np.uint8)[np.arange(256) & 15].astype(np.uint16) << 8)
)


def _random_bytes(rng: np.random.Generator, shape: tuple[int, int]) -> npt.NDArray[np.uint8]:
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _uuids(rng: np.random.Generator, n: int, null: BoolArr | None = None) -> pa.Array:
    """Random version-4 UUID strings in canonical hyphenated form."""
    k = n if null is None else int(n - null.sum())
    raw = _random_bytes(rng, (k, 16))
    raw[:, 6] = (raw[:, 6] & 0x0F) | 0x40
    raw[:, 8] = (raw[:, 8] & 0x3F) | 0x80
    hexd = _HEX_PAIRS[raw].view(np.uint8)  # (k, 32) hex digits
    out = np.empty((k, 36), dtype=np.uint8)
    for dst, src, width in ((0, 0, 8), (9, 8, 4), (14, 12, 4), (19, 16, 4), (24, 20, 12)):
        out[:, dst : dst + width] = hexd[:, src : src + width]
    out[:, [8, 13, 18, 23]] = ord("-")
    return _fixed_strings(out, null)


def _sprinkle(
    rng: np.random.Generator,
    arr: pa.Array,
    values: tuple[str, ...],
    rate: float,
    at_least_one: bool,
) -> pa.Array:
    """Replace a random ``rate`` share of the non-null values of ``arr`` by ``values``."""
    n = len(arr)
    if n == 0:
        return arr
    hit = rng.random(n, dtype=np.float32) < rate
    if arr.null_count:
        valid = np.asarray(arr.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        hit &= valid
    else:
        valid = None
    if at_least_one and not hit.any():
        candidates = np.flatnonzero(valid) if valid is not None else np.arange(n)
        if len(candidates):
            hit[rng.choice(candidates)] = True
    k = int(hit.sum())
    if k == 0:
        return arr
    if len(values) == 1:
        return pc.if_else(_bools(hit), pa.scalar(values[0], arr.type), arr)
    # One take over [arr, values] is cheaper than replace_with_mask on big string arrays.
    idx = np.arange(n, dtype=np.int64)
    idx[hit] = n + rng.integers(0, len(values), k)
    return pa.concat_arrays([arr, _pool(values).cast(arr.type)]).take(idx)


def _append_null_columns(chunk: pa.Table, columns: Sequence[Column]) -> pa.Table:
    """Add all-null value columns (older versions after a schema bump)."""
    for col in columns:
        typ = arrow_type(col)
        chunk = chunk.append_column(pa.field(f"value.{col.name}", typ), _nulls(chunk.num_rows, typ))
    return chunk


def _repeat_some(rng: np.random.Generator, chunk: pa.Table, ts: I64) -> tuple[pa.Table, I64]:
    """Append verbatim copies of a few rows (web_logs may repeat a key, as upstream)."""
    m = chunk.num_rows
    if m == 0:
        return chunk, ts
    k = min(m, max(1, int(rng.binomial(m, _RATE_REPEAT))))
    src = np.sort(rng.choice(m, k, replace=False))
    # Appending (rather than interleaving) avoids re-copying a million-row chunk.
    return pa.concat_tables([chunk, chunk.take(src)]), np.concatenate([ts, ts[src]])


# --------------------------------------------------------------------------------------
# Per-table state
# --------------------------------------------------------------------------------------


@dataclass
class _TableState:
    """Version log and bookkeeping of one table."""

    spec: TableSpec
    base_n: int
    id_base: int
    chunks: list[pa.Table] = field(default_factory=list)
    chunk_ts: list[I64] = field(default_factory=list)
    chunk_slot: list[I64] = field(default_factory=list)
    chunk_del: list[BoolArr] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    # Keyed tables: global log position of each slot's latest version, and liveness.
    latest: I64 = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    alive: BoolArr = field(default_factory=lambda: np.zeros(0, dtype=bool))
    # Per-slot values of frozen link columns that children need.
    links: dict[str, np.ndarray] = field(default_factory=dict)
    cache: dict[object, object] = field(default_factory=dict)
    _log: pa.Table | None = None

    @property
    def n_slots(self) -> int:
        """Number of keys ever inserted (keyed tables)."""
        return len(self.latest)

    @property
    def n_rows(self) -> int:
        """Number of versions in the log."""
        return self.offsets[-1] + self.chunks[-1].num_rows if self.chunks else 0

    def log(self) -> pa.Table:
        """All versions as one (chunked, zero-copy) table."""
        if self._log is None:
            self._log = pa.concat_tables(self.chunks)
        return self._log

    def take_sorted(self, positions: I64) -> pa.Table:
        """Log rows at ascending global ``positions``, one take per touched chunk.

        Cheaper than a take on the whole chunked log, whose cost grows with the
        number of chunks (one per step).
        """
        if len(positions) == 0:
            return self.chunks[-1].slice(0, 0)
        offsets = np.asarray(self.offsets, dtype=np.int64)
        chunk_of = np.searchsorted(offsets, positions, side="right") - 1
        cuts = np.flatnonzero(np.diff(chunk_of)) + 1
        parts = [
            self.chunks[int(chunk_of[seg[0]])].take(positions[seg] - offsets[chunk_of[seg[0]]])
            for seg in np.split(np.arange(len(positions)), cuts)
        ]
        return pa.concat_tables(parts).combine_chunks()

    def rows_until(self, step: int) -> int:
        """Number of log rows committed at or before ``step``."""
        return self.offsets[step] + self.chunks[step].num_rows

    def commit(self, chunk: pa.Table, ts: I64, slots: I64, deleted: BoolArr) -> None:
        """Append one step's chunk and update the latest-version index."""
        start = self.n_rows
        self.offsets.append(start)
        self.chunks.append(chunk)
        self.chunk_ts.append(ts)
        self.chunk_slot.append(slots)
        self.chunk_del.append(deleted)
        self._log = None
        self.cache.clear()
        if self.spec.append_only or len(slots) == 0:
            return
        grow = int(slots.max()) + 1 - self.n_slots
        if grow > 0:
            self.latest = np.concatenate([self.latest, np.full(grow, -1, dtype=np.int64)])
            self.alive = np.concatenate([self.alive, np.zeros(grow, dtype=bool)])
        # A slot appears at most once per chunk, so plain fancy assignment is exact.
        self.latest[slots] = start + np.arange(len(slots), dtype=np.int64)
        self.alive[slots] = ~deleted

    def add_links(self, links: dict[str, np.ndarray]) -> None:
        """Append the link values of newly inserted slots."""
        for name, values in links.items():
            old = self.links.get(name)
            self.links[name] = values if old is None else np.concatenate([old, values])


# --------------------------------------------------------------------------------------
# Batch generator: random column values for n rows of one table
# --------------------------------------------------------------------------------------


class _Gen:
    """Vectorised value generators for one batch of rows.

    Parameters
    ----------
    ds : Dataset
        Owner (for parent tables' ids and links).
    st : _TableState
        Table being generated.
    rng : numpy.random.Generator
        Source of randomness for this batch.
    slots : ndarray
        Slot numbers (key = ``id_base + slot``) of the rows.
    created, updated : ndarray
        ``created_at`` / ``updated_at`` of the rows, microseconds.
    initial : bool
        Whether this is step 0 (enables "at least one" guarantees for sprinkles).
    limits : dict
        Number of parent slots that may be referenced, per table name.
    """

    def __init__(
        self,
        ds: Dataset,
        st: _TableState,
        rng: np.random.Generator,
        slots: I64,
        created: I64,
        updated: I64,
        *,
        initial: bool,
        limits: dict[str, int],
    ) -> None:
        self.ds = ds
        self.st = st
        self.rng = rng
        self.slots = slots
        self.n = len(slots)
        self.created = created
        self.updated = updated
        self.initial = initial
        self.limits = limits
        self.links: dict[str, np.ndarray] = {}

    # -- primitives ---------------------------------------------------------------------

    def nulls(self, p: float) -> BoolArr | None:
        """Random null mask with probability ``p`` (None when ``p == 0``)."""
        if p <= 0:
            return None
        return self.rng.random(self.n, dtype=np.float32) < p

    def uniform_int(self, lo: int | np.ndarray, hi: int | np.ndarray) -> I64:
        """Integers uniform in ``[lo, hi]`` (bounds may be arrays)."""
        span = np.maximum(np.asarray(hi, dtype=np.int64) - lo, 0) + 1
        return (lo + (self.rng.random(self.n) * span).astype(np.int64)).astype(np.int64)

    def integers(
        self, lo: int, hi: int, p_null: float = 0.0, typ: pa.DataType | None = None
    ) -> pa.Array:
        """Integers uniform in ``[lo, hi]`` of Arrow type ``typ`` (default int64)."""
        typ = typ or pa.int64()
        values = self.rng.integers(lo, hi + 1, self.n, dtype=typ.to_pandas_dtype())
        return _prim(values, typ, self.nulls(p_null))

    def floats(self, lo: float, hi: float, p_null: float = 0.0, decimals: int = 2) -> pa.Array:
        """float64 values uniform in ``[lo, hi]``, rounded to ``decimals``."""
        values = np.round(lo + self.rng.random(self.n) * (hi - lo), decimals)
        return _prim(values, pa.float64(), self.nulls(p_null))

    def flags(self, p_true: float = 0.5, p_null: float = 0.0) -> pa.Array:
        """Booleans, true with probability ``p_true``."""
        return _bools(self.rng.random(self.n, dtype=np.float32) < p_true, self.nulls(p_null))

    def ts(self, lo: int | I64, hi: int | I64, p_null: float = 0.0) -> pa.Array:
        """Timestamps uniform in ``[lo, hi]`` microseconds."""
        return _ts(self.uniform_int(lo, hi), self.nulls(p_null))

    def index(self, k: int, weights: Sequence[float] | None = None) -> npt.NDArray[np.int32]:
        """Random category indices in ``[0, k)``, optionally weighted."""
        if weights is None:
            return self.rng.integers(0, k, self.n, dtype=np.int32)
        lut = _lut(tuple(weights))
        return lut[self.rng.integers(0, len(lut), self.n)]

    def pick(
        self,
        values: Sequence[str],
        weights: Sequence[float] | None = None,
        p_null: float = 0.0,
        idx: npt.NDArray[np.int32] | None = None,
    ) -> pa.Array:
        """Strings drawn from ``values``."""
        if idx is None:
            idx = self.index(len(values), weights)
        indices = _prim(idx.astype(np.int32), pa.int32(), self.nulls(p_null))
        return _pool(tuple(values)).take(indices)

    def pick_int(
        self, values: Sequence[int], p_null: float = 0.0, typ: pa.DataType | None = None
    ) -> pa.Array:
        """Integers drawn uniformly from ``values``."""
        typ = typ or pa.int64()
        arr = np.asarray(values, dtype=typ.to_pandas_dtype())
        return _prim(arr[self.index(len(values))], typ, self.nulls(p_null))

    def join(self, *parts: pa.Array | str, sep: str = "") -> pa.Array:
        """Element-wise concatenation; a null part makes the result null."""
        return _join(*parts, sep=sep)

    def numstr(self, lo: int, hi: int) -> pa.Array:
        """Decimal digit strings of random integers in ``[lo, hi]``."""
        return pc.cast(_i64(self.rng.integers(lo, hi + 1, self.n, dtype=np.int64)), pa.string())

    def code(self, prefix: str, p_null: float = 0.0, width: int = 6) -> pa.Array:
        """Identifier strings such as ``SIS-004217`` (unique per slot)."""
        digits = pc.utf8_lpad(pc.cast(_i64(self.slots + 1), pa.string()), width, "0")
        out = self.join(prefix, digits)
        mask = self.nulls(p_null)
        return out if mask is None else pc.if_else(_bools(mask), pa.scalar(None, pa.string()), out)

    def chars(self, alphabet: bytes, width: int, p_null: float = 0.0) -> pa.Array:
        """Random fixed-width strings over ``alphabet`` (null rows cost no bytes)."""
        null = self.nulls(p_null)
        k = self.n if null is None else int(self.n - null.sum())
        lut = np.resize(np.frombuffer(alphabet, dtype=np.uint8), 256)  # byte -> character
        return _fixed_strings(lut[_random_bytes(self.rng, (k, width))], null)

    def uuid(self, p_null: float = 0.0) -> pa.Array:
        """Random version-4 UUID strings (canonical hyphenated form)."""
        return _uuids(self.rng, self.n, self.nulls(p_null))

    def ip(self, p_v6: float = 0.15, p_null: float = 0.0) -> pa.Array:
        """IP addresses from a fixed pool (IPv4, a ``p_v6`` share IPv6 in 2001:db8::/32)."""
        idx = self.rng.integers(0, _N_IPV4, self.n, dtype=np.int32)
        v6 = self.rng.random(self.n, dtype=np.float32) < p_v6
        idx[v6] = _N_IPV4 + self.rng.integers(0, _N_IPV6, int(v6.sum()), dtype=np.int32)
        return _ip_pool().take(_prim(idx, pa.int32(), self.nulls(p_null)))

    def text(self, p_null: float = 0.0, long_rate: float = 0.0, html: bool = False) -> pa.Array:
        """Prose from a pool; a ``long_rate`` share are multi-KB documents."""
        texts = _text_pool(html)
        n_short = len(texts) - len(_LONG_TEXTS)
        idx = self.rng.integers(0, n_short, self.n, dtype=np.int32)
        if long_rate > 0:
            hit = self.rng.random(self.n, dtype=np.float32) < long_rate
            longs = self.rng.integers(0, len(_LONG_TEXTS), int(hit.sum()), dtype=np.int32)
            idx[hit] = n_short + longs
        return _pool(texts).take(_prim(idx, pa.int32(), self.nulls(p_null)))

    def subset(self, rows: BoolArr) -> _Gen:
        """Generator for the rows where ``rows`` is true (same random stream)."""
        sub = _Gen(self.ds, self.st, self.rng, self.slots[rows], self.created[rows],
                   self.updated[rows], initial=self.initial, limits=self.limits)
        return sub

    def sparse(self, valid: BoolArr, make: Callable[[_Gen], pa.Array]) -> pa.Array:
        """Values from ``make`` for the ``valid`` rows only, null elsewhere.

        Generating only the non-null values keeps mostly-null columns cheap.
        """
        return _scatter(make(self.subset(valid)), ~valid)

    # -- references to other tables -----------------------------------------------------

    def id_of(self, table: str, slots: I64) -> I64:
        return (self.ds._states[table].id_base + 1 + slots).astype(np.int64, copy=False)

    def ref_slots(self, table: str) -> I64:
        """Random existing slots of a parent table (never hard-deleted)."""
        limit = max(self.limits.get(table, self.ds._states[table].n_slots), 1)
        return self.rng.integers(0, limit, self.n, dtype=np.int64)

    def ref(self, table: str, p_null: float = 0.0) -> pa.Array:
        return _i64(self.id_of(table, self.ref_slots(table)), self.nulls(p_null))

    def with_nulls(self, arr: pa.Array, null: BoolArr | None) -> pa.Array:
        if null is None or not null.any():
            return arr
        return pc.if_else(_bools(null), pa.scalar(None, arr.type), arr)

    # -- generic fallback by kind -------------------------------------------------------

    def generic(self, col: Column) -> pa.Array:
        """Plausible values for any column kind (used for columns without a rule)."""
        # Columns added by a schema bump are always filled in new versions.
        p_null = 0.0 if col.required or col.name.startswith("emulator_note_v") else 0.3
        kind = col.kind
        if kind in ("int16", "int32", "int64"):
            typ = arrow_type(col)
            if kind == "int64" and col.name.endswith("_id"):
                p = 0.0 if col.required else 0.7
                return self.integers(10**13, 10**13 + 10**6, p, typ)
            return self.integers(0, 1000 if kind == "int16" else 10_000, p_null, typ)
        if kind in ("float32", "float64"):
            return self.floats(0, 100, p_null).cast(arrow_type(col))
        if kind == "decimal":
            assert col.precision is not None and col.scale is not None
            hi = 10 ** min(col.precision, 6) - 1
            typ = arrow_type(col)
            assert isinstance(typ, pa.Decimal128Type)
            unscaled = self.rng.integers(0, hi + 1, self.n, dtype=np.int64)
            return _decimals(unscaled, typ, self.nulls(p_null))
        if kind == "bool":
            return self.flags(0.3, p_null)
        if kind == "string":
            width = col.max_length or 255
            if width < 12:
                return self.chars(_ALNUM, width, p_null)
            prefix = col.name[: max(0, width - 8)] + "-"
            return self.with_nulls(self.join(prefix, self.numstr(0, 999_999)), self.nulls(p_null))
        if kind in ("text", "sentinel_text"):
            return self.text(p_null)
        if kind == "timestamp":
            return self.ts(self.created, self.updated, p_null)
        if kind == "date":
            days = (self.uniform_int(self.created, self.updated) // _DAY_US).astype(np.int32)
            return _prim(days, pa.date32(), self.nulls(p_null))
        if kind == "uuid":
            return self.uuid(p_null)
        if kind == "ip":
            return self.ip(p_null=p_null)
        if kind == "enum":
            real = [m for m in col.enum
                    if m != UNSPECIFIED and not m.startswith("emulator_state_v")]
            return self.pick(real, p_null=p_null)
        if kind == "enum_array":
            return self.pick(_enum_array_pool(col.enum), p_null=p_null)
        if kind == "struct":
            pool = _struct_pool(self.st.spec.name, col.name, col.struct_fields)
            return self.pick(pool, p_null=p_null)
        raise ValueError(f"no generator for kind {kind!r}")  # pragma: no cover


# --------------------------------------------------------------------------------------
# Table-specific rules (columns not returned fall back to _Gen.generic)
# --------------------------------------------------------------------------------------

Cols = dict[str, pa.Array]


def _gen_accounts(g: _Gen) -> Cols:
    root = g.slots == 0
    # Sub-accounts hang under an earlier account, so the tree has no cycles.
    parent = (g.rng.random(g.n) * np.maximum(g.slots, 1)).astype(np.int64)
    return {
        "name": g.pick(_ACCOUNT_NAMES),
        "parent_account_id": _i64(g.id_of("accounts", parent), root),
        "storage_quota": g.pick_int((524_288_000, 1_073_741_824, 5_368_709_120), 0.5),
        "default_storage_quota": g.pick_int((524_288_000, 1_073_741_824), 0.4),
        "default_user_storage_quota": g.pick_int((52_428_800, 104_857_600), 0.4),
        "default_group_storage_quota": g.pick_int((52_428_800, 104_857_600), 0.4),
        "default_locale": g.pick(_LOCALES, p_null=0.5),
        "integration_id": g.code("ACC-INT-", 0.6),
        "sis_source_id": g.code("ACC-", 0.3),
        "lti_context_id": g.chars(_HEX, 40),
        "uuid": g.chars(_ALNUM, 40),
        "workflow_state": g.pick(("active", "suspended", "deleted"), (0.9, 0.05, 0.05)),
        "default_time_zone": g.pick(_TIME_ZONES, p_null=0.2),
    }


def _gen_users(g: _Gen) -> Cols:
    full, sortable, first = _name_pools()
    name_idx = g.index(len(full))
    has_avatar = g.rng.random(g.n, dtype=np.float32) < 0.4
    avatar = g.sparse(has_avatar, lambda s: s.join(
        "https://canvas.example.edu/images/thumbnails/", s.numstr(1, 10**7), "/",
        s.chars(_ALNUM, 20)))
    return {
        "name": full.take(name_idx),
        "sortable_name": sortable.take(name_idx),
        "short_name": g.with_nulls(first.take(name_idx), g.nulls(0.05)),
        "workflow_state": g.pick(
            ("registered", "pre_registered", "creation_pending", "pending_approval", "deleted"),
            (0.85, 0.06, 0.03, 0.02, 0.04),
        ),
        "storage_quota": g.pick_int((52_428_800, 104_857_600), 0.8),
        "lti_context_id": g.chars(_HEX, 40),
        "avatar_image_url": avatar,
        "avatar_image_source": g.pick(("attachment", "gravatar", "external", "no_pic"), p_null=0.6),
        "avatar_image_updated_at": g.ts(g.created, g.updated, 0.6),
        "last_logged_out": g.ts(g.created, g.updated, 0.5),
        "pronouns": g.pick(("she/her", "he/him", "they/them", "elle", "ze/hir"), p_null=0.85),
        "merged_into_user_id": g.ref("users", 0.98),
        "locale": g.pick(_LOCALES, p_null=0.6),
        "time_zone": g.pick(_TIME_ZONES, p_null=0.5),
        "uuid": g.chars(_ALNUM, 40),
        "school_name": g.pick(("Example University", "Example College"), p_null=0.8),
        "school_position": g.pick(("Student", "Lecturer", "Professor", "Staff"), p_null=0.8),
        "public": g.flags(0.1, 0.5),
    }


def _gen_pseudonyms(g: _Gen) -> Cols:
    n_users = g.ds._states["users"].n_slots
    if g.initial:
        # One login per user to start with (the rest of the users get extra logins).
        user_slot = g.slots % max(n_users, 1)
    else:
        user_slot = g.ref_slots("users")
    root = g.ds._states["accounts"]
    account_slot = np.where(g.rng.random(g.n) < 0.8, 0, g.ref_slots("accounts"))
    return {
        "user_id": _i64(g.id_of("users", user_slot)),
        "account_id": _i64((root.id_base + account_slot + 1).astype(np.int64)),
        "unique_id": g.join("user", pc.cast(_i64(g.slots + 1), pa.string()), "@example.edu"),
        "integration_id": g.code("LOGIN-INT-", 0.7),
        "workflow_state": g.pick(("active", "deleted", "suspended"), (0.94, 0.03, 0.03)),
        "sis_batch_id": g.integers(1, 5000, 0.5),
        "login_count": g.integers(0, 500, typ=pa.int32()),
        "failed_login_count": g.integers(0, 5, typ=pa.int32()),
        "last_request_at": g.ts(g.created, g.updated, 0.2),
        "last_login_at": g.ts(g.created, g.updated, 0.2),
        "current_login_at": g.ts(g.created, g.updated, 0.2),
        "last_login_ip": g.ip(p_null=0.2),
        "current_login_ip": g.ip(p_null=0.2),
        "sis_user_id": g.code("S", 0.3, width=7),
        "authentication_provider_id": g.pick_int((1, 2, 3), 0.5),
        "position": g.pick_int((1, 2), 0.1, pa.int32()),
    }


def _gen_enrollment_terms(g: _Gen) -> Cols:
    season = g.index(3)
    year = 2024 + (g.slots // 3) % 6
    year_text = pc.cast(_i64(year), pa.string())
    names = _join(_pool(("Spring", "Summer", "Fall")).take(season), year_text, sep=" ")
    default = g.slots == 0
    names = pc.if_else(_bools(default), pa.scalar("Default Term"), names)
    term_code = _join(year_text, _pool(("SP", "SU", "FA")).take(season))
    start = g.uniform_int(g.created, g.created + 60 * _DAY_US)
    return {
        "name": names,
        "integration_id": g.code("TERM-INT-", 0.7),
        "workflow_state": g.pick(("active", "deleted"), (0.95, 0.05)),
        "sis_batch_id": g.integers(1, 5000, 0.6),
        "start_at": _ts(start, default),
        "end_at": _ts(start + 120 * _DAY_US, default),
        "sis_source_id": g.with_nulls(g.code("TERM-"), default),
        "term_code": g.with_nulls(term_code, default),
        "grading_period_group_id": g.integers(1, 500, 0.7),
    }


def _gen_courses(g: _Gen) -> Cols:
    subj = g.index(len(_SUBJECTS))
    level = pc.cast(_i64(g.rng.integers(100, 500, g.n, dtype=np.int64)), pa.string())
    name = g.join(_pool(tuple(s for s, _ in _SUBJECTS)).take(subj), level, sep=" ")
    code = g.join(_pool(tuple(c for _, c in _SUBJECTS)).take(subj), level, sep="-")
    term_slot = g.ref_slots("enrollment_terms")
    account_slot = g.ref_slots("accounts")
    g.links["enrollment_term_id"] = g.id_of("enrollment_terms", term_slot)
    start = g.uniform_int(g.created, g.created + 90 * _DAY_US)
    return {
        "storage_quota": g.pick_int((524_288_000, 1_073_741_824), 0.6),
        "integration_id": g.code("CRS-INT-", 0.7),
        "lti_context_id": g.chars(_HEX, 40),
        "sis_batch_id": g.integers(1, 5000, 0.5),
        "workflow_state": g.pick(
            ("created", "claimed", "available", "completed", "deleted"),
            (0.08, 0.07, 0.7, 0.12, 0.03),
        ),
        "account_id": _i64(g.id_of("accounts", account_slot)),
        "grading_standard_id": g.integers(1, 100, 0.8),
        "start_at": _ts(start, g.nulls(0.2)),
        "sis_source_id": g.code("CRS-", 0.3),
        "group_weighting_scheme": g.pick(("equal", "percent"), p_null=0.5),
        "conclude_at": _ts(start + 120 * _DAY_US, g.nulls(0.3)),
        "is_public": g.flags(0.1, 0.3),
        "allow_student_wiki_edits": g.flags(0.2, 0.3),
        "syllabus_body": g.text(0.3, long_rate=0.05, html=True),
        "default_wiki_editing_roles": g.pick(
            ("teachers", "teachers,students", "teachers,students,public"), p_null=0.5
        ),
        "wiki_id": _i64(g.slots + 5_000_000, g.nulls(0.1)),
        "allow_student_organized_groups": g.flags(0.8),
        "course_code": code,
        "default_view": g.pick(("modules", "assignments", "wiki", "syllabus", "feed"), p_null=0.1),
        "abstract_course_id": g.integers(1, 1000, 0.9),
        "enrollment_term_id": _i64(g.links["enrollment_term_id"]),
        "open_enrollment": g.flags(0.05, 0.5),
        "tab_configuration": g.pick(
            ('[{"id":0},{"id":1,"hidden":true}]', '[{"id":0},{"id":5},{"id":10}]', "[]"), p_null=0.6
        ),
        "turnitin_comments": g.text(0.9),
        "self_enrollment": g.flags(0.05, 0.4),
        "license": g.pick(("private", "cc_by", "cc_by_sa", "public_domain"), p_null=0.4),
        "indexed": g.flags(0.1, 0.5),
        "restrict_enrollments_to_course_dates": g.flags(0.3, 0.3),
        "template_course_id": g.ref("courses", 0.95),
        "replacement_course_id": g.ref("courses", 0.97),
        "public_description": g.text(0.6),
        "self_enrollment_code": g.chars(_ALNUM[10:36], 6, 0.9),
        "self_enrollment_limit": g.integers(10, 200, 0.9, pa.int32()),
        "turnitin_id": g.integers(1, 10**6, 0.9),
        "show_announcements_on_home_page": g.flags(0.3, 0.3),
        "home_page_announcement_limit": g.pick_int((3, 5, 10), 0.5, pa.int32()),
        "latest_outcome_import_id": g.integers(1, 10**5, 0.9),
        "grade_passback_setting": g.pick(("nightly_sync", "disabled"), p_null=0.8),
        "template": g.flags(0.02),
        "homeroom_course": g.flags(0.02),
        "sync_enrollments_from_homeroom": g.flags(0.01),
        "homeroom_course_id": g.ref("courses", 0.98),
        "locale": g.pick(_LOCALES, p_null=0.7),
        "name": name,
        "time_zone": g.pick(_TIME_ZONES, p_null=0.5),
        "uuid": g.chars(_ALNUM, 40),
        "settings": g.pick(_struct_pool("courses", "settings", TABLES["canvas", "courses"].column(
            "settings").struct_fields), p_null=0.2),
    }


def _gen_course_sections(g: _Gen) -> Cols:
    courses = g.ds._states["courses"]
    n_courses = courses.n_slots
    if g.initial:
        # Every initial course gets a default section first; the rest are extra sections.
        default = g.slots < n_courses
        course_slot = np.where(default, g.slots % max(n_courses, 1), g.ref_slots("courses"))
    else:
        default = np.zeros(g.n, dtype=bool)
        course_slot = g.ref_slots("courses")
    g.links["course_id"] = g.id_of("courses", course_slot)
    number = pc.utf8_lpad(pc.cast(_i64(g.slots % 97 + 1), pa.string()), 2, "0")
    name = pc.if_else(_bools(default), pa.scalar("Default Section"), g.join("Section ", number))
    return {
        "name": name,
        "course_id": _i64(g.links["course_id"]),
        "integration_id": g.code("SEC-INT-", 0.7),
        "workflow_state": g.pick(("active", "deleted"), (0.95, 0.05)),
        "sis_batch_id": g.integers(1, 5000, 0.5),
        "start_at": g.ts(g.created, g.created + 30 * _DAY_US, 0.6),
        "end_at": g.ts(g.created + 100 * _DAY_US, g.created + 150 * _DAY_US, 0.6),
        "sis_source_id": g.code("SEC-", 0.4),
        "default_section": _bools(default, g.nulls(0.05)),
        "accepting_enrollments": g.flags(0.9, 0.3),
        "restrict_enrollments_to_section_dates": g.flags(0.1, 0.3),
        "nonxlist_course_id": g.ref("courses", 0.95),
        "enrollment_term_id": _i64(courses.links["enrollment_term_id"][course_slot], g.nulls(0.05)),
    }


_ENROLLMENT_TYPES: Final = (
    "StudentEnrollment", "TeacherEnrollment", "TaEnrollment", "DesignerEnrollment",
    "ObserverEnrollment", "StudentViewEnrollment",
)


def _gen_enrollments(g: _Gen) -> Cols:
    sections = g.ds._states["course_sections"]
    section_slot = g.ref_slots("course_sections")
    user_slot = g.ref_slots("users")
    kind = g.index(len(_ENROLLMENT_TYPES), (0.85, 0.05, 0.03, 0.01, 0.04, 0.02))
    g.links["user_id"] = g.id_of("users", user_slot)
    g.links["course_id"] = sections.links["course_id"][section_slot]
    g.links["is_student"] = kind == 0
    observer = kind == 4
    return {
        "sis_batch_id": g.integers(1, 5000, 0.5),
        "user_id": _i64(g.links["user_id"]),
        "workflow_state": g.pick(
            ("active", "invited", "creation_pending", "deleted", "rejected", "completed",
             "inactive"),
            (0.85, 0.04, 0.01, 0.03, 0.01, 0.04, 0.02),
        ),
        "role_id": _i64((kind + 1).astype(np.int64)),
        "start_at": g.ts(g.created, g.created + 14 * _DAY_US, 0.6),
        "end_at": g.ts(g.created + 90 * _DAY_US, g.created + 150 * _DAY_US, 0.6),
        "course_id": _i64(g.links["course_id"]),
        "completed_at": g.ts(g.created, g.updated, 0.9),
        "course_section_id": _i64(g.id_of("course_sections", section_slot)),
        "grade_publishing_status": g.pick(("unpublished", "published", "pending", "error"),
                                          (0.7, 0.25, 0.04, 0.01)),
        "associated_user_id": _i64(g.id_of("users", g.ref_slots("users")), ~observer),
        "self_enrolled": g.flags(0.05, 0.3),
        "limit_privileges_to_course_section": g.flags(0.1),
        "last_activity_at": g.ts(g.created, g.updated, 0.3),
        "total_activity_time": g.integers(0, 500_000, 0.3, pa.int32()),
        "sis_pseudonym_id": g.ref("pseudonyms", 0.6),
        "last_attended_at": g.ts(g.created, g.updated, 0.9),
        "type": g.pick(_ENROLLMENT_TYPES, idx=kind),
    }


def _gen_assignments(g: _Gen) -> Cols:
    course_slot = g.ref_slots("courses")
    g.links["context_id"] = g.id_of("courses", course_slot)
    number = pc.cast(_i64(g.slots % 12 + 1), pa.string())
    due = g.uniform_int(g.created + 7 * _DAY_US, g.created + 120 * _DAY_US)
    no_due = g.nulls(0.2)
    all_day = g.rng.random(g.n) < 0.2
    all_day_null = ~all_day if no_due is None else (~all_day | no_due)
    cols: Cols = {
        "integration_id": g.code("ASG-INT-", 0.8),
        "lti_context_id": g.chars(_HEX, 40, 0.1),
        "workflow_state": g.pick(
            ("published", "unpublished", "deleted", "duplicating", "failed_to_import"),
            (0.75, 0.15, 0.07, 0.02, 0.01),
        ),
        "due_at": _ts(due, no_due),
        "unlock_at": _ts(due - 7 * _DAY_US, g.nulls(0.5)),
        "lock_at": _ts(due + 3 * _DAY_US, g.nulls(0.5)),
        "points_possible": g.pick_int((1, 5, 10, 20, 25, 50, 100), 0.05).cast(pa.float64()),
        "grading_type": g.pick(("points", "percent", "letter_grade", "pass_fail", "gpa_scale",
                                "not_graded"), (0.6, 0.15, 0.1, 0.08, 0.02, 0.05), p_null=0.05),
        "assignment_group_id": g.integers(10**13, 10**13 + 10**5, 0.05),
        "submissions_downloads": g.integers(0, 50, typ=pa.int32()),
        "peer_review_count": g.pick_int((0, 0, 0, 1, 2, 3), typ=pa.int32()),
        "peer_reviews_due_at": g.ts(due, due + 7 * _DAY_US, 0.9),
        "context_id": _i64(g.links["context_id"]),
        "context_type": g.pick(("Course",)),
        "all_day": _bools(all_day),
        "all_day_date": _prim((due // _DAY_US).astype(np.int32), pa.date32(), all_day_null),
        "migration_id": g.chars(_HEX, 32, 0.8),
        "allowed_extensions": g.pick(("pdf", "pdf,docx", "py,ipynb", "jpg,png"), p_null=0.8),
        "grader_count": g.pick_int((0, 0, 1, 2), typ=pa.int32()),
        "allowed_attempts": g.pick_int((-1, 1, 2, 3), 0.3, pa.int32()),
        "sis_source_id": g.code("ASG-", 0.6),
        "description": g.text(0.2, long_rate=0.01, html=True),
        "position": _prim((g.slots % 40 + 1).astype(np.int32), pa.int32(), g.nulls(0.05)),
        "title": g.with_nulls(g.join(g.pick(_ASSIGNMENT_KINDS), number, sep=" "), g.nulls(0.03)),
        "turnitin_settings": g.pick(_struct_pool("assignments", "turnitin_settings", TABLES[
            "canvas", "assignments"].column("turnitin_settings").struct_fields), p_null=0.5),
        "parent_assignment_id": g.ref("assignments", 0.97),
        "type": g.pick(("Assignment", "SubAssignment"), (0.97, 0.03), p_null=0.1),
        "has_sub_assignments": g.flags(0.03, 0.2),
    }
    for name in (
        "peer_reviews_assigned", "peer_reviews", "automatic_peer_reviews", "could_be_locked",
        "grade_group_students_individually", "anonymous_peer_reviews", "turnitin_enabled",
        "freeze_on_copy", "only_visible_to_overrides", "post_to_sis", "moderated_grading",
        "omit_from_final_grade", "intra_group_peer_reviews", "vericite_enabled",
        "anonymous_instructor_annotations", "anonymous_grading", "graders_anonymous_to_graders",
        "grader_comments_visible_to_graders", "grader_names_visible_to_final_grader",
        "important_dates",
    ):
        cols[name] = g.flags(0.1)
    return cols


def _student_users(g: _Gen, course_slots: I64) -> I64:
    """For each course slot, a random student enrolled in it (any user if none)."""
    enr = g.ds._states["enrollments"]
    courses = g.ds._states["courses"]
    limit = g.limits.get("enrollments", enr.n_slots)
    key = ("students_by_course", limit)
    cached = cast("tuple[I64, I64, I64] | None", enr.cache.get(key))
    if cached is None:
        student = np.flatnonzero(enr.links["is_student"][:limit])
        slot = enr.links["course_id"][student] - courses.id_base - 1
        order = np.argsort(slot, kind="stable")
        # Students grouped by course slot: group c is users[start[c] : start[c] + count[c]].
        count = np.bincount(slot, minlength=courses.n_slots).astype(np.int64)
        start = np.concatenate([[0], np.cumsum(count)[:-1]]).astype(np.int64)
        cached = (enr.links["user_id"][student][order].astype(np.int64), start, count)
        enr.cache[key] = cached
    users, start, count = cached
    fallback = g.id_of("users", g.ref_slots("users"))
    if len(users) == 0:
        return fallback
    n = count[course_slots]
    pick = start[course_slots] + (g.rng.random(g.n) * np.maximum(n, 1)).astype(np.int64)
    return np.where(n > 0, users[np.minimum(pick, len(users) - 1)], fallback).astype(np.int64)


def _gen_submissions(g: _Gen) -> Cols:
    assignments = g.ds._states["assignments"]
    assignment_slot = g.ref_slots("assignments")
    course_ids = assignments.links["context_id"][assignment_slot]
    course_slots = course_ids - g.ds._states["courses"].id_base - 1
    state = g.index(5, (0.5, 0.25, 0.2, 0.04, 0.01))
    states = ("graded", "submitted", "unsubmitted", "pending_review", "deleted")
    unsubmitted = state == 2
    ungraded = state != 0
    sub_type = g.index(10, (0.4, 0.1, 0.3, 0.05, 0.03, 0.05, 0.04, 0.01, 0.01, 0.01))
    sub_types = TABLES["canvas", "submissions"].column("submission_type").enum[:-1]
    text_entry = (sub_type == 0) & ~unsubmitted
    upload = (sub_type == 2) & ~unsubmitted
    url_entry = (sub_type == 1) & ~unsubmitted
    score_idx = g.rng.integers(0, len(_SCORES), g.n, dtype=np.int32)
    score = score_idx / 10.0
    letters = ("A", "A-", "B+", "B", "C", "D", "F", "complete", "incomplete")
    # Mostly the score as text, sometimes a letter grade (pool = scores + letters).
    grade_idx = np.where(g.rng.random(g.n, dtype=np.float32) < 0.7, score_idx,
                         len(_SCORES) + g.rng.integers(0, len(letters), g.n, dtype=np.int32))
    grade_indices = _prim(grade_idx.astype(np.int32), pa.int32(), ungraded)
    grade = _pool((*_SCORES, *letters)).take(grade_indices)
    submitted = g.uniform_int(g.created, g.updated)
    media = g.rng.random(g.n) < 0.02
    late = g.rng.random(g.n) < 0.1
    return {
        "attachment_id": g.integers(10**13, 10**13 + 10**7, 0.8),
        "course_id": _i64(course_ids),
        "user_id": _i64(_student_users(g, course_slots)),
        "workflow_state": g.pick(states, idx=state),
        "assignment_id": _i64(g.id_of("assignments", assignment_slot)),
        "media_comment_id": g.sparse(media, lambda s: s.join("m-", s.chars(_ALNUM, 30))),
        "media_comment_type": g.with_nulls(
            g.pick(TABLES["canvas", "submissions"].column("media_comment_type").enum[:-1]), ~media),
        "attachment_ids": g.sparse(upload, lambda s: s.join(s.numstr(10**6, 10**7),
                                                            s.numstr(10**6, 10**7), sep=",")),
        "posted_at": _ts(submitted + _DAY_US, ungraded),
        "group_id": g.integers(10**13, 10**13 + 10**5, 0.9),
        "score": _prim(score, pa.float64(), ungraded),
        "attempt": _prim(g.rng.integers(1, 4, g.n).astype(np.int32), pa.int32(), unsubmitted),
        "submitted_at": _ts(submitted, unsubmitted),
        "quiz_submission_id": g.integers(10**13, 10**13 + 10**6, 0.9),
        "extra_attempts": g.integers(0, 3, 0.95, pa.int32()),
        "grading_period_id": g.integers(1, 100, 0.7),
        "grade": grade,
        "submission_type": g.with_nulls(g.pick(sub_types, idx=sub_type), unsubmitted),
        "processed": g.flags(0.5, 0.3),
        "grade_matches_current_submission": g.flags(0.95, 0.1),
        "published_score": _prim(score, pa.float64(), ungraded),
        "published_grade": grade,
        "graded_at": _ts(submitted + _DAY_US, ungraded),
        "student_entered_score": g.floats(0, 100, 0.98),
        "grader_id": _i64(g.id_of("users", g.ref_slots("users")), ungraded),
        "submission_comments_count": g.integers(0, 5, 0.5, pa.int32()),
        "media_object_id": g.with_nulls(g.integers(1, 10**6), ~media),
        "turnitin_data": g.pick(('{"similarity_score":12.5,"state":"acceptable"}',
                                 '{"status":"pending"}', '{}'), p_null=0.95),
        "cached_due_date": g.ts(g.created, g.updated + 30 * _DAY_US, 0.2),
        "excused": g.flags(0.02, 0.6),
        "graded_anonymously": g.flags(0.05, 0.3),
        "late_policy_status": g.with_nulls(g.pick(("late", "missing", "extended", "none")), ~late),
        "points_deducted": _decimals(g.rng.integers(0, 5001, g.n, dtype=np.int64),
                                     pa.decimal128(6, 2), ~late),
        "seconds_late_override": g.integers(0, 7 * 86_400, 0.97),
        "lti_user_id": _lti_ids().take(_prim(g.index(len(_lti_ids())), pa.int32(), g.nulls(0.3))),
        "anonymous_id": g.chars(_ALNUM, 5, 0.05),
        "last_comment_at": g.ts(g.created, g.updated, 0.7),
        "cached_quiz_lti": g.flags(0.02),
        "cached_tardiness": g.pick(("late", "missing"), p_null=0.9),
        "resource_link_lookup_uuid": g.uuid(0.9),
        "redo_request": g.flags(0.02),
        "body": _scatter(g.subset(text_entry).text(long_rate=0.001, html=True), ~text_entry),
        "url": g.sparse(url_entry,
                        lambda s: s.join("https://example.org/work/", s.chars(_ALNUM, 12))),
    }


@lru_cache(maxsize=1)
def _lti_ids() -> pa.Array:
    """Opaque 40-hex-digit LTI user ids (a pool: one user submits many times)."""
    raw = np.random.default_rng(99).integers(0, 256, (4096, 20), dtype=np.uint8)
    return _fixed_strings(_HEX_PAIRS[raw].view(np.uint8))


def _sessions(g: _Gen, p_null: float) -> pa.Array:
    """Session ids: a session spans about twenty requests, so draw from a per-batch pool."""
    pool = _uuids(g.rng, max(1, g.n // 20))
    return pool.take(_prim(g.index(len(pool)), pa.int32(), g.nulls(p_null)))


def _gen_web_logs(g: _Gen) -> Cols:
    course_null = g.nulls(0.4)
    course_ids = _i64(g.id_of("courses", g.ref_slots("courses")), course_null)
    urls, url_controller = _url_pool()
    url_idx = g.rng.integers(0, len(urls), g.n, dtype=np.int32)
    ctx_type = g.index(5, (0.6, 0.1, 0.2, 0.05, 0.05))
    status = np.asarray((200, 302, 304, 401, 404, 422, 500), dtype=np.int32)
    return {
        "timestamp": _ts(g.updated),
        "user_id": g.ref("users", 0.15),
        "real_user_id": g.ref("users", 0.99),
        "course_id": course_ids,
        "quiz_id": g.integers(10**13, 10**13 + 10**5, 0.95),
        "discussion_id": g.integers(10**13, 10**13 + 10**5, 0.95),
        "conversation_id": g.integers(10**13, 10**13 + 10**5, 0.97),
        "assignment_id": g.ref("assignments", 0.85),
        "url": urls.take(url_idx),
        "http_method": g.pick(("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"),
                              (0.8, 0.12, 0.04, 0.01, 0.02, 0.005, 0.005)),
        "http_status": _prim(status[g.index(7, (0.8, 0.08, 0.05, 0.02, 0.03, 0.01, 0.01))],
                             pa.int32()),
        "http_version": g.pick(("HTTP/1.0", "HTTP/1.1", "HTTP/2.0"), (0.01, 0.6, 0.39)),
        "remote_ip": g.ip(p_v6=0.2, p_null=0.01),
        "interaction_micros": g.integers(500, 2_000_000, 0.01, pa.int32()),
        "web_application_controller": g.with_nulls(
            g.pick(_CONTROLLERS, idx=url_controller[url_idx]), g.nulls(0.02)),
        "web_application_action": g.pick(_ACTIONS, p_null=0.02),
        "web_application_context_type": g.pick(
            ("Course", "Account", "User", "Group", "CourseSection"), idx=ctx_type, p_null=0.1),
        "web_application_context_id": g.integers(10**13, 10**13 + 10**6, 0.1),
        "session_id": _sessions(g, 0.05),
        "developer_key_id": g.integers(10**13, 10**13 + 100, 0.8),
        "participated": g.flags(0.3, 0.1),
        "user_agent": g.pick(_USER_AGENTS, p_null=0.02),
    }


_GENERATORS: Final[dict[str, Callable[[_Gen], Cols]]] = {
    "accounts": _gen_accounts,
    "users": _gen_users,
    "pseudonyms": _gen_pseudonyms,
    "enrollment_terms": _gen_enrollment_terms,
    "courses": _gen_courses,
    "course_sections": _gen_course_sections,
    "enrollments": _gen_enrollments,
    "assignments": _gen_assignments,
    "submissions": _gen_submissions,
    "web_logs": _gen_web_logs,
}


# --------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------


class Dataset:
    """Synthetic DAP tables with a deterministic change history.

    Parameters
    ----------
    seed : int
        Random seed; the same seed, scale and sequence of :meth:`tick` /
        :meth:`schema_bump` calls give identical tables.
    scale : float
        Size factor; initial row counts are ``BASE_ROW_COUNTS * scale``
        (minimum 1). ``scale=500`` gives about a million submissions.
    start : datetime
        Commit time of step 0 (the initial state). Naive values are taken as UTC.
    step_interval : timedelta
        Time between consecutive steps (whole milliseconds).

    Attributes
    ----------
    seed, scale, start, step_interval
        The constructor arguments (``start`` made timezone-aware).

    Notes
    -----
    Not thread-safe: the HTTP server serialises access with its own lock.

    Keys are Canvas-style int64 ids (``7xxxxxxxxxxxxx``; each table has its own
    range, so a wrong join finds nothing); ``web_logs`` keys are UUID strings.
    Per step, about 0.6% new rows, 1.2% updates and (leaf tables) 0.3% hard
    deletes relative to the initial size, and at least one change per table.

    Examples
    --------
    >>> ds = Dataset(seed=1)
    >>> ds.tick(2)
    2
    >>> ds.snapshot("canvas", "accounts").num_rows >= 5
    True
    """

    def __init__(
        self,
        seed: int = 0,
        scale: float = 1.0,
        *,
        start: datetime = DEFAULT_START,
        step_interval: timedelta = timedelta(hours=1),
    ) -> None:
        if not scale > 0:
            raise ValueError("scale must be positive")
        interval_us = step_interval // timedelta(microseconds=1)
        if interval_us <= 0 or interval_us % _MS_US:
            raise ValueError("step_interval must be a positive whole number of milliseconds")
        self.seed = int(seed)
        self.scale = float(scale)
        self.start = start if start.tzinfo is not None else start.replace(tzinfo=UTC)
        self.step_interval = step_interval
        self._start_us = _to_us(self.start)
        self._interval_us = int(interval_us)
        self._step = 0
        self._states: dict[str, _TableState] = {}
        for i, (ns, name) in enumerate(_ORDER):
            self._states[name] = _TableState(
                spec=TABLES[ns, name],
                base_n=max(1, round(BASE_ROW_COUNTS[name] * self.scale)),
                # Distinct id ranges per table make a wrong join visibly empty.
                id_base=70_000_000_000_000 + (i + 1) * 100_000_000_000,
            )
        for _ns, name in _ORDER:
            self._initial(self._states[name])

    # -- clock --------------------------------------------------------------------------

    @property
    def step(self) -> int:
        """Number of the latest committed step (0 = initial state only)."""
        return self._step

    @property
    def clock(self) -> datetime:
        """Commit time of the latest step."""
        return self.commit_time(self._step)

    def commit_time(self, step: int) -> datetime:
        """Commit time of ``step``: ``start + step * step_interval``.

        Parameters
        ----------
        step : int
            Step number (non-negative; may lie in the future).

        Returns
        -------
        datetime
            Timezone-aware UTC datetime.
        """
        if step < 0:
            raise ValueError("step must be non-negative")
        return _from_us(self._commit_us(step))

    def _commit_us(self, step: int) -> int:
        return self._start_us + step * self._interval_us

    # -- catalogue ----------------------------------------------------------------------

    def namespaces(self) -> list[str]:
        """Namespaces with tables, sorted."""
        return sorted({st.spec.namespace for st in self._states.values()})

    def tables(self, namespace: str) -> list[str]:
        """Table names of ``namespace``, sorted.

        Raises
        ------
        KeyError
            If the namespace is unknown.
        """
        names = sorted(
            st.spec.name for st in self._states.values() if st.spec.namespace == namespace
        )
        if not names:
            raise KeyError(namespace)
        return names

    def _state(self, namespace: str, table: str) -> _TableState:
        st = self._states.get(table)
        if st is None or st.spec.namespace != namespace:
            raise KeyError(f"{namespace}.{table}")
        return st

    def spec(self, namespace: str, table: str) -> TableSpec:
        """Current specification (schema version) of a table.

        Raises
        ------
        KeyError
            If the table is unknown.
        """
        return self._state(namespace, table).spec

    def schema_bump(self, namespace: str, table: str) -> TableSpec:
        """Publish the next schema version of a table (see :func:`_tables.bump`).

        Existing versions get a null value in the added column; later inserts
        and updates fill it and sometimes use the added enum member.

        Returns
        -------
        TableSpec
            The new current specification.
        """
        st = self._state(namespace, table)
        new = bump(st.spec)
        added = [c for c in new.columns if c.name not in set(st.spec.column_names)]
        st.chunks = [_append_null_columns(chunk, added) for chunk in st.chunks]
        st.spec = new
        st._log = None
        st.cache.clear()
        return new

    # -- history ------------------------------------------------------------------------

    def tick(self, n: int = 1) -> int:
        """Commit ``n`` change steps.

        Each step inserts and updates rows of every table, hard-deletes rows of
        the leaf tables (submissions, enrollments, pseudonyms) and appends rows
        to ``web_logs`` (some repeated verbatim). Changed rows of step ``i``
        get distinct millisecond ``meta.ts`` in
        ``(commit_time(i - 1), commit_time(i)]``.

        Parameters
        ----------
        n : int
            Number of steps (>= 0).

        Returns
        -------
        int
            The new latest step number.
        """
        if n < 0:
            raise ValueError("n must be non-negative")
        for _ in range(n):
            step = self._step + 1
            # Children reference only parents committed before this step.
            limits = {name: st.n_slots for name, st in self._states.items()}
            for _ns, name in _ORDER:
                st = self._states[name]
                rng = self._rng(name, step)
                if st.spec.append_only:
                    self._step_append(st, rng, step, limits)
                else:
                    self._step_keyed(st, rng, step, limits)
            self._step = step
        return self._step

    def snapshot(self, namespace: str, table: str, *, step: int | None = None) -> pa.Table:
        """State of a table at a step, as a snapshot records table.

        Parameters
        ----------
        namespace, table : str
            Table to read.
        step : int, optional
            Step whose committed state to return (default: the latest).

        Returns
        -------
        pyarrow.Table
            ``meta.ts``, ``key.*``, ``value.*`` (current schema; columns added
            by a later bump are null in older versions), one row per live key
            with its last version, ordered by key. For ``web_logs``: every row
            appended so far (repeats included), step by step; within a step the
            repeated rows follow the others.
        """
        st = self._state(namespace, table)
        step = self._step if step is None else step
        if not 0 <= step <= self._step:
            raise ValueError(f"step must be between 0 and {self._step}")
        log = st.log()
        if st.spec.append_only:
            out = log.slice(0, st.rows_until(step))
        elif step == self._step:
            out = log.take(st.latest[st.alive])
        else:
            slots = np.concatenate(st.chunk_slot[: step + 1])
            deleted = np.concatenate(st.chunk_del[: step + 1])
            pos = _last_per_key(slots)
            out = log.take(pos[~deleted[pos]])
        return out.drop_columns(["meta.action"]).combine_chunks()

    def changes(self, namespace: str, table: str, since: datetime, until: datetime) -> pa.Table:
        """Changes committed in ``(since, until]``, as an incremental records table.

        Parameters
        ----------
        namespace, table : str
            Table to read.
        since, until : datetime
            Window bounds; ``since`` is exclusive, ``until`` inclusive (naive
            values are taken as UTC).

        Returns
        -------
        pyarrow.Table
            With ``meta.action``. For every key with a version whose ``meta.ts``
            lies in the window, the last such version: ``"U"`` with values, or
            ``"D"`` with null value columns for a hard delete; ordered by key.
            For ``web_logs``: every row in the window (no consolidation).
        """
        st = self._state(namespace, table)
        lo, hi = _to_us(since), _to_us(until)
        positions: list[I64] = []
        slots: list[I64] = []
        for i, ts in enumerate(st.chunk_ts):
            # Chunks are time-ordered: step 0 <= commit(0), step i in (commit(i-1), commit(i)].
            first = self._commit_us(i - 1) if i > 0 else None
            if (first is not None and hi <= first) or lo >= self._commit_us(i):
                continue
            hit = np.flatnonzero((ts > lo) & (ts <= hi))
            positions.append(st.offsets[i] + hit)
            if not st.spec.append_only:
                slots.append(st.chunk_slot[i][hit])
        pos = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
        if not st.spec.append_only:
            pos = pos[_last_per_key(np.concatenate(slots) if slots else pos)]
        return st.log().take(pos).combine_chunks()

    # -- internals: randomness and timing -----------------------------------------------

    def _rng(self, table: str, step: int) -> np.random.Generator:
        """Generator for one (table, step); crc32 keeps it stable across processes."""
        entropy = [self.seed & 0xFFFFFFFFFFFFFFFF, zlib.crc32(table.encode()), step]
        return np.random.default_rng(entropy)

    def _step_times(self, rng: np.random.Generator, step: int, m: int) -> I64:
        """``m`` distinct millisecond commit times in ``(commit(step-1), commit(step)]``."""
        interval_ms = self._interval_us // _MS_US
        if m <= interval_ms:
            offs = rng.choice(interval_ms, m, replace=False).astype(np.int64) + 1
        else:  # more changes than milliseconds in the interval: repeats are unavoidable
            offs = rng.integers(1, interval_ms + 1, m, dtype=np.int64)
        return self._commit_us(step - 1) + offs * _MS_US

    def _lagged(self, rng: np.random.Generator, step: int, ts: I64) -> I64:
        """Business times shortly before the commit times, still after the previous step."""
        room = ts - self._commit_us(step - 1) - 1
        lag = (rng.random(len(ts)) * np.minimum(room, 30 * _US)).astype(np.int64)
        return ts - lag

    # -- internals: building batches ----------------------------------------------------

    def _fresh(
        self,
        st: _TableState,
        rng: np.random.Generator,
        slots: I64,
        created: I64,
        updated: I64,
        *,
        initial: bool,
        limits: dict[str, int],
    ) -> tuple[dict[str, pa.Array], dict[str, np.ndarray]]:
        """Freshly generated value columns (and link values) for ``slots``."""
        g = _Gen(self, st, rng, slots, created, updated, initial=initial, limits=limits)
        cols = _GENERATORS[st.spec.name](g)
        out: dict[str, pa.Array] = {}
        for col in st.spec.columns:
            if col.name == "created_at":
                arr = _ts(created)
            elif col.name == "updated_at":
                arr = _ts(updated)
            else:
                arr = cols[col.name] if col.name in cols else g.generic(col)
            out[col.name] = arr.cast(arrow_type(col)) if arr.type != arrow_type(col) else arr
        self._sprinkle_sentinels(st, rng, out, initial=initial)
        return out, g.links

    def _sprinkle_sentinels(
        self, st: _TableState, rng: np.random.Generator, cols: dict[str, pa.Array], *, initial: bool
    ) -> None:
        """Put ``__dap_unspecified__``, ``__dap_oversized_truncated__`` and hostile strings in."""
        hostile = set(_HOSTILE_COLUMNS.get(st.spec.name, ()))
        for col in st.spec.columns:
            if col.kind == "enum":
                cols[col.name] = _sprinkle(rng, cols[col.name], (UNSPECIFIED,), _RATE_UNSPECIFIED,
                                           initial and len(cols[col.name]) >= 50)
            elif col.kind == "sentinel_text":
                cols[col.name] = _sprinkle(rng, cols[col.name], (OVERSIZED,), _RATE_OVERSIZED,
                                           initial and len(cols[col.name]) >= 10)
            if col.name in hostile:
                cols[col.name] = _sprinkle(rng, cols[col.name], HOSTILE_STRINGS, _RATE_HOSTILE,
                                           initial and len(cols[col.name]) >= 50)

    def _finish(
        self, st: _TableState, rng: np.random.Generator, cols: dict[str, pa.Array], *, initial: bool
    ) -> None:
        """Enforce cross-column invariants and use bumped enum members (in place)."""
        names = st.spec.column_names
        if "deleted_at" in names and "workflow_state" in names:
            deleted = pc.equal(cols["workflow_state"], pa.scalar("deleted"))
            cols["deleted_at"] = pc.if_else(deleted, cols["updated_at"],
                                            pa.scalar(None, TIMESTAMP_TYPE))
        if initial:
            return
        for col in st.spec.columns:
            extra = tuple(m for m in col.enum if m.startswith("emulator_state_v"))
            if col.kind == "enum" and extra:
                cols[col.name] = _sprinkle(rng, cols[col.name], extra, _RATE_BUMPED_ENUM, True)

    def _chunk(
        self,
        st: _TableState,
        ts: I64,
        action: str,
        keys: pa.Array,
        cols: dict[str, pa.Array] | None,
    ) -> pa.Table:
        """Assemble an incremental records table (``cols=None`` -> all-null values)."""
        schema = arrow_schema(st.spec, incremental=True)
        n = len(ts)
        actions = _pool((action,)).take(np.zeros(n, dtype=np.int32))
        arrays: list[pa.Array] = [_ts(ts), actions, keys]
        for col in st.spec.columns:
            typ = arrow_type(col)
            arrays.append(_nulls(n, typ) if cols is None else cols[col.name])
        return pa.Table.from_arrays(arrays, schema=schema)

    # -- internals: step 0 --------------------------------------------------------------

    def _initial(self, st: _TableState) -> None:
        rng = self._rng(st.spec.name, 0)
        n = st.base_n
        slots = np.arange(n, dtype=np.int64)
        limits = {name: s.n_slots for name, s in self._states.items()}
        if st.spec.append_only:
            # Web logs of the last 7 days, in time order.
            ms = rng.integers(0, 7 * _DAY_US // _MS_US, n, dtype=np.int64)
            ts = np.sort(self._start_us - ms * _MS_US)
            created = updated = ts
        else:
            span = rng.integers(_DAY_US // _MS_US, 3 * 365 * _DAY_US // _MS_US, n, dtype=np.int64)
            created = self._start_us - span * _MS_US
            updated = created + (rng.random(n) * span).astype(np.int64) * _MS_US
            ts = updated  # initial versions were committed when last updated
        cols, links = self._fresh(st, rng, slots, created, updated, initial=True, limits=limits)
        self._finish(st, rng, cols, initial=True)
        if st.spec.append_only:
            keys = _uuids(rng, n)
            chunk = self._chunk(st, ts, "U", keys, cols)
            chunk, ts = _repeat_some(rng, chunk, ts)
            st.commit(chunk, ts, np.zeros(0, dtype=np.int64), np.zeros(chunk.num_rows, dtype=bool))
            return
        st.add_links(links)
        chunk = self._chunk(st, ts, "U", _i64(st.id_base + slots + 1), cols)
        st.commit(chunk, ts, slots, np.zeros(n, dtype=bool))

    # -- internals: later steps ---------------------------------------------------------

    def _step_append(
        self, st: _TableState, rng: np.random.Generator, step: int, limits: dict[str, int]
    ) -> None:
        m = max(1, int(rng.binomial(st.base_n, _RATE_APPEND)))
        ts = np.sort(self._step_times(rng, step, m))
        when = self._lagged(rng, step, ts)
        slots = np.zeros(m, dtype=np.int64)
        cols, _ = self._fresh(st, rng, slots, when, when, initial=False, limits=limits)
        self._finish(st, rng, cols, initial=False)
        chunk = self._chunk(st, ts, "U", _uuids(rng, m), cols)
        chunk, ts = _repeat_some(rng, chunk, ts)
        st.commit(chunk, ts, np.zeros(0, dtype=np.int64), np.zeros(chunk.num_rows, dtype=bool))

    def _step_keyed(
        self, st: _TableState, rng: np.random.Generator, step: int, limits: dict[str, int]
    ) -> None:
        name = st.spec.name
        alive_slots = np.flatnonzero(st.alive).astype(np.int64)
        n_alive = len(alive_slots)
        n_ins = int(rng.binomial(st.base_n, _RATE_INSERT))
        n_upd = min(int(rng.binomial(st.base_n, _RATE_UPDATE)), n_alive)
        n_del = 0
        if name in _LEAVES:
            n_del = min(int(rng.binomial(st.base_n, _RATE_DELETE)), n_alive - n_upd)
        if n_ins + n_upd == 0:  # every table changes in every step
            if n_alive > n_del:
                n_upd = 1
            else:
                n_ins = 1
        m = n_ins + n_upd + n_del
        ts = self._step_times(rng, step, m)
        ts_ins, ts_upd, ts_del = ts[:n_ins], ts[n_ins : n_ins + n_upd], ts[n_ins + n_upd :]
        picked = alive_slots[rng.choice(n_alive, n_upd + n_del, replace=False)]
        upd_slots, del_slots = picked[:n_upd], picked[n_upd:]

        # Inserts: brand-new keys.
        new_slots = np.arange(st.n_slots, st.n_slots + n_ins, dtype=np.int64)
        when = self._lagged(rng, step, ts_ins)
        ins_cols, links = self._fresh(st, rng, new_slots, when, when, initial=False, limits=limits)

        # Updates: read the current versions, regenerate, keep frozen/most columns.
        order = np.argsort(st.latest[upd_slots], kind="stable")
        upd_slots, ts_upd = upd_slots[order], ts_upd[order]
        old = st.take_sorted(st.latest[upd_slots])
        created = pc.fill_null(old.column("value.created_at"), pa.scalar(0, TIMESTAMP_TYPE))
        created_us = np.asarray(pc.cast(created, pa.int64()), dtype=np.int64)
        when = self._lagged(rng, step, ts_upd)
        fresh, _ = self._fresh(st, rng, upd_slots, created_us, when, initial=False, limits=limits)
        frozen = _FROZEN_COMMON | _FROZEN.get(name, frozenset())
        group_masks = {group: rng.random(n_upd) < _RATE_COLUMN_CHANGE
                       for group in _GROUPS.get(name, ())}
        in_group = {c: group for group in _GROUPS.get(name, ()) for c in group}
        upd_cols: dict[str, pa.Array] = {}
        for col in st.spec.columns:
            prev = old.column(f"value.{col.name}").combine_chunks()
            if col.name in frozen:
                upd_cols[col.name] = prev
            elif col.name == "updated_at" or col.name.startswith("emulator_note_v"):
                upd_cols[col.name] = fresh[col.name]
            else:
                group = in_group.get(col.name)
                change = (group_masks[group] if group is not None
                          else rng.random(n_upd) < _RATE_COLUMN_CHANGE)
                upd_cols[col.name] = pc.if_else(_bools(change), fresh[col.name], prev)
        ws = st.spec.column("workflow_state") if "workflow_state" in st.spec.column_names else None
        if name not in _LEAVES and ws is not None and "deleted" in ws.enum and n_upd:
            # Parents are never hard-deleted: soft-delete instead.
            soft = rng.random(n_upd) < _RATE_SOFT_DELETE
            upd_cols["workflow_state"] = pc.if_else(_bools(soft), pa.scalar("deleted"),
                                                    upd_cols["workflow_state"])

        u_slots = np.concatenate([new_slots, upd_slots])
        u_ts = np.concatenate([ts_ins, ts_upd])
        u_cols = {k: pa.concat_arrays([ins_cols[k], upd_cols[k]]) for k in ins_cols}
        self._finish(st, rng, u_cols, initial=False)
        parts = [self._chunk(st, u_ts, "U", _i64(st.id_base + u_slots + 1), u_cols)]
        if n_del:
            parts.append(self._chunk(st, ts_del, "D", _i64(st.id_base + del_slots + 1), None))
        all_slots = np.concatenate([u_slots, del_slots])
        all_ts = np.concatenate([u_ts, ts_del])
        deleted = np.concatenate([np.zeros(len(u_slots), dtype=bool), np.ones(n_del, dtype=bool)])
        order = np.argsort(all_ts, kind="stable")  # chunks are kept in commit-time order
        chunk = pa.concat_tables(parts).combine_chunks().take(order)
        st.add_links(links)
        st.commit(chunk, all_ts[order], all_slots[order], deleted[order])
