"""One task, three ways: a page of users with their posts and each post's comment count.

Why these three: they are the shapes an ORM produces for the same page. ``n_plus_one``
is lazy loading (one query for the page, one per user for posts, one per post for its
count: ``1 + users + posts`` queries); ``join`` asks for everything in one statement;
``batched_in`` is eager loading with ``WHERE ... IN (...)`` (one query per table, three
in all, more only if an ID list exceeds the backend's limit on bound parameters).

Each method returns a :data:`PageResult` built the same way, so results compare with
``==``; every statement goes through :class:`QuerySession`, which counts them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from forgebench.database.dataset import PageResult

METHODS = ("n_plus_one", "join", "batched_in")


class QuerySession:
    """A connection and one reusable cursor; ``fetch`` runs a statement and counts it."""

    def __init__(self, conn: Any, placeholder: str, max_params: int) -> None:
        self.conn = conn
        self.cursor = conn.cursor()
        self.placeholder = placeholder
        self.max_params = max_params
        self.queries = 0
        self._sql: dict[str, str] = {}

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """All rows of ``sql`` (written with ``?`` placeholders, translated once per text)."""
        cur = self.cursor
        cur.execute(self._dialect(sql), params)
        self.queries += 1
        return cur.fetchall()

    def fetch_in(self, template: str, ids: Sequence[int]) -> list[tuple[Any, ...]]:
        """Rows of ``template`` with ``{ids}`` replaced by an IN list, chunked to the limit."""
        rows: list[tuple[Any, ...]] = []
        step = max(1, self.max_params)
        for start in range(0, len(ids), step):
            chunk = ids[start : start + step]
            rows.extend(self.fetch(template.format(ids=",".join("?" * len(chunk))), chunk))
        return rows

    def close(self) -> None:
        try:
            self.cursor.close()
        finally:
            self.conn.close()

    def _dialect(self, sql: str) -> str:
        if self.placeholder == "?":
            return sql
        text = self._sql.get(sql)
        if text is None:
            text = self._sql[sql] = sql.replace("?", self.placeholder)
        return text


PAGE_USERS = "SELECT id, name FROM users ORDER BY id LIMIT ? OFFSET ?"
POSTS_OF_USER = "SELECT id, title FROM posts WHERE user_id = ? ORDER BY id"
COMMENTS_OF_POST = "SELECT COUNT(*) FROM comments WHERE post_id = ?"
PAGE_JOIN = """
SELECT u.id, u.name, p.id, p.title, COUNT(c.id)
FROM (SELECT id, name FROM users ORDER BY id LIMIT ? OFFSET ?) AS u
LEFT JOIN posts AS p ON p.user_id = u.id
LEFT JOIN comments AS c ON c.post_id = p.id
GROUP BY u.id, u.name, p.id, p.title
ORDER BY u.id, p.id
"""
POSTS_IN = "SELECT id, user_id, title FROM posts WHERE user_id IN ({ids}) ORDER BY id"
COUNTS_IN = "SELECT post_id, COUNT(*) FROM comments WHERE post_id IN ({ids}) GROUP BY post_id"


def n_plus_one(s: QuerySession, offset: int, limit: int) -> PageResult:
    """Lazy loading: the page, then each user's posts, then each post's comment count."""
    out = []
    for user_id, name in s.fetch(PAGE_USERS, (limit, offset)):
        posts = []
        for post_id, title in s.fetch(POSTS_OF_USER, (user_id,)):
            ((count,),) = s.fetch(COMMENTS_OF_POST, (post_id,))
            posts.append((post_id, title, count))
        out.append((user_id, name, tuple(posts)))
    return tuple(out)


def join(s: QuerySession, offset: int, limit: int) -> PageResult:
    """One statement: the page LEFT JOIN posts LEFT JOIN comments, grouped per post."""
    out: list[tuple[int, str, tuple[tuple[int, str, int], ...]]] = []
    current: int | None = None
    name = ""
    posts: list[tuple[int, str, int]] = []
    for user_id, user_name, post_id, title, count in s.fetch(PAGE_JOIN, (limit, offset)):
        if user_id != current:
            if current is not None:
                out.append((current, name, tuple(posts)))
            current, name, posts = user_id, user_name, []
        if post_id is not None:  # a user without posts comes back as one NULL post
            posts.append((post_id, title, count))
    if current is not None:
        out.append((current, name, tuple(posts)))
    return tuple(out)


def batched_in(s: QuerySession, offset: int, limit: int) -> PageResult:
    """Eager loading: the page, its posts by ``user_id IN``, their counts by ``post_id IN``."""
    users = s.fetch(PAGE_USERS, (limit, offset))
    user_ids = [u[0] for u in users]
    posts = s.fetch_in(POSTS_IN, user_ids) if user_ids else []
    counts = dict(s.fetch_in(COUNTS_IN, [p[0] for p in posts])) if posts else {}
    by_user: dict[int, list[tuple[int, str, int]]] = {uid: [] for uid in user_ids}
    for post_id, user_id, title in posts:  # ordered by id, so each list is too
        by_user[user_id].append((post_id, title, counts.get(post_id, 0)))
    return tuple((uid, name, tuple(by_user[uid])) for uid, name in users)


PAGE_METHODS: Mapping[str, Callable[[QuerySession, int, int], PageResult]] = {
    "n_plus_one": n_plus_one,
    "join": join,
    "batched_in": batched_in,
}


def first_difference(expected: PageResult, got: PageResult) -> str:
    """Where ``got`` first departs from ``expected``, in words (for the log)."""
    if len(got) != len(expected):
        return f"{len(got)} users instead of {len(expected)}"
    for want, have in zip(expected, got, strict=True):
        if want[:2] != have[:2]:
            return f"user {have[:2]} where {want[:2]} was expected"
        if len(want[2]) != len(have[2]):
            return f"user {want[0]}: {len(have[2])} posts instead of {len(want[2])}"
        for post_want, post_have in zip(want[2], have[2], strict=True):
            if post_want != post_have:
                return f"user {want[0]}: post {post_have} where {post_want} was expected"
    return "no difference"


def check_results(expected: PageResult, results: Mapping[str, PageResult]) -> dict[str, str]:
    """Status of each method's result: ``ok`` if it equals the oracle's, else ``mismatch``.

    Agreement among the methods is not enough: all of them must equal ``expected``,
    computed in Python from the generated data.
    """
    return {m: "ok" if got == expected else "mismatch" for m, got in results.items()}
