"""database/n_plus_one on real SQLite and a real PostgreSQL server: results, query counts,
mismatches and bad input. PostgreSQL comes from tests/postgres_server.py (a throwaway
server per session); without its binaries those tests skip, which fails under CI=true."""

from __future__ import annotations

import copy
import logging
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import yaml

from forgebench import analysis
from forgebench.config import check_config
from forgebench.database import n_plus_one
from forgebench.database.backends import Target, open_target, sqlite_target
from forgebench.database.dataset import Sizes, generate
from forgebench.database.page_methods import (
    PAGE_METHODS,
    QuerySession,
    check_results,
    first_difference,
)
from forgebench.errors import ForgebenchError
from forgebench.record import Recorder

REPO = Path(__file__).resolve().parents[1]
FRAGMENT = REPO / "config" / "schemas" / "database.schema.yaml"
SIZES = {"users": 200, "posts": 3000, "comments": 12000}
TINY = {
    "backends": ["sqlite"],
    "postgres_dsn": "",
    "sizes": SIZES,
    "page": 1,
    "page_size": 20,
    "executions": 6,
    "warmup": 1,
    "timeout_s": 10.0,
}
KEY = "suites.database.benchmarks.n_plus_one"
STATISTICS = {"bootstrap_resamples": 200}


def tiny(**changes) -> dict:
    cfg = copy.deepcopy(TINY)
    cfg.update(changes)
    return cfg


def page_posts(expected) -> int:
    return sum(len(user[2]) for user in expected)


# ------------------------------------------------------------------- config fragment


