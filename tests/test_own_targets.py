"""The benchmarks pointed at a user's own service and database.

HTTP: a separate server process started here on loopback (Python's http.server, HTTP/1.1,
on a free port) is loaded through ``target_url``; its rows must say ``external``, and
500s, a server killed mid-run and a wrong certificate must be failed rows. Database: the
throwaway PostgreSQL of tests/postgres_server.py runs a query file written here. Bad URLs,
non-loopback hosts and bad query files must stop a run before any traffic, naming the key.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from conftest import require_executable

from forgebench.database import n_plus_one, user_queries
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder
from forgebench.service import load_scenarios, responsiveness, target, wrk_compare

REPO = Path(__file__).resolve().parents[1]
LOAD_KEY = "suites.service.benchmarks.load_scenarios"
QUERY_KEY = "suites.database.benchmarks.n_plus_one.query_file"

# A user's service, as small as can be: /fail answers 500, /slow answers after 0.5 s,
# everything else 200. It dies when its stdin closes (with the test that started it), or
# after its DIE_AFTER-th answer when that is set (a server that stops mid-run).
SERVER = r"""
import http.server, itertools, os, ssl, sys, threading, time

DIE_AFTER = int(os.environ.get("DIE_AFTER", "0"))
served = itertools.count(1)

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path.startswith("/fail"):
            code, body = 500, b"broken"
        else:
            if self.path.startswith("/slow"):
                time.sleep(0.5)
            code, body = 200, b"fine " + self.path.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if DIE_AFTER and next(served) >= DIE_AFTER:
            os._exit(0)

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
if len(sys.argv) == 3:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)

def watch_stdin():
    while os.read(0, 1024):
        pass
    os._exit(0)

threading.Thread(target=watch_stdin, daemon=True).start()
print("PORT", server.server_address[1], flush=True)
server.serve_forever()
"""


@contextmanager
def user_service(*tls: str, die_after: int = 0) -> Iterator[tuple[str, subprocess.Popen]]:
    """Start the little server in its own process; yield its base URL and the process."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, *tls],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "DIE_AFTER": str(die_after)},
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        assert line.startswith("PORT "), f"the test server did not start: {line!r}"
        scheme = "https" if tls else "http"
        yield f"{scheme}://127.0.0.1:{int(line.split()[1])}", proc
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _resp_cfg(url: str, paths: list[str], **over) -> dict:
    cfg = {
        "endpoints": ["health", "db_page", "job"],  # the built-in's; unused for a URL
        "users": [1, 3],
        "warmup_queries": 3,
        "min_duration_s": 0.2,
        "min_queries": 20,
        "max_duration_s": 5.0,
        "timeout_s": 1.0,
        "window_s": 0.1,
        "startup_timeout_s": 60,
        "job": {"rounds": 10, "workers": 1},
        "db": {},
        "rag": {},
        "faults": [],
        "target_url": url,
        "target_paths": paths,
        "allow_remote_target": False,
    }
    cfg.update(over)
    return cfg


def _load_cfg(url: str, paths: list[str], **over) -> dict:
    cfg = {
        "endpoint": "db_page",
        "scenarios": ["load"],
        "min_duration_s": 0.3,
        "min_queries": 20,
        "max_duration_s": 5,
        "timeout_s": 1.0,
        "window_s": 0.1,
        "startup_timeout_s": 60,
        "max_connections": 16,
        "load": {"users": [2], "rates": [100]},
        "stress": {"start_rate": 50, "factor": 2.0, "max_rate": 100, "step_duration_s": 0.3,
                   "min_queries": 10, "bootstrap_resamples": 200},
        "spike": {"rate": 40, "multiplier": 5, "pre_s": 1.5, "spike_s": 0.2, "post_s": 1.0,
                  "step_s": 0.1, "tolerance": 0.5},
        "endurance": {"rate": 40, "duration_s": 0.5, "warmup_s": 0.0, "sample_interval_s": 0.05,
                      "growth_granularity_mb": 1.0},
        "db": {},
        "rag": {},
        "faults": [],
        "target_url": url,
        "target_paths": paths,
        "allow_remote_target": False,
    }  # fmt: skip
    cfg.update(over)
    return cfg


