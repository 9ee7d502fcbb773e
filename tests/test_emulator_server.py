"""The emulator's HTTP surface, checked with plain httpx (not dapframe's client) over sockets.

Key sets are compared exactly: the official client rejects any extra or missing key
(reference section 9).
"""

from __future__ import annotations

import base64
import email.utils
import gzip
import json
import time
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from dapframe.emulator import Emulator
from dapframe.wire import parse_timestamp


def login(emu: Emulator, secret: str | None = None) -> httpx.Response:
    basic = base64.b64encode(f"{emu.client_id}:{secret or emu.client_secret}".encode()).decode()
    return httpx.post(f"{emu.base_url}/ids/auth/login", data={"grant_type": "client_credentials"},
                      headers={"Authorization": f"Basic {basic}"})


def jwt_payload(token: str) -> dict[str, Any]:
    seg = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4)))


class Api:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        token = login(emu).json()["access_token"]
        self.http = httpx.Client(base_url=emu.base_url,
                                 headers={"Authorization": f"Bearer {token}"})

    def query(self, table: str, body: Any, ns: str = "canvas") -> httpx.Response:
        return self.http.post(f"/dap/query/{ns}/table/{table}/data", json=body)

    def wait(self, job_id: str, timeout: float = 20) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            doc = self.http.get(f"/dap/job/{job_id}").json()
            if doc["status"] in ("complete", "failed"):
                return doc
            time.sleep(0.05)
        raise AssertionError("job never finished")


@pytest.fixture
def api(emulator: Emulator) -> Api:
    return Api(emulator)


def assert_error(resp: httpx.Response, status: int, keys: set[str] | None = None) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    err = resp.json()["error"]
    assert {"type", "uuid", "message"} <= set(err)
    if keys is not None:
        assert set(err) == {"type", "uuid", "message"} | keys
    return err


def test_login_token_shape(emulator: Emulator) -> None:
    resp = login(emulator)
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("application/json")
    doc = resp.json()
    assert set(doc) == {"access_token", "expires_in", "scope", "token_type"}
    payload = jwt_payload(doc["access_token"])
    assert isinstance(payload["exp"], int) and payload["exp"] > time.time() + 3000


def test_login_wrong_secret(emulator: Emulator) -> None:
    assert_error(login(emulator, "wrong"), 401)


def test_bearer_required(emulator: Emulator) -> None:
    assert_error(httpx.get(f"{emulator.base_url}/dap/query/canvas/table"), 401)
    bad = httpx.get(f"{emulator.base_url}/dap/query/canvas/table",
                    headers={"Authorization": "Bearer a.b.c"})
    assert_error(bad, 401)


def test_tables_and_schema(api: Api) -> None:
    doc = api.http.get("/dap/query/canvas/table").json()
    assert set(doc) == {"tables"}
    assert {"accounts", "users", "pseudonyms", "courses", "course_sections", "enrollment_terms",
            "enrollments", "assignments", "submissions"} <= set(doc["tables"])
    assert api.http.get("/dap/query/canvas_logs/table").json() == {"tables": ["web_logs"]}
    schema = api.http.get("/dap/query/canvas/table/accounts/schema").json()
    assert set(schema) == {"schema", "version"}
    assert schema["version"] == 1
    assert schema["schema"]["$schema"].startswith("https://json-schema.org/")


def test_not_found_kinds(api: Api) -> None:
    err = assert_error(api.http.get("/dap/query/nope/table"), 404, {"id", "kind"})
    assert (err["kind"], err["id"]) == ("namespace", "nope")
    err = assert_error(api.http.get("/dap/query/canvas/table/nope/schema"), 404, {"id", "kind"})
    assert (err["kind"], err["id"]) == ("table", "nope")
    err = assert_error(api.http.get("/dap/job/unknown-job"), 404, {"id", "kind"})
    assert err["kind"] == "job"
    err = assert_error(api.http.post("/dap/object/url", json=[{"id": "x/part-00000"}]), 404,
                       {"id", "kind"})
    assert err["kind"] == "object"


@pytest.mark.parametrize("body", [
    {"format": "xml"},
    {"format": "jsonl", "mode": "wide"},
    {"format": "jsonl", "filter": "x"},
    {"format": "jsonl", "until": "2026-11-01T00:00:00Z"},
    {"format": "jsonl", "since": "2026-11-01T00:00:00"},
    {"format": "jsonl", "since": "2026-11-01T02:00:00Z", "until": "2026-11-01T01:00:00Z"},
    ["format"],
])
def test_query_validation(api: Api, body: Any) -> None:
    err = assert_error(api.query("accounts", body), 400, {"location"})
    assert err["type"] == "ValidationError"
    assert set(err["location"]) == {"line", "column", "character"}


