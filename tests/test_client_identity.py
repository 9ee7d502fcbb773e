"""snapshot(step 0) + changes(step 0, step k] == snapshot(step k), for every table and format.

Everything goes through dapframe's client against the emulator over real sockets; the files it
downloads are decoded by the test-side reference decoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.wire import QueryRequest
from tests._decode import assert_same_rows, dataset_rows, decode_part
from tests.conftest import CLIENT_ID, CLIENT_SECRET

FORMATS = ["jsonl", "csv", "tsv", "parquet"]
STEPS = 3
TABLES = [
    ("canvas", t)
    for t in (
        "accounts",
        "users",
        "pseudonyms",
        "courses",
        "course_sections",
        "enrollment_terms",
        "enrollments",
        "assignments",
        "submissions",
    )
] + [("canvas_logs", "web_logs")]


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(
        seed=7,
        scale=1,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        rows_per_part=400,
        job_seconds=0,
    ) as e:
        yield e


@pytest.fixture(scope="module")
def client(emu: Emulator) -> Iterator[DapClient]:
    with DapClient(
        rate_limits=None, base_url=emu.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    ) as c:
        yield c


def fetch(
    client: DapClient, ns: str, table: str, request: QueryRequest, directory: Path
) -> list[dict[str, Any]]:
    job = client.wait(client.start_query(ns, table, request), deadline=60)
    files = client.download(job, directory)
    assert len(files) == len(job.objects)
    return [row for f in sorted(files) for row in decode_part(f.read_bytes(), request.format)]


def by_key(rows: list[dict[str, Any]], key: str) -> dict[Any, dict[str, Any]]:
    # web_logs may repeat a key: the last version wins (repeats are identical rows).
    return {r[key]: {k: v for k, v in r.items() if k != "meta.action"} for r in rows}


@pytest.fixture(scope="module")
def history(
    emu: Emulator,
    client: DapClient,
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, str, str], tuple[list, list, list]]:
    """For every table and format: rows of snapshot(0), of changes(0, k] and of snapshot(k)."""
    root = tmp_path_factory.mktemp("identity")
    t0 = emu.dataset.commit_time(0)
    out: dict[tuple[str, str, str], Any] = {}
    for ns, table in TABLES:
        for fmt in FORMATS:
            out[(ns, table, fmt)] = [
                fetch(client, ns, table, QueryRequest(format=fmt), root / f"{table}-{fmt}-s0")
            ]
    emu.tick(STEPS)
    for ns, table in TABLES:
        for fmt in FORMATS:
            changes = fetch(
                client, ns, table, QueryRequest(format=fmt, since=t0), root / f"{table}-{fmt}-inc"
            )
            snap_k = fetch(client, ns, table, QueryRequest(format=fmt), root / f"{table}-{fmt}-sk")
            out[(ns, table, fmt)] += [changes, snap_k]
    return out


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("ns", "table"), TABLES)
def test_snapshot_plus_changes_equals_later_snapshot(
    history: dict, emu: Emulator, ns: str, table: str, fmt: str
) -> None:
    snap0, changes, snap_k = history[(ns, table, fmt)]
    key = "key." + emu.dataset.spec(ns, table).key.name
    state = by_key(snap0, key)
    actions = {r["meta.action"] for r in changes}
    assert "U" in actions
    for row in changes:
        if row["meta.action"] == "D":
            state.pop(row[key], None)
        else:
            state[row[key]] = {k: v for k, v in row.items() if k != "meta.action"}
    expected = by_key(snap_k, key)
    assert state.keys() == expected.keys()
    assert state == expected
    assert snap0 != snap_k  # the steps changed something


@pytest.mark.parametrize("fmt", FORMATS)
def test_downloads_equal_emulator_state(history: dict, emu: Emulator, fmt: str) -> None:
    """What the client downloaded is exactly what the emulator holds (all tables)."""
    ds = emu.dataset
    for ns, table in TABLES:
        _, changes, snap_k = history[(ns, table, fmt)]
        assert_same_rows(snap_k, dataset_rows(ds, ns, table, fmt))
        want = dataset_rows(ds, ns, table, fmt, since=ds.commit_time(0))
        assert_same_rows(changes, want)


def test_deletes_present(history: dict) -> None:
    _, changes, _ = history[("canvas", "submissions", "jsonl")]
    assert any(r["meta.action"] == "D" for r in changes)