def _params(frame) -> list[dict]:
    return [json.loads(p) for p in frame["params"].unique()]


# ------------------------------------------------------------------ URL validation


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://127.0.0.1:21", r"target_url: 'ftp://127.0.0.1:21' has scheme 'ftp'.*http://"),
        ("127.0.0.1:8000", r"target_url: .*has scheme .*use http:// or https://"),
        ("http://:8000", r"target_url: .*names no host"),
        ("http://127.0.0.1:99999", r"target_url: .*invalid port"),
        ("http://127.0.0.1:0", r"target_url: .*port 0"),
        ("http://bob:secret@127.0.0.1:8000", r"target_url: credentials in the URL"),
        ("http://127.0.0.1:8000/?a=1", r"target_url: .*query or fragment.*target_paths"),
        ("", r"target_url: give a URL"),
    ],
)
def test_bad_urls_are_refused_naming_the_key(url: str, message: str) -> None:
    cfg = _load_cfg(url or " ", ["/"])
    if not url:
        cfg["target_url"] = 8000
    with pytest.raises(ForgebenchError, match=LOAD_KEY.replace(".", r"\.") + r"\." + message):
        load_scenarios.run(cfg, seed=0)


@pytest.mark.parametrize("host", ["10.0.0.1", "example.com", "0.0.0.0", "[2001:db8::1]"])
def test_non_loopback_hosts_are_refused_unless_allowed(host: str) -> None:
    cfg = _resp_cfg(f"http://{host}:8000", ["/"])
    with pytest.raises(ForgebenchError, match=r"not a loopback address.*allow_remote_target"):
        responsiveness.run(cfg, seed=0)
    # Allowed, the URL parses; no request is sent here (external_target only checks).
    allowed = target.external_target({**cfg, "allow_remote_target": True}, "k")
    assert allowed is not None and allowed.port == 8000


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000", "http://127.8.9.10", "https://localhost:8443/api/",
            "http://[::1]:8000", "http://[::ffff:127.0.0.1]:80"],
)  # fmt: skip
def test_loopback_urls_are_accepted(url: str) -> None:
    t = target.external_target({"target_url": url, "target_paths": ["/a?b=1"]}, "k")
    assert t is not None and t.paths == ("/a?b=1",)
    assert t.requests()[0].path == t.base_path + "/a?b=1"
    assert t.address().external and t.params()["target"] == "external"
    if url.startswith("https://localhost"):
        assert (t.port, t.base_path, t.address().ssl is not None) == (8443, "/api", True)
        assert t.address().url == "https://localhost:8443/api"
    if "[::1]" in url:
        assert (
            t.requests()[0]
            .raw(t.host, t.port, t.host_header)
            .startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: [::1]:8000\r\n")
        )


def test_settings_that_need_the_builtin_service_are_refused() -> None:
    with pytest.raises(ForgebenchError, match=r"target_paths: only used with .*target_url"):
        load_scenarios.check_config(_load_cfg(None, ["/health"]))
    faults = [{"path_prefix": "/", "error_share": 0.5}]
    with pytest.raises(ForgebenchError, match=r"faults: fault injection is done by the built-in"):
        responsiveness.check_config(_resp_cfg("http://127.0.0.1:1", ["/"], faults=faults))
    for bad in (["health"], ["/a b"], ["/x#y"], [], "/", ["/a", "/a"]):
        with pytest.raises(ForgebenchError, match=r"target_paths: "):
            load_scenarios.check_config(_load_cfg("http://127.0.0.1:1", bad))
    defaults = target.external_target({"target_url": "http://127.0.0.1:1"}, "k")
    assert defaults is not None and defaults.paths == ("/",)
    assert target.case_names(["/", "/items?id=1", "/items/id/1"]) == [
        "root", "items_id_1", "items_id_1_2"
    ]  # fmt: skip


