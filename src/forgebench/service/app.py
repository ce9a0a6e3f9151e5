"""The measured ASGI service (Starlette): health, status, info, and endpoints doing real work.

Why these endpoints: ``/health`` is the floor (no work, the wrk anchor's target);
``/status`` and ``/api/v1/info`` are small JSON documents as dashboards poll them; the
work endpoints are the three shapes of work a service does: a retrieval query
(``forgebench.rag.pipeline``, CPU in the request), a database query (the database suite's
users/posts/comments schema in a SQLite file built at startup, run in a worker thread),
and a background job (submitted, computed in a worker thread, its completion awaited by
the client), whose latency is submit-to-done. A job is a SHA-256 chain (``kind=hash``) or
a batch of database pages (``kind=db_pages&first=<page>&count=<n>``: the pages the
``db_page`` endpoint serves, queried in the job's worker thread; batch throughput).

Every answer can be checked by the client: the database page carries a digest of the
page that ``forgebench.database.dataset`` computes independently, and a job returns the
digest of its hash chain, which :func:`job_digest` recomputes.

Fault injection (``faults`` in the settings) exists only so tests can prove that errors
and stalls are counted: a seeded share of the matching requests answers 500, another
share hangs for ``stall_s`` before being served (a hang, not work: nothing stands in for
a measurement).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import random
import sqlite3
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from forgebench.database.backends import load_sqlite
from forgebench.database.dataset import Dataset, PageResult, Sizes, generate
from forgebench.database.page_methods import QuerySession, join
from forgebench.service.answer_cache import LruCache
from forgebench.service.items import items_routes
from forgebench.service.ui_page import ui_page

API_VERSION = "1"
#: Completed jobs kept for a late ``wait`` call; older ones are dropped (bounded memory).
MAX_FINISHED_JOBS = 10_000
JOB_BLOCK_BYTES = 4096
MAX_JOB_ROUNDS = 1_000_000
MAX_BATCH_PAGES = 10_000

DEFAULT_SETTINGS: dict[str, Any] = {
    "seed": 0,
    "db": {"users": 1000, "posts": 20000, "comments": 100000, "page_size": 50},
    # answer_cache_size: an LRU of that many answers in front of the pipeline (0: none)
    "rag": {"enabled": False, "mode": "bm25", "k": 5, "pipeline": {}, "answer_cache_size": 0},
    "job_workers": 2,
    # threads a worker runs its database queries in (anyio's limiter); 0: anyio's own 40
    "request_threads": 0,
    "faults": [],
}

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def page_digest(page: PageResult) -> str:
    """A short digest of a database page, equal on server and client for equal pages."""
    return hashlib.sha256(repr(page).encode()).hexdigest()[:16]


def job_digest(seed: int, rounds: int) -> str:
    """The job's work: a SHA-256 chain of ``rounds`` steps over a seeded 4 KiB block."""
    block = random.Random(seed).randbytes(JOB_BLOCK_BYTES)
    h = seed.to_bytes(8, "little", signed=False)
    for _ in range(rounds):
        h = hashlib.sha256(h + block).digest()
    return h.hex()


def batch_digest(page_digests: list[str]) -> str:
    """A page batch job's result: one digest over its pages' :func:`page_digest`, in order."""
    return hashlib.sha256(",".join(page_digests).encode()).hexdigest()[:16]


class _Db:
    """The database suite's schema in a SQLite file; one connection per worker thread."""

    def __init__(self, data: Dataset, folder: Path) -> None:
        self.path = folder / "service.sqlite3"
        load_sqlite(self.path, data)
        self.data = data
        self._local = threading.local()

    def page(self, page: int, size: int) -> PageResult:
        session = getattr(self._local, "session", None)
        if session is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            session = self._local.session = QuerySession(conn, "?", 999)
        return join(session, page * size, size)


class _Jobs:
    """Background jobs: submitted, run in a thread pool, awaited by id."""

    def __init__(self, workers: int) -> None:
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="job")
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[str]] = {}
        self.finished: OrderedDict[int, str] = OrderedDict()
        self.submitted = 0
        self.completed = 0

    def submit(self, fn: Callable[..., str], *args: Any) -> int:
        """Run ``fn(*args)`` in the pool; its string result is the job's result."""
        job_id = next(self.ids)
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self.pool, fn, *args)
        self.pending[job_id] = fut
        self.submitted += 1
        fut.add_done_callback(lambda f, i=job_id: self._done(i, f))
        return job_id

    def _done(self, job_id: int, fut: asyncio.Future[str]) -> None:
        self.pending.pop(job_id, None)
        self.completed += 1
        exc = fut.exception()
        self.finished[job_id] = f"error:{exc!r}" if exc else fut.result()
        while len(self.finished) > MAX_FINISHED_JOBS:
            self.finished.popitem(last=False)


