"""The seeded users/posts/comments data set, and the answers computed from it in Python.

Why the answers come from here and not from a database: the benchmark checks every
query method against an oracle that shares no SQL with them, so a bug common to all three
methods (or a database whose data drifted from what was loaded) still shows as a
``mismatch`` instead of an agreement among wrong answers.

Shape of the data (all ids start at 1, in insertion order):

* ``users``: ``id``, ``name``. About 10% of users have no posts (their weight is 0), the
  rest post with log-normal activity, so pages mix busy, quiet and empty users.
* ``posts``: ``id``, ``user_id``, ``title`` (3 to 6 words from a small vocabulary).
* ``comments``: ``id``, ``post_id``, ``body`` (20 to 80 letters). About 20% of posts get
  no comments, the rest log-normal popularity, so a LEFT JOIN has zero counts to keep.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from forgebench.errors import ForgebenchError

#: A page: ``((user_id, name, ((post_id, title, comment_count), ...)), ...)``, users by id,
#: each user's posts by id. Plain tuples, so equality is exact and cheap.
PageResult = tuple[tuple[int, str, tuple[tuple[int, str, int], ...]], ...]

_WORDS = [
    "alpha",
    "bravo",
    "cache",
    "delta",
    "epoch",
    "fetch",
    "graph",
    "index",
    "join",
    "kernel",
    "latency",
    "merge",
    "node",
    "query",
    "replica",
    "shard",
    "table",
    "tuple",
    "vector",
    "write",
    "yield",
    "zone",
    "batch",
    "cursor",
    "lock",
    "page",
]
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz      ", dtype=np.uint8)


@dataclass(frozen=True)
class Sizes:
    """Row counts of the three tables."""

    users: int
    posts: int
    comments: int


@dataclass(frozen=True)
class Dataset:
    """The generated rows, column by column (row ``i`` has id ``i + 1``)."""

    sizes: Sizes
    user_names: list[str]
    post_user: np.ndarray  # user id of each post
    post_titles: list[str]
    comment_post: np.ndarray  # post id of each comment
    comment_bodies: list[str]

    def user_rows(self) -> list[tuple[int, str]]:
        return [(i + 1, name) for i, name in enumerate(self.user_names)]

    def post_rows(self) -> list[tuple[int, int, str]]:
        users = self.post_user.tolist()
        return [(i + 1, users[i], title) for i, title in enumerate(self.post_titles)]

    def comment_rows(self) -> list[tuple[int, int, str]]:
        posts = self.comment_post.tolist()
        return [(i + 1, posts[i], body) for i, body in enumerate(self.comment_bodies)]

    @cached_property
    def comment_counts(self) -> np.ndarray:
        """Comments per post, indexed by post id (index 0 unused)."""
        return np.bincount(self.comment_post, minlength=self.sizes.posts + 1)

    @cached_property
    def _posts_by_user(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for i, user in enumerate(self.post_user.tolist()):
            out.setdefault(user, []).append(i + 1)
        return out

    def expected_page(self, page: int, page_size: int) -> PageResult:
        """The page of users ``page * page_size + 1 ...`` with their posts and comment counts."""
        first = page * page_size
        counts = self.comment_counts
        out = []
        for user_id in range(first + 1, min(first + page_size, self.sizes.users) + 1):
            posts = tuple(
                (pid, self.post_titles[pid - 1], int(counts[pid]))
                for pid in self._posts_by_user.get(user_id, [])
            )
            out.append((user_id, self.user_names[user_id - 1], posts))
        return tuple(out)


def _weights(rng: np.random.Generator, n: int, idle_share: float) -> np.ndarray:
    """Log-normal activity with a share of exact zeros; never all zero."""
    w = rng.lognormal(0.0, 1.0, n) * (rng.random(n) >= idle_share)
    if not w.any():
        w[:] = 1.0
    return w / w.sum()


def _texts(rng: np.random.Generator, n: int, low: int, high: int) -> list[str]:
    """``n`` random lowercase strings of ``low``..``high`` characters, from one buffer."""
    lengths = rng.integers(low, high + 1, n)
    pool = _LETTERS[rng.integers(0, _LETTERS.size, int(lengths.sum()))].tobytes().decode()
    ends = np.cumsum(lengths).tolist()
    starts = [0, *ends[:-1]]
    return [pool[s:e] for s, e in zip(starts, ends, strict=True)]


def generate(sizes: Sizes, seed: int) -> Dataset:
    """The data set for ``sizes``; equal seed and sizes give identical data."""
    if sizes.users < 1 or sizes.posts < 0 or sizes.comments < 0:
        raise ForgebenchError(f"database sizes need users >= 1, posts >= 0, comments >= 0: {sizes}")
    if sizes.comments and not sizes.posts:
        raise ForgebenchError(f"database sizes: {sizes.comments} comments need posts >= 1")
    rng = np.random.default_rng(seed)
    names = [f"user{i:07d}" for i in range(1, sizes.users + 1)]
    post_user = rng.choice(sizes.users, size=sizes.posts, p=_weights(rng, sizes.users, 0.1)) + 1
    words = np.array(_WORDS)
    n_words = rng.integers(3, 7, sizes.posts)
    picks = rng.integers(0, words.size, (sizes.posts, 6))
    titles = [" ".join(words[picks[i, : n_words[i]]]) for i in range(sizes.posts)]
    if sizes.comments:
        comment_post = (
            rng.choice(sizes.posts, size=sizes.comments, p=_weights(rng, sizes.posts, 0.2)) + 1
        )
    else:
        comment_post = np.zeros(0, dtype=np.int64)
    bodies = _texts(rng, sizes.comments, 20, 80)
    return Dataset(
        sizes=sizes,
        user_names=names,
        post_user=post_user.astype(np.int64),
        post_titles=titles,
        comment_post=comment_post.astype(np.int64),
        comment_bodies=bodies,
    )
