"""QueryResult against the emulator over real sockets: every verb, format and table."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import dapframe
from dapframe.api import DapClient
from dapframe.emulator import Emulator
from dapframe.errors import NotFoundError, UsageError
from dapframe.result import QueryResult
from tests.conftest import CLIENT_ID, CLIENT_SECRET

FORMATS = ["parquet", "jsonl", "csv", "tsv"]
TABLES = [f"canvas.{t}" for t in (
    "accounts", "users", "pseudonyms", "courses", "course_sections", "enrollment_terms",
    "enrollments", "assignments", "submissions")] + ["canvas_logs.web_logs"]
STEPS = 2


@pytest.fixture(scope="module")
def emu() -> Iterator[Emulator]:
    with Emulator(seed=3, scale=1, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                  rows_per_part=700, job_seconds=0) as e:
        yield e


@pytest.fixture(scope="module")
def client(emu: Emulator) -> Iterator[DapClient]:
    with DapClient(base_url=emu.base_url, client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                   rate_limits=None) as c:
        yield c


@pytest.fixture(scope="module")
def results(emu: Emulator, client: DapClient, tmp_path_factory: pytest.TempPathFactory,
            ) -> dict[tuple[str, str, str], QueryResult]:
    """snapshot at step 0 ("s0"), changes (0, k] ("inc") and snapshot at k ("sk")."""
    root = tmp_path_factory.mktemp("results")
    t0 = emu.dataset.commit_time(0)
    out: dict[tuple[str, str, str], QueryResult] = {}
    for table in TABLES:
        for fmt in FORMATS:
            out[(table, fmt, "s0")] = dapframe.snapshot(table, format=fmt, client=client,
                                                        directory=root / "s0")
    emu.tick(STEPS)
    for table in TABLES:
        for fmt in FORMATS:
            out[(table, fmt, "inc")] = dapframe.incremental(table, since=t0, format=fmt,
                                                            client=client, directory=root / "i")
            out[(table, fmt, "sk")] = dapframe.snapshot(table, format=fmt, client=client,
                                                        directory=root / "sk")
    return out


def sort(df: pl.DataFrame, key: list[str]) -> pl.DataFrame:
    return df.sort([*key, "meta.ts"])


@pytest.mark.parametrize("table", TABLES)
def test_same_schema_and_values_in_every_format(results: dict, table: str) -> None:
    for kind in ("s0", "inc", "sk"):
        frames = {fmt: results[(table, fmt, kind)].to_polars() for fmt in FORMATS}
        key = results[(table, "parquet", kind)].key
        ref = sort(frames["parquet"], key)
        assert ref.height > 0
        for fmt in FORMATS[1:]:
            assert frames[fmt].schema == ref.schema, (fmt, kind)
            assert_frame_equal(sort(frames[fmt], key), ref)


@pytest.mark.parametrize("table", TABLES)
def test_apply_changes_identity(results: dict, table: str) -> None:
    for fmt in ("parquet", "tsv"):
        base = results[(table, fmt, "s0")]
        changes = results[(table, fmt, "inc")]
        later = results[(table, fmt, "sk")]
        key = later.key
        got = changes.apply_to(base.scan()).collect()
        want = later.to_polars().unique(subset=key, keep="last", maintain_order=True)
        assert_frame_equal(sort(got, key), sort(want, key))
        assert not base.to_polars().equals(later.to_polars())


def test_types_follow_the_schema(results: dict) -> None:
    df = results[("canvas.submissions", "csv", "inc")].to_polars()
    assert df.schema["meta.ts"] == pl.Datetime("us", "UTC")
    assert df.schema["meta.action"] == pl.Enum(["U", "D"])
    assert df.schema["id"] == pl.Int64
    assert df.schema["attempt"] == pl.Int32
    assert df.schema["score"] == pl.Float64
    assert df.schema["points_deducted"] == pl.Decimal(6, 2)
    assert df.schema["excused"] == pl.Boolean
    assert isinstance(df.schema["workflow_state"], pl.Enum)
    assert "__dap_unspecified__" in df.schema["workflow_state"].categories.to_list()
    assert set(df["meta.action"].unique()) == {"U", "D"}
    deleted = df.filter(pl.col("meta.action") == "D")
    assert deleted["course_id"].null_count() == deleted.height  # D rows carry keys only
    courses = results[("canvas.courses", "jsonl", "s0")].to_polars()
    assert isinstance(courses.schema["settings"], pl.Struct)
    assignments = results[("canvas.assignments", "parquet", "s0")].to_polars()
    assert assignments.schema["submission_types"] == pl.List(pl.String)


def test_dotted_naming(results: dict) -> None:
    r = results[("canvas.accounts", "tsv", "inc")]
    df = r.to_polars(naming="dotted")
    assert df.columns[:3] == ["meta.ts", "meta.action", "key.id"]
    assert all(c.startswith("value.") for c in df.columns[3:])


def test_scan_is_lazy(results: dict, tmp_path: Path) -> None:
    r = results[("canvas.submissions", "jsonl", "s0")]
    lf = r.scan()
    assert isinstance(lf, pl.LazyFrame)
    n = lf.filter(pl.col("excused")).select(pl.len()).collect().item()
    assert n == r.to_polars().filter(pl.col("excused")).height


def test_to_arrow_streams(results: dict) -> None:
    r = results[("canvas.submissions", "tsv", "sk")]
    reader = r.to_arrow(batch_size=500)
    batches = list(reader)
    assert len(batches) > 1
    assert sum(b.num_rows for b in batches) == r.to_polars().height


@pytest.mark.parametrize("fmt", FORMATS)
def test_to_duckdb_view(results: dict, fmt: str) -> None:
    r = results[("canvas.courses", fmt, "s0")]
    con = duckdb.connect()
    rel = r.to_duckdb(con, name="courses")
    assert con.execute('select count(*) from "courses"').fetchone()[0] == r.to_polars().height
    types = dict(zip(rel.columns, [str(t) for t in rel.types], strict=True))
    assert types["meta.ts"] == "TIMESTAMP WITH TIME ZONE"
    assert types["workflow_state"].startswith("ENUM(")
    assert types["settings"].startswith("STRUCT(")
    assert types["id"] == "BIGINT"
    active = con.execute("select count(*) from courses where workflow_state = 'available'"
                         ).fetchone()[0]
    assert active == r.to_polars().filter(pl.col("workflow_state") == "available").height


@pytest.mark.parametrize("fmt", ["parquet", "csv", "tsv", "jsonl"])
def test_write(results: dict, tmp_path: Path, fmt: str) -> None:
    r = results[("canvas.assignments", "jsonl", "inc")]
    path = r.write(tmp_path / f"out.{fmt}", format=fmt)
    assert path.exists() and not list(tmp_path.glob("*.part"))
    want = r.to_polars()
    if fmt == "parquet":
        assert_frame_equal(pl.read_parquet(path), want, check_dtypes=False)
        assert pl.read_parquet(path).height == want.height
    elif fmt == "jsonl":
        assert pl.read_ndjson(path).height == want.height
    else:
        got = pl.read_csv(path, separator="\t" if fmt == "tsv" else ",", infer_schema=False)
        assert got.height == want.height and got.columns == want.columns


def test_write_bad_input(results: dict, tmp_path: Path) -> None:
    r = results[("canvas.accounts", "parquet", "s0")]
    with pytest.raises(UsageError, match="unknown export format"):
        r.write(tmp_path / "x.xml", format="xml")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):  # root ignores modes: use a path under a file instead
            target = tmp_path / "file" / "x.parquet"
            (tmp_path / "file").write_text("")
        else:
            target = ro / "x.parquet"
        with pytest.raises(UsageError, match="output folder"):
            r.write(target)
    finally:
        ro.chmod(0o700)


def test_bad_input(client: DapClient, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nope"):
        dapframe.snapshot("canvas.nope", client=client, directory=tmp_path)
    with pytest.raises(UsageError, match="swap"):
        now = datetime.now(UTC)
        dapframe.incremental("canvas.accounts", since=now, until=now - timedelta(hours=1),
                             client=client, directory=tmp_path)
    with pytest.raises(UsageError, match="unknown format"):
        dapframe.snapshot("canvas.accounts", format="xlsx", client=client)
    with pytest.raises(UsageError, match="time zone"):
        dapframe.incremental("canvas.accounts", since=datetime(2026, 11, 1), client=client)
    with pytest.raises(UsageError, match="namespace"):
        dapframe.snapshot("accounts", client=client)
    with pytest.raises(UsageError, match="invalid table"):
        dapframe.snapshot("canvas.x;drop table y", client=client)
    assert not list(tmp_path.rglob("*"))  # nothing written


def test_result_facts(results: dict, emu: Emulator) -> None:
    snap = results[("canvas.accounts", "parquet", "sk")]
    inc = results[("canvas.accounts", "parquet", "inc")]
    assert snap.at == emu.dataset.clock and snap.watermark == snap.at
    assert inc.since == emu.dataset.commit_time(0) and inc.until == emu.dataset.clock
    assert inc.watermark == inc.until
    assert snap.schema_version == 1 and snap.schema.version == 1
    assert "parts=" in repr(snap) and "snapshot" in repr(snap)


@pytest.mark.parametrize("table", ["canvas.submissions", "canvas_logs.web_logs"])
def test_read_snapshot_is_the_eager_twin(client: DapClient, emu: Emulator, tmp_path: Path,
                                         table: str) -> None:
    # Eager read decodes each part as it lands; the frame must equal the lazy path's.
    df = dapframe.read_snapshot(table, client=client, directory=tmp_path / "eager")
    lazy = dapframe.snapshot(table, client=client, directory=tmp_path / "lazy")
    assert len(lazy.files) > 1  # several parts, so the order of the parts is under test
    assert_frame_equal(df, lazy.scan().collect())
    dotted = dapframe.read_snapshot(table, client=client, directory=tmp_path / "eager",
                                    naming="dotted")
    assert_frame_equal(dotted, lazy.scan(naming="dotted").collect())


def test_eager_fetch_decodes_every_part_during_the_download(client: DapClient,
                                                           tmp_path: Path) -> None:
    spec = dapframe.QuerySpec("canvas", "submissions", format="parquet")
    result = client.fetch(spec, directory=tmp_path, eager=True)
    early = result._early
    assert early is not None
    # Every part was handed to the decoder by the download's own events, none left for later.
    assert set(early._futures) == {f.name for f in result.files}
    assert_frame_equal(result.to_polars(), result.scan().collect())
    assert result._early is None  # the decoded frames are handed out once, then freed
    assert_frame_equal(result.to_polars(), result.scan().collect())


def test_read_incremental_and_text_formats(client: DapClient, emu: Emulator,
                                           tmp_path: Path) -> None:
    since = emu.dataset.commit_time(0)
    df = dapframe.read_incremental("canvas.enrollments", since=since, client=client,
                                   directory=tmp_path / "a")
    lazy = dapframe.incremental("canvas.enrollments", since=since, client=client,
                                directory=tmp_path / "b")
    assert_frame_equal(df, lazy.to_polars())
    # Text formats have no early decoding: the same frame through the ordinary path.
    tsv = dapframe.read_snapshot("canvas.accounts", format="tsv", client=client,
                                 directory=tmp_path / "c")
    assert_frame_equal(tsv, dapframe.snapshot("canvas.accounts", client=client,
                                              directory=tmp_path / "d").to_polars())