def _check_with_fragment(tmp_path: Path, suite: dict) -> dict:
    """Validate ``suite`` through forgebench.config with only this suite's fragment."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "database.schema.yaml").write_text(FRAGMENT.read_text())
    top = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "suites": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"database": {"$ref": "schemas/database.schema.yaml"}},
            }
        },
    }
    (tmp_path / "schema.yaml").write_text(yaml.safe_dump(top))
    config = {"suites": {"database": suite}}
    check_config(config, tmp_path / "schema.yaml")
    return config["suites"]["database"]


def test_fragment_fills_defaults_the_benchmarks_accept(tmp_path):
    suite = _check_with_fragment(tmp_path, {"benchmarks": {"n_plus_one": {}}})
    section = suite["benchmarks"]["n_plus_one"]
    assert section["sizes"] == {"users": 1000, "posts": 20000, "comments": 100000}
    assert section["backends"] == ["sqlite"] and section["postgres_dsn"] == ""
    section.pop("enabled")
    p = n_plus_one.plan(section)  # every key the benchmark reads is there and valid
    assert (p.page_size, p.common.sizes.posts) == (50, 20000)


def test_fragment_rejects_a_misspelt_key(tmp_path):
    with pytest.raises(ForgebenchError, match=r"n_plus_one\.page_sise.*did you mean 'page_size'"):
        _check_with_fragment(tmp_path, {"benchmarks": {"n_plus_one": {"page_sise": 5}}})


# ----------------------------------------------------------------------------- data


def test_data_is_seeded_and_has_empty_users_and_posts():
    sizes = Sizes(**SIZES)
    a, b, c = generate(sizes, 7), generate(sizes, 7), generate(sizes, 8)
    assert a.post_titles == b.post_titles and a.comment_bodies == b.comment_bodies
    assert np.array_equal(a.comment_post, b.comment_post)
    assert not np.array_equal(a.comment_post, c.comment_post)
    posts_per_user = np.bincount(a.post_user, minlength=sizes.users + 1)[1:]
    assert (posts_per_user == 0).any(), "some users must have no posts (LEFT JOIN case)"
    assert (a.comment_counts[1:] == 0).any(), "some posts must have no comments"
    assert a.comment_counts.sum() == sizes.comments


# --------------------------------------------------------------------------- methods


def _run_methods(target: Target, expected, offset: int, limit: int) -> dict:
    out = {}
    for name, method in PAGE_METHODS.items():
        session = QuerySession(target.connect(), target.placeholder, target.max_params)
        try:
            out[name] = (method(session, offset, limit), session.queries)
        finally:
            session.close()
    return out


def _assert_identical_with_counts(target: Target, data, page: int, page_size: int) -> None:
    expected = data.expected_page(page, page_size)
    assert any(not user[2] for user in expected), "the page should hold a user without posts"
    results = _run_methods(target, expected, page * page_size, page_size)
    for name, (result, _) in results.items():
        assert result == expected, f"{name}: {first_difference(expected, result)}"
    assert results["n_plus_one"][1] == 1 + len(expected) + page_posts(expected)
    assert results["join"][1] == 1
    assert results["batched_in"][1] == 3


def _page_with_empty_user(data, page_size: int) -> int:
    posts = np.bincount(data.post_user, minlength=data.sizes.users + 1)
    empty = int(np.flatnonzero(posts[1:] == 0)[0])  # 0-based index of a user without posts
    return empty // page_size


def test_three_methods_identical_on_sqlite():
    data = generate(Sizes(**SIZES), 3)
    page = _page_with_empty_user(data, 20)
    with sqlite_target(data, 10.0) as target:
        _assert_identical_with_counts(target, data, page, 20)


def test_three_methods_identical_on_postgres(pg):
    data = generate(Sizes(**SIZES), 3)
    page = _page_with_empty_user(data, 20)
    key = f"{KEY}.postgres_dsn"
    with open_target("postgres", data, dsn=pg.dsn, dsn_key=key, timeout_s=10.0) as target:
        _assert_identical_with_counts(target, data, page, 20)


def test_batched_in_splits_id_lists_at_the_backend_limit():
    """SQLite with its bound-parameter limit really lowered to 7: the IN lists must split."""
    data = generate(Sizes(**SIZES), 3)
    with sqlite_target(data, 10.0) as target:
        connect = target.connect

        def limited():
            conn = connect()
            conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 7)
            return conn

        small = Target("sqlite", "?", limited, max_params=7)
        expected = data.expected_page(0, 20)
        session = QuerySession(small.connect(), "?", 7)
        try:
            assert PAGE_METHODS["batched_in"](session, 0, 20) == expected
            posts = page_posts(expected)
            assert session.queries == 1 + math.ceil(20 / 7) + math.ceil(posts / 7)
            unchunked = QuerySession(small.connect(), "?", 10_000)
            with pytest.raises(sqlite3.OperationalError, match="too many SQL variables"):
                PAGE_METHODS["batched_in"](unchunked, 0, 20)
            unchunked.close()
        finally:
            session.close()


def test_check_results_compares_with_the_oracle_not_among_methods():
    expected = ((1, "a", ((10, "t", 2),)), (2, "b", ()))
    wrong = ((1, "a", ((10, "t", 3),)), (2, "b", ()))
    assert check_results(expected, {"x": expected, "y": wrong}) == {"x": "ok", "y": "mismatch"}
    # all methods agreeing on a wrong answer is still a mismatch
    assert check_results(expected, {"x": wrong, "y": wrong}) == {"x": "mismatch", "y": "mismatch"}
    assert "post (10, 't', 3)" in first_difference(expected, wrong)


# ------------------------------------------------------------------------ benchmark


def test_run_on_sqlite_rows_counts_and_interleaving():
    frame = n_plus_one.run(tiny(), seed=5)
    assert (frame["status"] == "ok").all()
    cases = {"sqlite_n_plus_one", "sqlite_join", "sqlite_batched_in"}
    assert set(frame["case"]) == cases
    rounds = TINY["executions"] + TINY["warmup"]
    assert len(frame) == rounds * 3 * 2
    assert frame["warmup"].sum() == TINY["warmup"] * 3 * 2
    queries = frame[frame["metric"] == "queries"].groupby("case")["value"].unique()
    expected = generate(Sizes(**SIZES), 5).expected_page(1, 20)
    assert list(queries["sqlite_n_plus_one"]) == [1 + 20 + page_posts(expected)]
    assert list(queries["sqlite_join"]) == [1]
    assert list(queries["sqlite_batched_in"]) == [3]
    lat = frame[frame["metric"] == "latency"].sort_values("started_at")
    orders = {tuple(g["case"]) for _, g in lat.groupby("repetition")}
    assert len(orders) > 1, "rounds must interleave the methods in varying (seeded) order"
    again = n_plus_one.run(tiny(), seed=5)
    again_lat = again[again["metric"] == "latency"].sort_values("started_at")
    assert list(again_lat["case"]) == list(lat["case"]), "the order must follow the seed"


def test_run_on_postgres_and_schema_is_dropped(pg):
    import psycopg

    frame = n_plus_one.run(tiny(backends=["sqlite", "postgres"], postgres_dsn=pg.dsn), seed=2)
    assert (frame["status"] == "ok").all()
    pg_rows = frame[frame["case"].str.startswith("postgres_")]
    assert set(pg_rows["case"]) == {"postgres_n_plus_one", "postgres_join", "postgres_batched_in"}
    with psycopg.connect(pg.dsn) as conn:
        left = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'forgebench%'"
        ).fetchall()
    assert left == []


def _verdicts(frame, baseline: str, candidate: str, metric: str = "latency"):
    comparisons = [
        {
            "name": "c",
            "suite": "database",
            "benchmark": "n_plus_one",
            "metric": metric,
            "baseline": baseline,
            "candidate": candidate,
        }
    ]
    targets = [
        {"name": "t", "comparison": "c", "statistic": "improvement", "op": ">=", "threshold": 0.8}
    ]
    comp = analysis.compare_cases(frame, comparisons, STATISTICS, seed=0)
    tgt = analysis.check_targets(targets, comp, frame, STATISTICS, seed=0)
    return comp.iloc[0], tgt.iloc[0]


def _inner_join(session: QuerySession, offset: int, limit: int):
    """A real bug: INNER JOINs drop users without posts and posts without comments."""
    rows = session.fetch(
        "SELECT u.id, u.name, p.id, p.title, COUNT(c.id) FROM "
        "(SELECT id, name FROM users ORDER BY id LIMIT ? OFFSET ?) AS u "
        "JOIN posts AS p ON p.user_id = u.id JOIN comments AS c ON c.post_id = p.id "
        "GROUP BY u.id, u.name, p.id, p.title ORDER BY u.id, p.id",
        (limit, offset),
    )
    out: dict[tuple[int, str], list] = {}
    for uid, name, pid, title, count in rows:
        out.setdefault((uid, name), []).append((pid, title, count))
    return tuple((uid, name, tuple(posts)) for (uid, name), posts in out.items())


def test_a_wrong_method_is_a_mismatch_never_an_improvement():
    cfg = tiny(executions=8)
    p = n_plus_one.plan(cfg)
    data = generate(p.common.sizes, 1)
    expected = data.expected_page(p.page, p.page_size)
    rec = Recorder("database", "n_plus_one", 1)
    methods = {"n_plus_one": PAGE_METHODS["n_plus_one"], "inner_join": _inner_join}
    with sqlite_target(data, 10.0) as target:
        n_plus_one.measure(target, expected, p, rec, seed=1, methods=methods)
    frame = rec.frame()
    wrong = frame[frame["case"] == "sqlite_inner_join"]
    assert (wrong["status"] == "mismatch").all() and wrong["value"].isna().all()
    assert (frame[frame["case"] == "sqlite_n_plus_one"]["status"] == "ok").all()
    comp, target = _verdicts(frame, "sqlite_n_plus_one", "sqlite_inner_join")
    assert comp["verdict"] != "improvement"
    assert comp["n_failed_candidate"] == 8
    assert target["verdict"] != "met"


def test_data_changed_after_loading_makes_every_method_mismatch():
    """Comments deleted from the real file after loading: all methods disagree with the
    oracle, so no row counts, whatever the methods agree on among themselves."""
    p = n_plus_one.plan(tiny())
    data = generate(p.common.sizes, 1)
    expected = data.expected_page(p.page, p.page_size)
    rec = Recorder("database", "n_plus_one", 1)
    with sqlite_target(data, 10.0) as target:
        post = next(pid for user in expected for pid, _, count in user[2] if count > 0)
        conn = target.connect()
        conn.execute("DELETE FROM comments WHERE post_id = ?", (post,))
        conn.close()
        n_plus_one.measure(target, expected, p, rec, seed=1)
    frame = rec.frame()
    assert (frame["status"] == "mismatch").all()
    comp, target = _verdicts(frame, "sqlite_n_plus_one", "sqlite_join")
    assert comp["verdict"] != "improvement" and target["verdict"] != "met"


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("change", "key", "pattern"),
    [
        ({"backends": ["sqlite", "postgres"]}, "postgres_dsn", "is empty but backends lists"),
        ({"page": 10}, "page", "beyond the 200 users"),
        ({"backends": ["sqlite", "mysql"]}, "backends", "distinct backends"),
    ],
)
def test_bad_config_names_the_key(change, key, pattern):
    with pytest.raises(ForgebenchError, match=rf"{KEY}\.{key}\b.*{pattern}"):
        n_plus_one.run(tiny(**change), seed=0)


def _unused_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # closed again: nothing listens there


def test_unreachable_dsn_is_one_clear_error():
    pytest.importorskip("psycopg")
    dsn = f"host=127.0.0.1 port={_unused_port()} dbname=x user=x password=secret-pw"
    with pytest.raises(ForgebenchError) as info:
        n_plus_one.run(tiny(backends=["postgres"], postgres_dsn=dsn), seed=0)
    message = str(info.value)
    assert message.startswith(f"{KEY}.postgres_dsn: could not connect to PostgreSQL")
    assert "refused" in message.lower()
    assert "\n" not in message and "secret-pw" not in message


def test_wrong_password_is_one_clear_error_before_any_work(pg, caplog):
    dsn = pg.dsn_with(password="not-the-password")
    caplog.set_level(logging.INFO, logger="forgebench.database")
    with pytest.raises(ForgebenchError) as info:
        n_plus_one.run(tiny(backends=["sqlite", "postgres"], postgres_dsn=dsn), seed=0)
    assert "loaded" not in caplog.text, "the DSN must be checked before sqlite runs"
    message = str(info.value)
    assert message.startswith(f"{KEY}.postgres_dsn: could not connect to PostgreSQL")
    assert "password authentication failed" in message
    assert "\n" not in message and "not-the-password" not in message