class FaultInjection:
    """ASGI middleware: a seeded share of requests under a path prefix fails or hangs."""

    def __init__(self, app: ASGIApp, faults: list[Mapping[str, Any]], seed: int) -> None:
        self.app = app
        self.faults = [dict(f) for f in faults]
        self.rng = random.Random(seed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for fault in self.faults:
                if not scope["path"].startswith(fault.get("path_prefix", "/")):
                    continue
                u = self.rng.random()
                error_share = float(fault.get("error_share", 0.0))
                if u < error_share:
                    await PlainTextResponse("injected fault", status_code=500)(scope, receive, send)
                    return
                if u < error_share + float(fault.get("stall_share", 0.0)):
                    await asyncio.sleep(float(fault.get("stall_s", 10.0)))  # an injected hang
                break
        await self.app(scope, receive, send)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _thread_tokens() -> int:
    """Threads this worker's event loop may run blocking calls in (anyio's limiter)."""
    import anyio.to_thread

    return int(anyio.to_thread.current_default_thread_limiter().total_tokens)


def merged_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` over :data:`DEFAULT_SETTINGS`, one level deep for the nested sections."""
    out = json.loads(json.dumps(DEFAULT_SETTINGS))
    for key, value in settings.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def create_app(settings: Mapping[str, Any], workdir: Path | None = None) -> ASGIApp:
    """Build every resource now (database file, RAG pipeline), then return the ASGI app.

    Building before the port is announced makes readiness mean "able to answer", and
    keeps startup cost out of the first requests' latencies.
    """
    cfg = merged_settings(settings)
    seed = int(cfg["seed"])
    started = time.time()
    folder = Path(workdir or tempfile.mkdtemp(prefix="forgebench-service-"))
    db_cfg = cfg["db"]
    sizes = Sizes(int(db_cfg["users"]), int(db_cfg["posts"]), int(db_cfg["comments"]))
    db = _Db(generate(sizes, seed), folder)
    page_size = int(db_cfg["page_size"])
    n_pages = -(-sizes.users // page_size)
    jobs = _Jobs(int(cfg["job_workers"]))
    rag_cfg = cfg["rag"]
    pipeline: Any = None
    rag_error = "disabled in the settings (rag.enabled)"
    if rag_cfg.get("enabled"):
        try:
            from forgebench.rag.pipeline import RagPipeline

            pipeline = RagPipeline.build(dict(rag_cfg.get("pipeline", {})), seed=seed)
            rag_error = ""
        except Exception as exc:  # reported by the endpoint as 503, counted by clients
            rag_error = f"{type(exc).__name__}: {exc}"
    counters = {"requests": 0}
    cache_size = int(rag_cfg.get("answer_cache_size", 0))
    answers = LruCache(cache_size) if cache_size > 0 else None

    async def health(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def status(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "pid": os.getpid(),
                "uptime_s": time.time() - started,
                "rss_bytes": _rss_bytes(),
                "requests": counters["requests"],
                "jobs": {
                    "submitted": jobs.submitted,
                    "completed": jobs.completed,
                    "pending": len(jobs.pending),
                },
            }
        )

    async def info(request: Request) -> Response:
        import starlette
        import uvicorn

        return JSONResponse(
            {
                "service": "forgebench",
                "api_version": API_VERSION,
                "versions": {"starlette": starlette.__version__, "uvicorn": uvicorn.__version__},
                "worker": {"pid": os.getpid(), "request_threads": _thread_tokens()},
                "endpoints": [r.path for r in routes],
                "db": {"users": sizes.users, "posts": sizes.posts, "comments": sizes.comments},
                "rag": {
                    "available": pipeline is not None,
                    "mode": rag_cfg["mode"],
                    "error": rag_error,
                },
            }
        )

    async def db_page(request: Request) -> Response:
        try:
            page = int(request.query_params.get("page", "0"))
        except ValueError:
            return JSONResponse({"error": "page must be an integer"}, status_code=400)
        if not 0 <= page < n_pages:
            return JSONResponse({"error": f"page must be in [0, {n_pages})"}, status_code=404)
        result = await run_in_threadpool(db.page, page, page_size)
        return JSONResponse({"page": page, "users": len(result), "digest": page_digest(result)})

    async def rag_queries(request: Request) -> Response:
        if pipeline is None:
            return JSONResponse({"error": f"rag unavailable: {rag_error}"}, status_code=503)
        return JSONResponse({"queries": list(pipeline.corpus.queries)})

    async def rag_query(request: Request) -> Response:
        if pipeline is None:
            return JSONResponse({"error": f"rag unavailable: {rag_error}"}, status_code=503)
        text = request.query_params.get("q", "")
        try:
            k = int(request.query_params.get("k", rag_cfg["k"]))
        except ValueError:
            return JSONResponse({"error": "k must be an integer"}, status_code=400)
        mode = request.query_params.get("mode", rag_cfg["mode"])
        if not text:
            return JSONResponse({"error": "q is empty"}, status_code=400)
        t0 = time.perf_counter()
        cached, hits = answers.get((text, k, mode)) if answers is not None else (False, None)
        if not cached:
            try:
                hits = await run_in_threadpool(pipeline.query, text, k, mode)
            except ValueError as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
            if answers is not None:
                answers.put((text, k, mode), hits)
        answer: dict[str, Any] = {"hits": [[doc, float(score)] for doc, score in hits]}
        if answers is not None:  # the client counts hits and times each kind
            answer.update(cache="hit" if cached else "miss", served_s=time.perf_counter() - t0)
        return JSONResponse(answer)

    async def rag_cache_clear(request: Request) -> Response:
        """Empty the answer cache (a benchmark's next repetition starts cold)."""
        if answers is None:
            return JSONResponse({"error": "no answer cache (answer_cache_size)"}, status_code=404)
        answers.clear()
        return JSONResponse(answers.stats())

    def page_batch(first: int, count: int) -> str:
        pages = (db.page((first + i) % n_pages, page_size) for i in range(count))
        return batch_digest([page_digest(p) for p in pages])

    async def job_submit(request: Request) -> Response:
        if request.query_params.get("kind", "hash") == "db_pages":
            try:
                first = int(request.query_params.get("first", "0"))
                count = int(request.query_params.get("count", "1"))
            except ValueError:
                return JSONResponse({"error": "first and count must be integers"}, status_code=400)
            if not (0 <= first < n_pages and 1 <= count <= MAX_BATCH_PAGES):
                return JSONResponse({"error": "bad first or count"}, status_code=400)
            return JSONResponse({"id": jobs.submit(page_batch, first, count)}, status_code=202)
        try:
            job_seed = int(request.query_params.get("seed", "0"))
            rounds = int(request.query_params.get("rounds", "1000"))
        except ValueError:
            return JSONResponse({"error": "seed and rounds must be integers"}, status_code=400)
        if not (0 <= job_seed < 2**63 and 1 <= rounds <= MAX_JOB_ROUNDS):
            return JSONResponse({"error": "bad seed or rounds"}, status_code=400)
        return JSONResponse({"id": jobs.submit(job_digest, job_seed, rounds)}, status_code=202)

    async def job_wait(request: Request) -> Response:
        """The job's result once done; ``wait`` (seconds) long-polls for completion."""
        job_id = int(request.path_params["job_id"])
        try:
            wait_s = float(request.query_params.get("wait", "0"))
        except ValueError:
            return JSONResponse({"error": "wait must be a number"}, status_code=400)
        fut = jobs.pending.get(job_id)
        if fut is not None and wait_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(fut), timeout=wait_s)
        if job_id in jobs.finished:
            result = jobs.finished.pop(job_id)  # fetched once: memory stays bounded
            return JSONResponse({"id": job_id, "state": "done", "result": result})
        if job_id in jobs.pending:
            return JSONResponse({"id": job_id, "state": "pending"}, status_code=202)
        return JSONResponse({"error": f"unknown job {job_id}"}, status_code=404)

    routes = [
        Route("/health", health),
        Route("/status", status),
        Route("/api/v1/info", info),
        Route("/api/v1/db/page", db_page),
        Route("/api/v1/rag/queries", rag_queries),
        Route("/api/v1/rag", rag_query),
        Route("/api/v1/rag/cache/clear", rag_cache_clear, methods=["POST"]),
        Route("/api/v1/jobs", job_submit, methods=["POST"]),
        Route("/api/v1/jobs/{job_id:int}", job_wait),
        Route("/ui", ui_page),  # the search page the UI benchmark drives
    ]
    routes += items_routes(cfg.get("items"))  # POST /api/v1/items (service.items)
    app: ASGIApp = Starlette(routes=routes)

    request_threads = int(cfg["request_threads"])
    threads_set = [request_threads <= 0]  # the limiter exists only inside the event loop

    async def counted(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            counters["requests"] += 1
            if not threads_set[0]:
                import anyio.to_thread

                anyio.to_thread.current_default_thread_limiter().total_tokens = request_threads
                threads_set[0] = True
        await inner(scope, receive, send)

    inner: ASGIApp = app
    if cfg["faults"]:
        inner = FaultInjection(app, cfg["faults"], seed)
    return counted