def test_schema_takes_the_target_keys() -> None:
    """Same keys, types and defaults as the code reads, in all three benchmarks."""
    schema = yaml.safe_load((REPO / "config/schemas/service.schema.yaml").read_text())
    benches = schema["properties"]["benchmarks"]["properties"]
    for name in ("responsiveness", "load_scenarios", "wrk_compare"):
        props = benches[name]["properties"]
        assert props["target_url"]["default"] is None
        assert props["allow_remote_target"]["default"] is False
    assert benches["responsiveness"]["properties"]["target_paths"]["default"] is None
    assert "target_paths" not in benches["wrk_compare"]["properties"]  # it has `path`
    db = yaml.safe_load((REPO / "config/schemas/database.schema.yaml").read_text())
    assert db["properties"]["benchmarks"]["properties"]["n_plus_one"]["properties"][
        "query_file"
    ]["default"] is None  # fmt: skip


# ------------------------------------------------------------- HTTP against a user's server


def test_responsiveness_against_a_users_server_counts_500s() -> None:
    with user_service() as (url, _):
        frame = responsiveness.run(_resp_cfg(url, ["/ok?x=1", "/fail"]), seed=1)
    assert set(frame["case"]) == {"ok_x_1_1u", "ok_x_1_3u", "fail_1u", "fail_3u"}
    for p in _params(frame):
        assert p["target"] == "external" and p["url"] == url
        assert p["ok_when"] == "2xx within timeout_s"
    lat = frame[(frame["metric"] == "latency") & ~frame["warmup"]]
    ok = lat[lat["case"].str.startswith("ok_")]
    assert len(ok) >= 40 and (ok["status"] == "ok").all()
    failed = lat[lat["case"].str.startswith("fail_")]
    assert len(failed) >= 40 and (failed["status"] == "error:HTTP500").all()
    assert failed["value"].isna().all()
    share = frame[(frame["metric"] == "error_share") & frame["case"].eq("fail_3u")]
    assert share["value"].iloc[0] == 1.0


def test_load_scenarios_against_a_users_server() -> None:
    """Every scenario runs; the soak's server memory is unavailable, not invented."""
    cfg = _load_cfg("", ["/a", "/b?c=d"], scenarios=["load", "stress", "spike", "endurance"])
    with user_service() as (url, _):
        frame = load_scenarios.run({**cfg, "target_url": url}, seed=3)
    assert {"load_closed_2u", "load_open_100rps", "stress", "spike", "endurance"} <= set(
        frame["case"]
    )
    for p in _params(frame):
        assert p["target"] == "external" and p["url"] == url
    lat = frame[frame["metric"] == "latency"]
    assert len(lat) > 100 and (lat["status"] == "ok").all()
    mem = frame[frame["metric"].isin(["memory_growth", "server_peak_rss"])]
    assert len(mem) == 2 and (mem["status"] == "unavailable").all()
    assert all("not ours" in json.loads(p)["unavailable"] for p in mem["params"])


def test_a_server_that_stops_mid_run_gives_failed_rows() -> None:
    """The server exits after its 150th answer, during the first (closed-loop) run."""
    cfg = _load_cfg("", ["/ok"], min_duration_s=0.5, min_queries=300)
    cfg["load"] = {"users": [2], "rates": [200]}
    with user_service(die_after=150) as (url, _):
        frame = load_scenarios.run({**cfg, "target_url": url}, seed=4)
    for case in ("load_closed_2u", "load_open_200rps"):
        lat = frame[(frame["case"] == case) & (frame["metric"] == "latency")]
        counts = lat["status"].value_counts()
        failed = counts.drop("ok", errors="ignore")
        assert failed.sum() > 0, (case, counts)
        assert all(s.startswith("error:") or s == "timeout" for s in failed.index)
    first = frame[(frame["case"] == "load_closed_2u") & (frame["metric"] == "latency")]
    assert 140 <= (first["status"] == "ok").sum() < 150  # the probe had one; then it stopped
    share = frame[(frame["case"] == "load_open_200rps") & (frame["metric"] == "error_share")]
    assert share["value"].iloc[0] == 1.0  # the open-loop run came after the kill