def test_malformed_json_location(api: Api) -> None:
    resp = api.http.post("/dap/query/canvas/table/accounts/data", content=b'{"format": }',
                         headers={"Content-Type": "application/json"})
    err = assert_error(resp, 400, {"location"})
    assert err["location"]["column"] == 12


def test_out_of_range(api: Api) -> None:
    err = assert_error(api.query("accounts", {"format": "jsonl", "since": "2030-01-01T00:00:00Z"}),
                       400, {"since", "until"})
    assert err["type"] == "OutOfRangeError"
    err = assert_error(api.query("web_logs", {"format": "jsonl", "since": "2026-01-01T00:00:00Z"},
                                 ns="canvas_logs"), 400, {"since", "until"})
    parse_timestamp(err["since"])


def test_job_lifecycle_and_shapes(api: Api) -> None:
    api.emu.faults.job_seconds = 0.6
    resp = api.query("accounts", {"format": "jsonl"})
    assert resp.status_code == 202
    first = resp.json()
    assert first == {"id": first["id"], "status": "waiting"}
    seen = ["waiting"]
    while seen[-1] not in ("complete", "failed"):
        r = api.http.get(f"/dap/job/{first['id']}")
        doc = r.json()
        if doc["status"] == "running":
            assert set(doc) == {"id", "status", "expires_at"} and r.status_code == 202
        if doc["status"] != seen[-1]:
            seen.append(doc["status"])
        time.sleep(0.05)
    assert seen == ["waiting", "running", "complete"]
    assert r.status_code == 200
    assert set(doc) == {"id", "status", "expires_at", "objects", "schema_version", "at"}
    assert parse_timestamp(doc["at"]) == api.emu.dataset.clock
    assert parse_timestamp(doc["expires_at"]).timestamp() > time.time() + 23 * 3600
    # Identical parameters while the job lives: the same job comes back.
    assert api.query("accounts", {"format": "jsonl"}).json()["id"] == first["id"]


def test_incremental_job_shape(api: Api) -> None:
    api.emu.tick(1)
    ds = api.emu.dataset
    job = api.query("accounts", {"format": "csv", "since": "2026-11-01T00:00:00Z"}).json()
    doc = api.wait(job["id"])
    assert set(doc) == {"id", "status", "expires_at", "objects", "schema_version", "since",
                        "until"}
    assert parse_timestamp(doc["since"]) == ds.commit_time(0)
    assert parse_timestamp(doc["until"]) == ds.clock


def test_failed_job_shape(api: Api) -> None:
    api.emu.faults.fail_next_jobs(1)
    doc = api.wait(api.query("users", {"format": "tsv"}).json()["id"])
    assert doc["status"] == "failed"
    assert set(doc) == {"id", "status", "expires_at", "error"}
    assert set(doc["error"]) == {"type", "uuid", "message"}


def test_objects_urls_and_download(api: Api) -> None:
    doc = api.wait(api.query("submissions", {"format": "tsv", "mode": "condensed"}).json()["id"])
    ids = [o["id"] for o in doc["objects"]]
    assert len(ids) >= 4  # 2000+ rows at 500 rows per part
    resp = api.http.post("/dap/object/url", json=[{"id": i} for i in ids])
    urls = resp.json()
    assert set(urls) == {"urls"} and set(urls["urls"]) == set(ids)
    names = set()
    rows = 0
    for entry in urls["urls"].values():
        assert set(entry) == {"url"}
        url = entry["url"]
        names.add(PurePosixPath(urlsplit(url).path).name)
        r = httpx.get(url)  # no bearer token for pre-signed URLs
        assert r.status_code == 200
        assert "content-encoding" not in r.headers
        text = gzip.decompress(r.content).decode()
        header, *lines = text.rstrip("\n").split("\n")
        assert header.split("\t")[0] == "meta.ts" and "meta.action" not in header
        rows += len(lines)
    assert len(names) == len(ids) and all(n.endswith(".tsv.gz") for n in names)
    assert rows == api.emu.dataset.snapshot("canvas", "submissions").num_rows


def test_forged_and_expired_urls(api: Api) -> None:
    doc = api.wait(api.query("accounts", {"format": "jsonl"}).json()["id"])
    oid = doc["objects"][0]["id"]
    url = api.http.post("/dap/object/url", json=[{"id": oid}]).json()["urls"][oid]["url"]
    assert httpx.get(url.replace("X-Emu-Signature=", "X-Emu-Signature=0")).status_code == 403
    api.emu.faults.expire_urls(count=1)
    assert httpx.get(url).status_code == 403
    assert httpx.get(url).status_code == 200