def test_wrk_compare_against_a_users_server() -> None:
    require_executable("wrk")
    cfg = {"path": "/ok", "connections": 2, "wrk_threads": 1, "rounds": 2, "duration_s": 1,
           "warmup_s": 0.1, "timeout_s": 2.0, "startup_timeout_s": 60, "db": {}, "faults": [],
           "allow_remote_target": False}  # fmt: skip
    with user_service() as (url, _):
        frame = wrk_compare.run({**cfg, "target_url": url}, seed=0)
    assert set(frame["case"]) == {"forgebench", "wrk", "ratio"}
    assert all(p["target"] == "external" for p in _params(frame))
    thr = frame[frame["metric"] == "throughput"]
    assert (thr["status"] == "ok").all() and (thr["value"] > 0).all()


def _self_signed(tmp: Path) -> tuple[str, str]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl not found on PATH")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return str(cert), str(key)


def test_https_target_verifies_its_certificate(tmp_path, monkeypatch) -> None:
    cert, key = _self_signed(tmp_path)
    cfg = _resp_cfg("", ["/ok"], users=[1])
    with user_service(cert, key) as (url, _):
        assert url.startswith("https://")
        untrusted = responsiveness.run({**cfg, "target_url": url}, seed=0)
        monkeypatch.setenv("SSL_CERT_FILE", cert)  # the private CA, as a user would give it
        trusted = responsiveness.run({**cfg, "target_url": url}, seed=0)
    lat = untrusted[untrusted["metric"] == "latency"]
    assert (lat["status"] == "error:SSLCertVerificationError").all()
    lat = trusted[trusted["metric"] == "latency"]
    assert len(lat) >= 20 and (lat["status"] == "ok").all()


# ------------------------------------------------------------------ query files


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / f"q{uuid.uuid4().hex[:6]}.sql"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"holds no queries"),
        ("-- just a comment\n\n", r"holds no queries"),
        ("SELECT 1\n-- name: a\nSELECT 2", r"line 1 holds SQL before the first"),
        ("-- name: a\n", r"query 'a' has no statement"),
        ("-- name: a\nINSERT INTO t VALUES (1)", r"starts with 'INSERT'.*never a write"),
        ("-- name: a\ndelete from t", r"starts with 'DELETE'"),
        ("-- name: a\nCREATE TABLE t (x int)", r"starts with 'CREATE'"),
        ("-- name: a\nWITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
         r"contains 'DELETE'"),
        ("-- name: a\nSELECT * INTO t2 FROM t", r"contains 'INTO'"),
        ("-- name: a\nSELECT * FROM t FOR  UPDATE", r"contains 'FOR UPDATE'"),
        ("-- name: a\nSELECT 1; DROP TABLE t", r"more than one statement"),
        ("-- name: a\nSELECT 1\n-- name: a\nSELECT 2", r"label 'a' is used twice"),
        ("-- name: a b\nSELECT 1", r"label 'a b' must be"),
        ("-- name: a\n-- params: [1,\nSELECT %s", r"params of 'a' are not JSON"),
        ("-- name: a\n-- params: 5\nSELECT %s", r"must be a JSON list or object"),
    ],
)  # fmt: skip
def test_bad_query_files_are_refused(tmp_path, text: str, message: str) -> None:
    cfg = {"query_file": _write(tmp_path, text), "postgres_dsn": "host=127.0.0.1 port=1",
           "executions": 1, "warmup": 0, "timeout_s": 1.0}  # fmt: skip
    with pytest.raises(ForgebenchError, match=QUERY_KEY.replace(".", r"\.") + r": .*" + message):
        n_plus_one.run(cfg, seed=0)


def test_query_file_checks_that_need_no_server(tmp_path) -> None:
    cfg = {"query_file": str(tmp_path / "missing.sql"), "postgres_dsn": "host=127.0.0.1",
           "executions": 1, "warmup": 0, "timeout_s": 1.0}  # fmt: skip
    with pytest.raises(ForgebenchError, match=r"query_file: .*missing\.sql' is not a file"):
        n_plus_one.run(cfg, seed=0)
    with pytest.raises(ForgebenchError, match=r"n_plus_one\.postgres_dsn is empty but query_file"):
        n_plus_one.run({**cfg, "postgres_dsn": ""}, seed=0)
    # Write words inside strings, quoted identifiers and comments are not statements.
    text = (
        "-- name: fine\n-- params: {\"v\": \"x\"}\n"
        "SELECT 'delete; drop' AS \"update\", $$insert$$ /* into */ -- for update\n"
        "FROM t WHERE v = %(v)s;\n"
    )  # fmt: skip
    (q,) = user_queries.parse_query_file(_write(tmp_path, text), "k")
    assert q.label == "fine" and q.params == {"v": "x"} and q.sql.endswith("%(v)s")
    kwargs = user_queries.read_only_kwargs("host=h options='-c search_path=app'", 2.5)
    assert kwargs["options"] == (
        "-c search_path=app -c default_transaction_read_only=on -c statement_timeout=2500"
    )


@pytest.fixture
def user_db(pg) -> Iterator[str]:
    """A table of the test's own in the throwaway server, as a user's database has one."""
    import psycopg

    schema = f"own_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
        conn.execute(f"CREATE TABLE {schema}.items (id int PRIMARY KEY, kind text)")
        conn.execute(
            f"INSERT INTO {schema}.items SELECT g, CASE WHEN g % 3 = 0 THEN 'a' ELSE 'b' END "
            "FROM generate_series(1, 300) g"
        )
        conn.execute(f"CREATE SEQUENCE {schema}.s")
    try:
        yield schema
    finally:
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_user_queries_on_a_users_postgres(pg, user_db, tmp_path) -> None:
    text = f"""
-- A user's queries: two that work, one on a missing table, one whose size changes.
-- name: all_items
SELECT * FROM {user_db}.items
-- name: by_kind
-- params: ["a"]
SELECT id FROM {user_db}.items WHERE kind = %s ORDER BY id;
-- name: missing
SELECT * FROM {user_db}.no_such_table
-- name: unstable
SELECT g FROM generate_series(1, 1 + (random() * 3)::int) g
"""
    cfg = {"query_file": _write(tmp_path, text), "postgres_dsn": pg.dsn, "executions": 10,
           "warmup": 2, "timeout_s": 5.0, "backends": ["sqlite"], "sizes": {}}  # fmt: skip
    frame = n_plus_one.run(cfg, seed=1)
    assert set(frame["case"]) == {"query:all_items", "query:by_kind", "query:missing",
                                  "query:unstable"}  # fmt: skip
    for p in _params(frame):
        assert p["target"] == "external" and p["read_only"] is True
        assert "password" not in json.dumps(p) and pg.password not in json.dumps(p)
    assert (frame.groupby(["case", "metric"]).size() == 12).all()
    assert frame["warmup"].sum() == 2 * 4 * 2
    rows = frame[frame["metric"] == "rows"]
    by = {c: g for c, g in rows.groupby("case")}
    assert (by["query:all_items"]["value"] == 300).all()
    assert (by["query:by_kind"]["value"] == 100).all()
    assert (by["query:missing"]["status"] == "error:UndefinedTable").all()
    unstable = by["query:unstable"]["status"]
    assert "mismatch" in set(unstable) and unstable.iloc[0] == "ok"
    lat = frame[(frame["metric"] == "latency") & (frame["status"] == "ok")]
    assert (lat["value"] > 0).all()