def test_dropped_download(api: Api) -> None:
    doc = api.wait(api.query("submissions", {"format": "jsonl"}).json()["id"])
    oid = doc["objects"][0]["id"]
    url = api.http.post("/dap/object/url", json=[{"id": oid}]).json()["urls"][oid]["url"]
    api.emu.faults.drop_downloads(count=1, after_bytes=100)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert httpx.get(url).status_code == 200


def test_bursts_and_retry_after_forms(api: Api) -> None:
    api.emu.faults.burst("tables", status=429, count=1, retry_after=3)
    r = api.http.get("/dap/query/canvas/table")
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    api.emu.faults.burst("tables", status=429, count=1, retry_after="date")
    r = api.http.get("/dap/query/canvas/table")
    when = email.utils.parsedate_to_datetime(r.headers["retry-after"])
    assert r.status_code == 429 and when.timestamp() > time.time()
    api.emu.faults.burst("schema", status=503, count=2)
    codes = [api.http.get("/dap/query/canvas/table/users/schema").status_code for _ in range(3)]
    assert codes == [503, 503, 200]


def test_rate_limits(api: Api) -> None:
    api.emu.faults.rate_limits = True
    codes = [api.http.get("/dap/query/canvas/table").status_code for _ in range(6)]
    assert codes == [200] * 5 + [429]
    r = api.http.get("/dap/query/canvas/table")
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_token_expiry_and_revocation(emulator: Emulator) -> None:
    emulator.faults.token_ttl = 1
    token = login(emulator).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{emulator.base_url}/dap/query/canvas/table", headers=headers).is_success
    time.sleep(2.1)
    assert httpx.get(f"{emulator.base_url}/dap/query/canvas/table",
                     headers=headers).status_code == 401
    emulator.faults.token_ttl = 3600
    headers = {"Authorization": f"Bearer {login(emulator).json()['access_token']}"}
    emulator.faults.revoke_tokens()
    assert httpx.get(f"{emulator.base_url}/dap/query/canvas/table",
                     headers=headers).status_code == 401


def test_control_endpoints(emulator: Emulator) -> None:
    base = emulator.base_url
    doc = httpx.post(f"{base}/emulator/tick", params={"steps": 2}).json()
    assert doc["step"] == 2 and parse_timestamp(doc["clock"]) == emulator.dataset.clock
    doc = httpx.post(f"{base}/emulator/schema-bump",
                     params={"namespace": "canvas", "table": "accounts"}).json()
    assert doc["version"] == 2
    api = Api(emulator)
    assert api.http.get("/dap/query/canvas/table/accounts/schema").json()["version"] == 2
    r = httpx.post(f"{base}/emulator/faults", json={"bursts": [
        {"endpoint": "tables", "status": 500, "count": 1}]})
    assert r.status_code == 200
    assert api.http.get("/dap/query/canvas/table").status_code == 500
    assert httpx.post(f"{base}/emulator/faults", json={"nope": 1}).status_code == 400
    assert httpx.post(f"{base}/emulator/faults/reset").status_code == 200
    assert httpx.get(f"{base}/emulator/state").json()["step"] == 2


def test_network_shape_knobs(api: Api) -> None:
    doc = api.wait(api.query("submissions", {"format": "parquet"}).json()["id"])
    oid = doc["objects"][0]["id"]
    url = api.http.post("/dap/object/url", json=[{"id": oid}]).json()["urls"][oid]["url"]
    size = len(httpx.get(url).content)
    r = httpx.post(f"{api.emu.base_url}/emulator/faults",
                   json={"latency": 0.3, "object_bandwidth": size / 0.5})
    assert r.status_code == 200
    t = time.monotonic()
    api.http.get("/dap/query/canvas/table")
    assert time.monotonic() - t >= 0.3
    t = time.monotonic()
    assert len(httpx.get(url).content) == size
    assert time.monotonic() - t >= 0.4  # paced to ~0.5 s


def test_old_results_are_evicted(api: Api) -> None:
    """Past the memory cap the oldest job goes, and the API's 404 for it comes back."""
    first = api.wait(api.query("submissions", {"format": "jsonl"}).json()["id"])
    api.emu.state.max_blob_bytes = 1  # anything stored is over the cap
    second = api.wait(api.query("submissions", {"format": "csv"}).json()["id"])
    err = assert_error(api.http.get(f"/dap/job/{first['id']}"), 404, {"id", "kind"})
    assert err["kind"] == "job"
    oid = first["objects"][0]["id"]
    assert_error(api.http.post("/dap/object/url", json=[{"id": oid}]), 404, {"id", "kind"})
    assert api.http.get(f"/dap/job/{second['id']}").json()["status"] == "complete"