def test_the_server_refuses_writes_that_pass_the_check(pg, user_db) -> None:
    """Defence in depth: sessions are read-only, so nextval() fails on the server."""
    q = user_queries.UserQuery("sneaky", f"SELECT nextval('{user_db}.s')", None, 1)
    p = user_queries.Plan([q], pg.dsn, executions=2, warmup=0, timeout_s=5.0)
    rec = Recorder("database", "n_plus_one", 1)
    user_queries.measure(p, rec, seed=0, benchmark="n_plus_one")
    frame = rec.frame()
    assert (frame["status"] == "error:ReadOnlySqlTransaction").all() and len(frame) == 4


def test_statement_timeout_and_unreachable_server_are_rows(pg, tmp_path) -> None:
    text = "-- name: sleepy\nSELECT pg_sleep(3)\n-- name: quick\nSELECT 1\n"
    cfg = {"query_file": _write(tmp_path, text), "postgres_dsn": pg.dsn, "executions": 1,
           "warmup": 0, "timeout_s": 0.3}  # fmt: skip
    t0 = time.monotonic()
    frame = n_plus_one.run(cfg, seed=0)
    assert time.monotonic() - t0 < 3
    status = frame.groupby("case")["status"].first().to_dict()
    assert status == {"query:sleepy": "timeout", "query:quick": "ok"}
    # Nothing listens there: one failed row per query and metric, no exception.
    down = n_plus_one.run({**cfg, "postgres_dsn": pg.dsn_with(port=1)}, seed=0)
    assert len(down) == 4 and (down["status"] == "error:OperationalError").all()
    assert set(down["case"]) == {"query:sleepy", "query:quick"} and not down["warmup"].any()


# ------------------------------------------------------------------ the README's examples


def _readme_heredocs() -> dict[str, str]:
    """The files the README's "Your own service and database" section writes, by name."""
    import re

    text = (REPO / "README.md").read_text()
    section = text.split("## Your own service and database", 1)[1].split("\n## ", 1)[0]
    found = re.findall(r"cat > (\S+) <<'?EOF'?\n(.*?)\nEOF\n", section, re.S)
    return {name: body + "\n" for name, body in found}


def test_readme_overlays_are_valid_configs(tmp_path) -> None:
    from snakemake.utils import update_config

    from forgebench.config import check_config, load_yaml
    from forgebench.workflow import check_references

    files = _readme_heredocs()
    assert set(files) == {"my-service.yaml", "my-queries.sql", "my-database.yaml"}
    for name in ("my-service.yaml", "my-database.yaml"):
        config = load_yaml(REPO / "config" / "config.yaml")
        overlay = files[name].replace("$(head -n 1 pg-dsn.txt)", "host=127.0.0.1 port=5432")
        update_config(config, yaml.safe_load(overlay))
        check_config(config)
        check_references(config)
        benches = config["suites"][name.removeprefix("my-").removesuffix(".yaml")]["benchmarks"]
        if name == "my-service.yaml":
            for bench in ("responsiveness", "load_scenarios"):
                key = f"suites.service.benchmarks.{bench}"
                checked = target.external_target(benches[bench], key)
                assert checked is not None and checked.paths == ("/", "/?page=2")
        else:
            assert benches["n_plus_one"]["query_file"] == "my-queries.sql"


def test_readme_queries_run_on_postgres(pg, tmp_path) -> None:
    query_file = tmp_path / "my-queries.sql"
    query_file.write_text(_readme_heredocs()["my-queries.sql"])
    cfg = {"query_file": str(query_file), "postgres_dsn": pg.dsn, "executions": 3, "warmup": 1,
           "timeout_s": 5.0}  # fmt: skip
    frame = n_plus_one.run(cfg, seed=0)
    assert set(frame["case"]) == {"query:tables", "query:timeout_settings"}
    assert (frame["status"] == "ok").all()
